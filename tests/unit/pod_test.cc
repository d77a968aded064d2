// Pods for the Grading Engine: built from the lab and the allocated ports, and valid against
// components.schemas.Pod of the real Grading Engine API (tests/data/grading-engine.openapi.json).
#include "domain/pod.h"

#include <gtest/gtest.h>

#include "app/pods.h"
#include "support/json_schema.h"
#include "support/temp_dir.h"

namespace ccm::domain {
namespace {

using nlohmann::json;

const json& Spec() {
  static const json kSpec = json::parse(ccm::testing::ReadTestData("grading-engine.openapi.json"));
  return kSpec;
}

std::vector<std::string> PodErrors(const json& pod) {
  return ccm::testing::ValidateSchema(Spec(), Spec()["components"]["schemas"]["Pod"], pod);
}

// A lab of `n` nodes: every third one untagged, the rest with a serial port and every
// other one a vnc port too; labels with spaces and non-ASCII letters.
std::pair<std::string, PortMap> GeneratedLab(int n) {
  std::string yaml = "nodes:\n";
  PortMap ports;
  int next = 2000;
  for (int i = 0; i < n; ++i) {
    yaml += "  - id: n" + std::to_string(i) + "\n    label: \"Räuter " + std::to_string(i) + "\"\n";
    if (i % 3 == 2) continue;
    yaml += "    tags: [\"serial:${PORT_SERIAL_" + std::to_string(i) + "}\"";
    ports["serial_" + std::to_string(i)] = next++;
    if (i % 2 == 0) {
      yaml += ", \"vnc:${PORT_VNC_" + std::to_string(i) + "}\"";
      ports["vnc_" + std::to_string(i)] = next++;
    }
    yaml += ", \"group:core\"]\n";
  }
  return {yaml, ports};
}

TEST(Pod, FromTheSampleLab) {
  auto lab = ParseLab(ccm::testing::ReadTestData("sample_lab_template.yaml"));
  ASSERT_TRUE(lab);
  auto pod = BuildPod(*lab, {{"serial_1", 5041}, {"serial_2", 5042}, {"vnc_1", 5044}}, "203.0.113.10", "inst-1", "ccm");
  ASSERT_TRUE(pod) << pod.error().message;
  const json j = app::ToJson(*pod);
  EXPECT_EQ(j, json::parse(R"({"id":"inst-1","devices":[
    {"label":"vmanage-mock","hostname":"vmanage-mock","collector":"ccm","interfaces":[
      {"name":"serial_1","protocol":"console","host":"203.0.113.10","port":5041}]},
    {"label":"ubuntu-desktop","hostname":"ubuntu-desktop","collector":"ccm","interfaces":[
      {"name":"serial_2","protocol":"console","host":"203.0.113.10","port":5042},
      {"name":"vnc_1","protocol":"vnc","host":"203.0.113.10","port":5044}]}]})"));
  EXPECT_TRUE(PodErrors(j).empty());
}

TEST(Pod, TheRewrittenLabGivesTheSamePod) {
  const PortMap ports{{"serial_1", 5041}, {"serial_2", 5042}, {"vnc_1", 5044}};
  auto from_template = BuildPod(*ParseLab(ccm::testing::ReadTestData("sample_lab_template.yaml")), ports, "h", "i", "ccm");
  auto from_rewritten = BuildPod(*ParseLab(ccm::testing::ReadTestData("sample_cml_lab.yaml")), ports, "h", "i", "ccm");
  ASSERT_TRUE(from_template && from_rewritten);
  EXPECT_EQ(app::ToJson(*from_template), app::ToJson(*from_rewritten));
}

TEST(Pod, GeneratedLabsOfOneFiftyAndFiveHundredNodesValidate) {
  for (int n : {1, 50, 500}) {
    auto [yaml, ports] = GeneratedLab(n);
    auto lab = ParseLab(yaml);
    ASSERT_TRUE(lab) << lab.error().message;
    auto pod = BuildPod(*lab, ports, "cml-7.example", "inst", "ccm");
    ASSERT_TRUE(pod) << pod.error().message;
    int tagged = 0;
    for (int i = 0; i < n; ++i) tagged += i % 3 != 2;
    EXPECT_EQ(pod->devices.size(), static_cast<size_t>(tagged)) << n;
    EXPECT_EQ(pod->devices[0].label, "Räuter 0");
    EXPECT_EQ(pod->devices[0].interfaces.size(), 2u);  // serial and vnc; group:core ignored
    const auto errors = PodErrors(app::ToJson(*pod));
    EXPECT_TRUE(errors.empty()) << n << ": " << errors.front();
  }
}

TEST(Pod, ProtocolsAndIgnoredTags) {
  auto lab = ParseLab(R"(nodes:
  - {id: a, label: "edge router 1", tags: ["ssh:${PORT_SSH}", "telnet:${PORT_TEL}", "rack:7", "note"]}
  - {id: b, label: plain}
  - {id: c, label: only-unknown, tags: ["http:${PORT_WEB}"]}
)");
  ASSERT_TRUE(lab);
  auto pod = BuildPod(*lab, {{"ssh", 3000}, {"tel", 3001}, {"web", 3002}}, "h", "i", "ccm");
  ASSERT_TRUE(pod);
  ASSERT_EQ(pod->devices.size(), 1u);
  EXPECT_EQ(pod->devices[0].label, "edge router 1");
  ASSERT_EQ(pod->devices[0].interfaces.size(), 2u);
  EXPECT_EQ(pod->devices[0].interfaces[0].protocol, "ssh");
  EXPECT_EQ(pod->devices[0].interfaces[1].protocol, "telnet");
}

TEST(Pod, ATagPortWithoutAnAllocationIsAClearError) {
  auto lab = ParseLab(ccm::testing::ReadTestData("sample_lab_template.yaml"));
  auto pod = BuildPod(*lab, {{"serial_1", 5041}, {"serial_2", 5042}}, "h", "i", "ccm");
  ASSERT_FALSE(pod);
  EXPECT_EQ(pod.error().message, "node ubuntu-desktop: tag vnc:${PORT_VNC_1} has no allocated port 'vnc_1'");
  auto fixed = BuildPod(*ParseLab(ccm::testing::ReadTestData("sample_cml_lab.yaml")), {{"serial_1", 5041}}, "h", "i", "ccm");
  ASSERT_FALSE(fixed);
  EXPECT_NE(fixed.error().message.find("names port 5042, which is not allocated"), std::string::npos);
  EXPECT_FALSE(BuildPod(*lab, {}, "", "i", "ccm"));
}

TEST(PodSchema, TheValidatorCatchesWhatTheSchemaForbids) {
  // The checks above mean something only if the validator can fail.
  EXPECT_FALSE(PodErrors(json{{"devices", json::array()}}).empty());  // no id
  EXPECT_FALSE(PodErrors(json{{"id", "x"}, {"extra", 1}}).empty());
  EXPECT_FALSE(PodErrors(json::parse(R"({"id":"x","devices":[{"label":"a","hostname":"a","collector":"c","interfaces":[]}]})")).empty());
  EXPECT_FALSE(PodErrors(json::parse(R"({"id":"x","devices":[{"label":"","hostname":"a","collector":"c","interfaces":[{"name":"n","protocol":"p","host":"h"}]}]})")).empty());
  EXPECT_FALSE(PodErrors(json::parse(R"({"id":"x","devices":[{"label":"a","hostname":"a","collector":"c","interfaces":[{"name":"n","protocol":"p","host":"h","port":"22"}]}]})")).empty());
  EXPECT_FALSE(PodErrors(json::parse(R"({"id":"x","devices":[{"label":"a","hostname":"a","collector":"c","interfaces":[{"name":"n","protocol":"p","host":"h","authentication":{"user":"u"}}]}]})")).empty());
  EXPECT_TRUE(PodErrors(json::parse(R"({"id":"x","devices":[{"label":"a","hostname":"a","collector":"c","interfaces":[{"name":"n","protocol":"p","host":"h","authentication":{"scheme":"basic","properties":{"user":"u"}}}]}]})")).empty());
}

}  // namespace
}  // namespace ccm::domain
