// Fuzz target: the lab YAML parser, the port rewriter and the conversion to CML's JSON
// topology. Invariants beyond "no crash": a lab that parses rewrites (with a port for each
// placeholder) into YAML that parses again, without a placeholder left, with the same nodes;
// and LabTemplates builds each lab's topology as its own text converts to.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "clients/cml_client.h"
#include "domain/lab_yaml.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  (void)ccm::clients::LabYamlToTopology(yaml);
  auto lab = ccm::domain::ParseLab(yaml);
  if (!lab) return 0;
  ccm::domain::PortMap ports;
  int next = 2000;
  for (const auto& p : lab->port_template) ports[p.name] = next++;
  auto rewritten = ccm::domain::RewriteLab(yaml, ports);
  if (!rewritten) return 0;
  if (rewritten->find("${PORT_") != std::string::npos) std::abort();
  auto again = ccm::domain::ParseLab(*rewritten);
  if (!again || again->nodes.size() != lab->nodes.size() || !again->port_template.empty()) std::abort();
  // Two labs of this definition through LabTemplates (the second built from the tree when the
  // first matched): each is what its own text converts to.
  ccm::clients::LabTemplates templates;
  for (int offset : {0, 8000}) {  // 2000 and on, then 10000 and on: other digits, one more of them
    ccm::domain::PortMap these = ports;
    for (auto& [_, port] : these) port += offset;
    auto text = ccm::domain::RewriteLab(yaml, these);
    if (!text) std::abort();
    auto from_text = ccm::clients::LabYamlToTopology(*text);
    auto from_template = templates.Topology(ccm::ports::LabToImport{yaml, these, *text});
    if (from_text.has_value() != from_template.has_value() || (from_text && *from_text != *from_template)) std::abort();
  }
  return 0;
}
