// Pods for the Grading Engine: built from the lab and the allocated ports, and valid against
// components.schemas.Pod of the real Grading Engine API (tests/data/grading-engine.openapi.json),
// with and without device access, shown or redacted.
#include "domain/pod.h"

#include <gtest/gtest.h>

#include "app/pods.h"
#include "support/json_schema.h"
#include "support/temp_dir.h"
#include "wire/pod.h"

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
  const json j = wire::ToJson(*pod, wire::Secrets::kShown);
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
  EXPECT_EQ(wire::ToJson(*from_template, wire::Secrets::kShown), wire::ToJson(*from_rewritten, wire::Secrets::kShown));
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
    const auto errors = PodErrors(wire::ToJson(*pod, wire::Secrets::kShown));
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

DeviceAccess Login(const std::string& user, const std::string& password, const std::string& configuration = "") {
  return {DeviceAuthentication{"password", {{"username", user}, {"password", password}, {"enable_secret", password}}},
          configuration};
}

TEST(Pod, DeviceAccessTheDefaultForEveryDeviceANodesEntryForItsOwn) {
  auto lab = ParseLab(ccm::testing::ReadTestData("sample_lab_template.yaml"));
  ASSERT_TRUE(lab);
  const PortMap ports{{"serial_1", 5041}, {"serial_2", 5042}, {"vnc_1", 5044}};
  DeviceAccessMap access;
  access.default_access = Login("cisco", "s3cret", R"({"baud_rate":9600,"line":"console"})");
  access.nodes["ubuntu-desktop"] = Login("student", "pw");
  auto pod = BuildPod(*lab, ports, "203.0.113.10", "inst-1", "ccm", access);
  ASSERT_TRUE(pod) << pod.error().message;
  const json j = wire::ToJson(*pod, wire::Secrets::kShown);
  EXPECT_EQ(j, json::parse(R"({"id":"inst-1","devices":[
    {"label":"vmanage-mock","hostname":"vmanage-mock","collector":"ccm","interfaces":[
      {"name":"serial_1","protocol":"console","host":"203.0.113.10","port":5041,
       "authentication":{"scheme":"password","properties":{"username":"cisco","password":"s3cret","enable_secret":"s3cret"}},
       "configuration":{"line":"console","baud_rate":9600}}]},
    {"label":"ubuntu-desktop","hostname":"ubuntu-desktop","collector":"ccm","interfaces":[
      {"name":"serial_2","protocol":"console","host":"203.0.113.10","port":5042,
       "authentication":{"scheme":"password","properties":{"username":"student","password":"pw","enable_secret":"pw"}}},
      {"name":"vnc_1","protocol":"vnc","host":"203.0.113.10","port":5044,
       "authentication":{"scheme":"password","properties":{"username":"student","password":"pw","enable_secret":"pw"}}}]}]})"));
  EXPECT_EQ(PodErrors(j), std::vector<std::string>{});

  // Only a node entry, no default: the other device carries nothing; an empty entry, nothing.
  DeviceAccessMap only_node;
  only_node.nodes["vmanage-mock"] = Login("admin", "x");
  only_node.nodes["ubuntu-desktop"] = DeviceAccess{};
  auto partial = BuildPod(*lab, ports, "h", "i", "ccm", only_node);
  ASSERT_TRUE(partial);
  EXPECT_TRUE(partial->devices[0].interfaces[0].authentication);
  for (const auto& iface : partial->devices[1].interfaces) {
    EXPECT_FALSE(iface.authentication);
    EXPECT_TRUE(iface.configuration.empty());
  }
  const json pj = wire::ToJson(*partial, wire::Secrets::kShown);
  EXPECT_FALSE(pj["devices"][1]["interfaces"][0].contains("authentication"));
  EXPECT_EQ(PodErrors(pj), std::vector<std::string>{});

  // Without device access the pod is as it always was.
  auto none = BuildPod(*lab, ports, "h", "i", "ccm");
  ASSERT_TRUE(none);
  EXPECT_FALSE(wire::ToJson(*none, wire::Secrets::kShown).dump().find("authentication") != std::string::npos);
}

TEST(Pod, DeviceAccessRedactedKeepsTheSchemeAndNamesAndStillValidates) {
  auto lab = ParseLab(ccm::testing::ReadTestData("sample_lab_template.yaml"));
  DeviceAccessMap access;
  access.default_access = Login("cisco", "s3cret", R"({"line":"console","speed":{"baud":9600}})");
  auto pod = BuildPod(*lab, {{"serial_1", 1}, {"serial_2", 2}, {"vnc_1", 3}}, "h", "i", "ccm", access);
  ASSERT_TRUE(pod);
  const json j = wire::ToJson(*pod, wire::Secrets::kRedacted);
  EXPECT_EQ(j.dump().find("s3cret"), std::string::npos);
  EXPECT_EQ(j.dump().find("cisco"), std::string::npos);
  EXPECT_EQ(j.dump().find("9600"), std::string::npos);
  const json& iface = j["devices"][0]["interfaces"][0];
  EXPECT_EQ(iface["authentication"],
            (json{{"scheme", "password"}, {"properties", {{"username", "***"}, {"password", "***"}, {"enable_secret", "***"}}}}));
  EXPECT_EQ(iface["configuration"], (json{{"line", "***"}, {"speed", "***"}}));
  EXPECT_EQ(PodErrors(j), std::vector<std::string>{});
}

TEST(Pod, GeneratedLabsWithDeviceAccessValidate) {
  for (int n : {1, 50, 500}) {
    auto [yaml, ports] = GeneratedLab(n);
    auto lab = ParseLab(yaml);
    ASSERT_TRUE(lab);
    DeviceAccessMap access;
    access.default_access = Login("cisco", "s3cret", R"({"line":"console","stop_bits":1,"parity":null})");
    access.nodes["Räuter 0"] = DeviceAccess{DeviceAuthentication{"ssh-key", {}}, ""};  // a scheme without properties
    auto pod = BuildPod(*lab, ports, "cml-7.example", "inst", "ccm", access);
    ASSERT_TRUE(pod);
    for (auto secrets : {wire::Secrets::kShown, wire::Secrets::kRedacted}) {
      const json j = wire::ToJson(*pod, secrets);
      const auto errors = PodErrors(j);
      EXPECT_TRUE(errors.empty()) << n << ": " << errors.front();
      EXPECT_EQ(j["devices"][0]["interfaces"][0]["authentication"]["scheme"], "ssh-key");
      if (n > 1) {
        EXPECT_EQ(j["devices"][1]["interfaces"][0]["authentication"]["scheme"], "password");
      }
    }
  }
}

TEST(Pod, TheHostIsTheAddressGradersReach) {
  Worker w;
  w.hostname = "cml-7.example";
  w.public_ip = "203.0.113.7";
  w.private_ip = "10.0.0.7";
  EXPECT_EQ(PodHost(w, PodAddress::kPublic), "203.0.113.7");
  EXPECT_EQ(PodHost(w, PodAddress::kPrivate), "10.0.0.7");
  w.public_ip.clear();
  EXPECT_EQ(PodHost(w, PodAddress::kPublic), "10.0.0.7");  // private_ip before hostname
  EXPECT_EQ(PodHost(w, PodAddress::kPrivate), "10.0.0.7");
  w.public_ip = "203.0.113.7";
  w.private_ip.clear();
  EXPECT_EQ(PodHost(w, PodAddress::kPublic), "203.0.113.7");
  EXPECT_EQ(PodHost(w, PodAddress::kPrivate), "cml-7.example");  // never the public address
  w.public_ip.clear();
  EXPECT_EQ(PodHost(w, PodAddress::kPublic), "cml-7.example");
  w.hostname.clear();
  EXPECT_EQ(PodHost(w, PodAddress::kPublic), "");
  auto lab = ParseLab(ccm::testing::ReadTestData("sample_lab_template.yaml"));
  EXPECT_EQ(BuildPod(*lab, {}, PodHost(w, PodAddress::kPublic), "i", "ccm").error().field, "host");
}

TEST(Pod, SecretsAreScrubbedFromText) {
  auto lab = ParseLab(ccm::testing::ReadTestData("sample_lab_template.yaml"));
  DeviceAccessMap access;
  access.default_access = Login("cisco", "s3cret");
  access.nodes["ubuntu-desktop"] = Login("student", "");
  auto pod = BuildPod(*lab, {{"serial_1", 1}, {"serial_2", 2}, {"vnc_1", 3}}, "h", "i", "ccm", access);
  ASSERT_TRUE(pod);
  const auto secrets = app::SecretValues(*pod);
  EXPECT_EQ(secrets, (std::vector<std::string>{"s3cret", "cisco", "student"}));  // once each, never ""
  EXPECT_EQ(app::Scrub(R"(400: {"password":"s3cret","username":"cisco"} s3crets)", secrets),
            R"(400: {"password":"***","username":"***"} ***s)");
  EXPECT_EQ(app::Scrub("nothing here", secrets), "nothing here");
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
