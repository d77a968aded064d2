#include "domain/lab_yaml.h"

#include <gtest/gtest.h>

#include "support/hostile.h"
#include "support/temp_dir.h"

namespace ccm::domain {
namespace {

using ccm::testing::ReadTestData;

TEST(LabYaml, ReadsNodesAndPortTemplateOfTheSampleTemplate) {
  auto lab = ParseLab(ReadTestData("sample_lab_template.yaml"));
  ASSERT_TRUE(lab) << lab.error().message;
  ASSERT_EQ(lab->nodes.size(), 2u);
  EXPECT_EQ(lab->nodes[0].label, "vmanage-mock");
  EXPECT_EQ(lab->nodes[1].tags, (std::vector<std::string>{"serial:${PORT_SERIAL_2}", "vnc:${PORT_VNC_1}"}));
  EXPECT_EQ(lab->port_template, (std::vector<PortSpec>{{"serial_1", "serial"}, {"serial_2", "serial"}, {"vnc_1", "vnc"}}));
}

TEST(LabYaml, RewritingTheTemplateGivesTheRealLabByteForByte) {
  auto rewritten =
      RewriteLab(ReadTestData("sample_lab_template.yaml"), {{"serial_1", 5041}, {"serial_2", 5042}, {"vnc_1", 5044}});
  ASSERT_TRUE(rewritten) << rewritten.error().message;
  EXPECT_EQ(*rewritten, ReadTestData("sample_cml_lab.yaml"));
}

TEST(LabYaml, TheRealLabHasNoPlaceholders) {
  auto lab = ParseLab(ReadTestData("sample_cml_lab.yaml"));
  ASSERT_TRUE(lab);
  EXPECT_TRUE(lab->port_template.empty());
  EXPECT_EQ(lab->nodes.size(), 2u);
}

TEST(LabYaml, APlaceholderWithoutAnAllocationIsAClearError) {
  auto rewritten = RewriteLab(ReadTestData("sample_lab_template.yaml"), {{"serial_1", 5041}, {"serial_2", 5042}});
  ASSERT_FALSE(rewritten);
  EXPECT_EQ(rewritten.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(rewritten.error().message.find("${PORT_VNC_1}"), std::string::npos) << rewritten.error().message;
  EXPECT_NE(rewritten.error().message.find("vnc_1"), std::string::npos);
}

TEST(LabYaml, RepeatedPlaceholdersAreOnePortAndTcpWithoutPrefix) {
  const std::string yaml = R"(nodes:
  - id: n0
    label: r1
    tags: ["ssh:${PORT_SSH_1}", "ssh:${PORT_SSH_1}"]
    configuration: "listen ${PORT_API}"
)";
  auto lab = ParseLab(yaml);
  ASSERT_TRUE(lab) << lab.error().message;
  EXPECT_EQ(lab->port_template, (std::vector<PortSpec>{{"ssh_1", "ssh"}, {"api", "tcp"}}));
  auto out = RewriteLab(yaml, {{"ssh_1", 2000}, {"api", 2001}});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->find("${"), std::string::npos);
  EXPECT_NE(out->find("listen 2001"), std::string::npos);
}

TEST(LabYaml, RefusesWhatIsNotACmlTopology) {
  const std::pair<const char*, const char*> cases[] = {
      {"nodes: [", "not valid YAML"},
      {"- a\n- b\n", "mapping at the top"},
      {"lab: {title: x}\n", "`nodes`"},
      {"nodes: []\n", "`nodes`"},
      {"nodes: [42]\n", "nodes[0] must be a mapping"},
      {"nodes: [{label: a}]\n", "nodes[0].id"},
      {"nodes: [{id: n0}]\n", "nodes[0].label"},
      {"nodes: [{id: n0, label: a, tags: x}]\n", "tags must be a sequence"},
      {"nodes: [{id: n0, label: a, tags: ['serial:${PORT_}']}]\n", "malformed port placeholder"},
      {"nodes: [{id: n0, label: a, tags: ['serial:${PORT_serial}']}]\n", "malformed port placeholder"},
  };
  for (const auto& [yaml, says] : cases) {
    auto lab = ParseLab(yaml);
    ASSERT_FALSE(lab) << yaml;
    EXPECT_EQ(lab.error().field, "lab_yaml");
    EXPECT_NE(lab.error().message.find(says), std::string::npos) << yaml << " -> " << lab.error().message;
  }
}

TEST(LabYaml, RefusesAliasesAnchorsAndDeepNestingBeforeBuildingAnything) {
  const std::string bomb = ccm::testing::AliasBombLab();
  ASSERT_LT(bomb.size(), 700u);
  auto lab = ParseLab(bomb);
  ASSERT_FALSE(lab);
  EXPECT_EQ(lab.error().field, "lab_yaml");
  EXPECT_NE(lab.error().message.find("aliases"), std::string::npos) << lab.error().message;
  EXPECT_NE(lab.error().message.find("line 4"), std::string::npos) << lab.error().message;

  const std::string node = "nodes:\n  - id: n0\n    label: r1\n";
  const std::pair<std::string, const char*> cases[] = {
      {node + "a: &x 1\n", "anchors"},                          // an anchor alone
      {node + "base: &b {x: 1}\nother:\n  <<: *b\n", "aliases"},  // a merge key
      {"nodes:\n  - &n {id: n0, label: r1}\n  - *n\n", "aliases"},
      {node + "deep: " + std::string(65, '[') + std::string(65, ']') + "\n", "deeper than 64"},
  };
  for (const auto& [yaml, says] : cases) {
    auto refused = ParseLab(yaml);
    ASSERT_FALSE(refused) << yaml;
    EXPECT_EQ(refused.error().field, "lab_yaml");
    EXPECT_NE(refused.error().message.find(says), std::string::npos) << yaml << " -> " << refused.error().message;
  }
  // 63 levels under the top mapping is 64 in all: allowed.
  EXPECT_TRUE(ParseLab(node + "deep: " + std::string(63, '[') + std::string(63, ']') + "\n"));
}

}  // namespace
}  // namespace ccm::domain
