#include "domain/definition.h"

#include <gtest/gtest.h>

#include "support/temp_dir.h"

namespace ccm::domain {
namespace {

DefinitionDraft Draft() {
  DefinitionDraft d;
  d.name = "devasc-2-5-1";
  d.version = "1.0.0";
  d.lab_yaml = ccm::testing::ReadTestData("sample_lab_template.yaml");
  d.resource_requirements = {4, 8, 20};
  d.license_affinity = {LicenseType::kEnterprise};
  d.max_duration_minutes = 120;
  d.created_by = "alice";
  return d;
}

TEST(SemVer, ParsesAndOrdersBySemverPrecedence) {
  const char* ordered[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                           "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0", "2.0.0"};
  for (size_t i = 0; i + 1 < std::size(ordered); ++i) {
    auto a = ParseSemVer(ordered[i]), b = ParseSemVer(ordered[i + 1]);
    ASSERT_TRUE(a && b) << ordered[i];
    EXPECT_LT(Compare(*a, *b), 0) << ordered[i] << " < " << ordered[i + 1];
    EXPECT_GT(Compare(*b, *a), 0);
  }
  EXPECT_EQ(Compare(*ParseSemVer("1.0.0+build.5"), *ParseSemVer("1.0.0")), 0);
  for (const char* bad : {"", "1", "1.0", "01.0.0", "1.0.0-", "1.0.0+", "1.0.x", "v1.0.0", "1.0.0-a..b"})
    EXPECT_FALSE(ParseSemVer(bad)) << bad;
}

TEST(NewDefinition, DerivesNodeCountAndPortTemplate) {
  auto d = NewDefinition(Draft(), {"def-1"}, "sha256:abc", FromUnixMillis(1000));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->node_count, 2);
  EXPECT_EQ(d->port_template.size(), 3u);
  EXPECT_EQ(d->lab_yaml_hash, "sha256:abc");
  EXPECT_EQ(d->created_at, FromUnixMillis(1000));
}

TEST(NewDefinition, NamesTheFirstBadField) {
  const std::pair<void (*)(DefinitionDraft&), const char*> cases[] = {
      {[](DefinitionDraft& d) { d.name = ""; }, "name"},
      {[](DefinitionDraft& d) { d.name = "has space"; }, "name"},
      {[](DefinitionDraft& d) { d.version = "1.0"; }, "version"},
      {[](DefinitionDraft& d) { d.resource_requirements.cpu_cores = 0; }, "resource_requirements.cpu_cores"},
      {[](DefinitionDraft& d) { d.resource_requirements.memory_gb = -1; }, "resource_requirements.memory_gb"},
      {[](DefinitionDraft& d) { d.resource_requirements.storage_gb = -1; }, "resource_requirements.storage_gb"},
      {[](DefinitionDraft& d) { d.license_affinity.clear(); }, "license_affinity"},
      {[](DefinitionDraft& d) { d.max_duration_minutes = 0; }, "max_duration_minutes"},
      {[](DefinitionDraft& d) { d.max_duration_minutes = kMaxDurationMinutes + 1; }, "max_duration_minutes"},
      {[](DefinitionDraft& d) { d.created_by = ""; }, "created_by"},
      {[](DefinitionDraft& d) { d.grading_rules_uri = ""; }, "grading_rules_uri"},
      {[](DefinitionDraft& d) { d.lab_yaml = "nodes: 3"; }, "lab_yaml"},
  };
  for (const auto& [mutate, field] : cases) {
    DefinitionDraft draft = Draft();
    mutate(draft);
    auto d = NewDefinition(draft, {"def-1"}, "sha256:abc", FromUnixMillis(0));
    ASSERT_FALSE(d) << field;
    EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(d.error().field, field);
  }
}

DeviceAccess PasswordAccess(const std::string& password) {
  return {DeviceAuthentication{"password", {{"username", "cisco"}, {"password", password}}}, ""};
}

TEST(NewDefinition, DeviceAccessIsKeptAsGiven) {
  DefinitionDraft draft = Draft();
  draft.device_access.default_access = PasswordAccess("s3cret");
  draft.device_access.default_access->configuration = R"({"line":"console"})";
  draft.device_access.nodes["ubuntu-desktop"] = PasswordAccess("other");
  draft.device_access.nodes["vmanage-mock"] = DeviceAccess{};  // none for it
  const DeviceAccessMap expected = draft.device_access;
  auto d = NewDefinition(draft, {"def-1"}, "sha256:abc", FromUnixMillis(1000));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->device_access, expected);
}

TEST(NewDefinition, DeviceAccessRulesNameTheMemberNeverTheValue) {
  const std::pair<void (*)(DeviceAccessMap&), const char*> cases[] = {
      {[](DeviceAccessMap& a) { a.default_access = PasswordAccess("s3cret"); a.default_access->authentication->scheme = ""; },
       "device_access.default.authentication.scheme"},
      {[](DeviceAccessMap& a) { a.default_access = PasswordAccess("s3cret"); a.default_access->authentication->properties[""] = "s3cret"; },
       "device_access.default.authentication.properties"},
      {[](DeviceAccessMap& a) { a.nodes["ubuntu-desktop"] = PasswordAccess("s3cret"); a.nodes["ubuntu-desktop"].authentication->scheme = ""; },
       "device_access.nodes.ubuntu-desktop.authentication.scheme"},
      {[](DeviceAccessMap& a) { a.nodes["Ubuntu-Desktop"] = PasswordAccess("s3cret"); }, "device_access.nodes.Ubuntu-Desktop"},
      {[](DeviceAccessMap& a) { a.nodes["R9"] = DeviceAccess{}; }, "device_access.nodes.R9"},
  };
  for (const auto& [mutate, field] : cases) {
    DefinitionDraft draft = Draft();
    mutate(draft.device_access);
    auto d = NewDefinition(draft, {"def-1"}, "sha256:abc", FromUnixMillis(1000));
    ASSERT_FALSE(d) << field;
    EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(d.error().field, field);
    EXPECT_EQ(d.error().message.find("s3cret"), std::string::npos) << d.error().message;
  }
}

TEST(DeviceAccessMap, ANodesEntryWinsOverTheDefault) {
  DeviceAccessMap m;
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.For("r1"), nullptr);
  m.nodes["r1"] = PasswordAccess("one");
  EXPECT_FALSE(m.empty());
  EXPECT_EQ(m.For("r1")->authentication->properties.at("password"), "one");
  EXPECT_EQ(m.For("r2"), nullptr);  // no default: nothing
  m.default_access = PasswordAccess("default");
  EXPECT_EQ(m.For("r1")->authentication->properties.at("password"), "one");
  EXPECT_EQ(m.For("r2")->authentication->properties.at("password"), "default");
}

}  // namespace
}  // namespace ccm::domain
