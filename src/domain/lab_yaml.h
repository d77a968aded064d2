#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "domain/result.h"
#include "domain/types.h"

namespace ccm::domain {

// One node of a CML topology, as far as ccm cares.
struct LabNode {
  std::string id;
  std::string label;
  std::vector<std::string> tags;  // e.g. "serial:5041", "vnc:${PORT_VNC_1}"
};

// What ccm reads from a lab YAML (a CML topology, optionally with `${PORT_<NAME>}`
// placeholders).
struct LabInfo {
  std::vector<LabNode> nodes;
  // One entry per distinct placeholder, in order of first appearance.
  std::vector<PortSpec> port_template;
};

// How deeply a lab YAML may nest (each sequence and mapping opens a level). CML topologies
// nest 4 or 5 deep.
inline constexpr int kMaxLabYamlDepth = 64;

// Parses a CML topology: a mapping with a `nodes` sequence whose entries are mappings with
// an `id` and a `label`. Only the first YAML document is read. Errors: invalid_argument
// (field "lab_yaml") for YAML that does not parse, uses an anchor (&name) or an alias
// (*name) anywhere, nests deeper than kMaxLabYamlDepth, is not such a topology, or has a
// malformed placeholder (`${PORT_}`, lower case). The anchor, alias and depth rules are
// checked on the parser's events before any node is built.
Result<LabInfo> ParseLab(std::string_view yaml);

// Replaces every `${PORT_<NAME>}` in `yaml` by the port allocated under `<name>` (lower case),
// leaving all other bytes as they were. Errors: invalid_argument naming the placeholder that
// has no allocation.
Result<std::string> RewriteLab(std::string_view yaml, const PortMap& ports);

// "SERIAL_1" -> "serial_1".
std::string PortNameFromPlaceholder(std::string_view upper_name);

}  // namespace ccm::domain
