// The lab YAML as CML's JSON topology: YAML 1.2 core-schema typing of plain scalars, quoted
// scalars kept as strings, and the sample lab valid against CML's own Topology schema.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "clients/cml_client.h"
#include "domain/lab_yaml.h"
#include "support/hostile.h"
#include "support/json_schema.h"
#include "support/temp_dir.h"

namespace ccm {
namespace {

using nlohmann::json;

TEST(CmlTopology, PlainScalarsAreTypedAndQuotedOnesStayStrings) {
  auto t = clients::LabYamlToTopology(
      "a: 12\nb: -3.5\nc: true\nd: null\ne: ~\nf: '12'\ng: \"true\"\nh: 1e3\ni: 0x1F\nj: text\nk: ''\nl:\n");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ((*t)["a"], 12);
  EXPECT_EQ((*t)["b"], -3.5);
  EXPECT_EQ((*t)["c"], true);
  EXPECT_TRUE((*t)["d"].is_null());
  EXPECT_TRUE((*t)["e"].is_null());
  EXPECT_EQ((*t)["f"], "12");
  EXPECT_EQ((*t)["g"], "true");
  EXPECT_EQ((*t)["h"], 1000.0);
  EXPECT_EQ((*t)["i"], "0x1F");  // not a decimal: kept as written
  EXPECT_EQ((*t)["j"], "text");
  EXPECT_EQ((*t)["k"], "");
  EXPECT_TRUE((*t)["l"].is_null());
}

TEST(CmlTopology, RefusesWhatIsNotAMapping) {
  auto list = clients::LabYamlToTopology("- a\n- b\n");
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().field, "lab_yaml");
  EXPECT_FALSE(clients::LabYamlToTopology("a: [1, 2"));
}

// Found by fuzzing (fuzz/corpus/lab_yaml/crash-non-scalar-key): a mapping used as a key made
// the conversion throw out of the instantiator.
TEST(CmlTopology, RefusesANonScalarKeyInsteadOfThrowing) {
  auto t = clients::LabYamlToTopology("nodes: []\n? [a, b]\n: c\n");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().field, "lab_yaml");
  EXPECT_NE(t.error().message.find("not a scalar"), std::string::npos);
}

// A definition stored before ParseLab refused aliases still reaches the conversion: it must
// fail as a bad lab, not exhaust the process.
TEST(CmlTopology, AnAliasBombIsRefusedInsteadOfExpanded) {
  auto t = clients::LabYamlToTopology(testing::AliasBombLab());
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(t.error().field, "lab_yaml");
  EXPECT_NE(t.error().message.find("aliases"), std::string::npos) << t.error().message;
  // A few aliases that do not multiply the size still convert.
  auto small = clients::LabYamlToTopology("defaults: &d {cpus: 1, ram: 512}\nnodes: [{id: n0, cfg: *d}, {id: n1, cfg: *d}]\n");
  ASSERT_TRUE(small) << small.error().message;
  EXPECT_EQ((*small)["nodes"][1]["cfg"]["ram"], 512);
  // Nor may it nest without bound.
  auto deep = clients::LabYamlToTopology("a: " + std::string(200, '[') + std::string(200, ']') + "\n");
  ASSERT_FALSE(deep);
  EXPECT_NE(deep.error().message.find("deeper than"), std::string::npos) << deep.error().message;
}

TEST(CmlTopology, TheRewrittenSampleLabIsAValidCmlTopology) {
  std::ifstream in(std::string(CCM_TEST_DATA) + "/cml-2.9.openapi.json");
  std::stringstream text;
  text << in.rdbuf();
  const json spec = json::parse(text.str());
  const json& schema = spec["components"]["schemas"]["Topology"];
  auto lab = domain::RewriteLab(testing::ReadTestData("sample_lab_template.yaml"),
                                {{"serial_1", 2000}, {"serial_2", 2001}, {"vnc_1", 2002}});
  ASSERT_TRUE(lab);
  auto topology = clients::LabYamlToTopology(*lab);
  ASSERT_TRUE(topology);
  EXPECT_EQ(testing::ValidateSchema(spec, schema, *topology), std::vector<std::string>{});
  EXPECT_NE(topology->dump().find("serial:2000"), std::string::npos);

  // The checker is not lenient: a node without its id, or x as text, is refused.
  json broken = *topology;
  broken["nodes"][0].erase("id");
  EXPECT_FALSE(testing::ValidateSchema(spec, schema, broken).empty());
  broken = *topology;
  broken["nodes"][0]["x"] = "left";
  EXPECT_FALSE(testing::ValidateSchema(spec, schema, broken).empty());
  broken = *topology;
  broken["annotations"][0]["type"] = "circle";
  EXPECT_FALSE(testing::ValidateSchema(spec, schema, broken).empty());
}

// Each lab of a definition, converted once from its own text and once through LabTemplates.
struct Converted {
  json from_text;
  json from_template;
};
Converted Convert(clients::LabTemplates& templates, const std::string& definition, const domain::PortMap& ports) {
  auto text = domain::RewriteLab(definition, ports);
  EXPECT_TRUE(text) << text.error().message;
  auto from_text = clients::LabYamlToTopology(*text);
  EXPECT_TRUE(from_text) << from_text.error().message;
  auto from_template = templates.Topology(ports::LabToImport{definition, ports, *text});
  EXPECT_TRUE(from_template) << from_template.error().message;
  return {*from_text, *from_template};
}

TEST(CmlTopology, TheLabsOfOneDefinitionAreBuiltFromItsTreeAndAreWhatTheirTextsConvertTo) {
  clients::LabTemplates templates;
  const std::string definition = testing::ReadTestData("sample_lab_template.yaml");
  for (int n = 0; n < 3; ++n) {
    const auto got = Convert(templates, definition, {{"serial_1", 2000 + n}, {"serial_2", 3000 + n}, {"vnc_1", 4 + n}});
    EXPECT_EQ(got.from_template, got.from_text);
    EXPECT_NE(got.from_template.dump().find("serial:" + std::to_string(2000 + n)), std::string::npos);
  }
  EXPECT_EQ(templates.FromTree(), 2u) << "the first lab is converted from its text, the next from the tree";
  // Ports in keys, plain scalars that become numbers, quoted ones that stay text.
  const std::string typed = "lab: {title: t}\nports:\n  p${PORT_A}: ${PORT_A}\n  q: '${PORT_B}'\n  r: ${PORT_A}.5\n";
  for (int n = 0; n < 2; ++n) {
    const auto got = Convert(templates, typed, {{"a", 10 + n}, {"b", 20 + n}});
    EXPECT_EQ(got.from_template, got.from_text);
    EXPECT_EQ(got.from_template["ports"]["p" + std::to_string(10 + n)], 10 + n);
    EXPECT_EQ(got.from_template["ports"]["q"], std::to_string(20 + n));
    EXPECT_EQ(got.from_template["ports"]["r"], 10.5 + n);
  }
  EXPECT_EQ(templates.FromTree(), 3u);
}

TEST(CmlTopology, TheTreesOfTheDefinitionsUsedLastAreKept) {
  clients::LabTemplates templates;
  auto definition = [](size_t n) { return "lab: {title: t" + std::to_string(n) + "}\nport: ${PORT_A}\n"; };
  auto use = [&](size_t n) {
    const auto got = Convert(templates, definition(n), {{"a", 9999}});
    EXPECT_EQ(got.from_template, got.from_text);
  };
  use(0);
  use(0);
  EXPECT_EQ(templates.FromTree(), 1u);
  for (size_t n = 1; n < clients::LabTemplates::kKept; ++n) use(n);  // now full
  use(0);  // the one used last, though kept first
  EXPECT_EQ(templates.FromTree(), 2u);
  use(clients::LabTemplates::kKept);  // makes room by dropping definition 1
  use(1);
  EXPECT_EQ(templates.FromTree(), 2u) << "definition 1 was dropped, and went by its text";
  use(0);
  use(clients::LabTemplates::kKept);
  EXPECT_EQ(templates.FromTree(), 4u);
}

TEST(CmlTopology, ADefinitionWhosePlaceholdersChangeTheStructureIsConvertedFromEachLabsText) {
  clients::LabTemplates templates;
  // In a flow collection a placeholder's braces are YAML's own; behind an escape it is not a
  // placeholder in the text, but it is one in the parsed scalar.
  for (const std::string definition : {"lab: {title: t}\nports: [${PORT_A}, 1]\n",
                                       "lab: {title: t}\nnote: \"\\x24{PORT_A} ${PORT_A}\"\n"}) {
    for (int n = 0; n < 3; ++n) {
      const auto got = Convert(templates, definition, {{"a", 10 + n}});
      EXPECT_EQ(got.from_template, got.from_text) << definition;
    }
  }
  EXPECT_EQ(templates.FromTree(), 0u);
  const auto escaped = Convert(templates, "lab: {title: t}\nnote: \"\\x24{PORT_A} ${PORT_A}\"\n", {{"a", 7}});
  EXPECT_EQ(escaped.from_template["note"], "${PORT_A} 7");
}

}  // namespace
}  // namespace ccm
