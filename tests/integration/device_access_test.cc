// Device access over HTTP: a definition's device_access is checked before anything is stored
// (400 naming the member, never its value); definitions show it only to ccm.admin and pods
// only to ccm.operator and above, everyone else reads it redacted; no event carries it; the
// pod names the worker's address graders reach.
#include <gtest/gtest.h>

#include "support/db_snapshot.h"
#include "support/http_client.h"
#include "support/json_schema.h"
#include "support/jwt_mint.h"
#include "support/signed_stack.h"
#include "support/stack.h"

namespace ccm {
namespace {

using nlohmann::json;

constexpr const char* kSecret = "hunter2-secret";

// Default: a password login and line settings; ubuntu-desktop: its own login; vmanage-mock
// (the sample lab's other node) gets the default.
json Access() {
  return {{"default",
           {{"authentication",
             {{"scheme", "password"},
              {"properties", {{"username", "cisco"}, {"password", kSecret}, {"enable_secret", kSecret}}}}},
            {"configuration", {{"line", "console"}, {"baud_rate", 9600}}}}},
          {"nodes",
           {{"ubuntu-desktop",
             {{"authentication", {{"scheme", "password"}, {"properties", {{"username", "student"}, {"password", "pw-2"}}}}}}}}}};
}

json DefinitionBody(const json& access) {
  json body = {{"name", "devasc"},
               {"version", "1.0.0"},
               {"lab_yaml", testing::ReadTestData("sample_lab_template.yaml")},
               {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}},
               {"license_affinity", {"ENTERPRISE"}},
               {"max_duration_minutes", 120},
               {"created_by", "test"}};
  if (!access.is_null()) body["device_access"] = access;
  return body;
}

std::vector<std::string> PodErrors(const json& pod) {
  static const json kSpec = json::parse(testing::ReadTestData("grading-engine.openapi.json"));
  return testing::ValidateSchema(kSpec, kSpec["components"]["schemas"]["Pod"], pod);
}

class DeviceAccessApi : public ::testing::Test {
 protected:
  DeviceAccessApi() : http_(stack_.BaseUrl()) {}
  std::string Token(const std::string& role) { return signed_.Token({role}); }
  testing::HttpResult Call(const std::string& method, const std::string& path, const std::string& role,
                           const json& body = json::object()) {
    return http_.Send(method, path, method == "GET" ? "" : body.dump(),
                      {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + Token(role)}});
  }
  // A definition with `access`, a worker with `addresses` and an instance scheduled on it.
  std::string ScheduledInstance(const json& access, const json& addresses) {
    auto def = Call("POST", "/api/v1/definitions", "ccm.operator", DefinitionBody(access));
    EXPECT_EQ(def.status, 201) << def.body;
    json worker = {{"name", "w1"},
                   {"hostname", "w1.lab"},
                   {"cml_url", "http://w1"},
                   {"license_type", "ENTERPRISE"},
                   {"capacity", {{"cpu_cores", 64}, {"memory_gb", 256}, {"max_nodes", 100}}},
                   {"state", "RUNNING"}};
    worker.update(addresses);
    auto w = Call("POST", "/api/v1/workers", "ccm.operator", worker);
    EXPECT_EQ(w.status, 201) << w.body;
    auto i = Call("POST", "/api/v1/instances", "ccm.operator",
                  {{"definition_id", def.Json()["id"]},
                   {"owner_id", "c"},
                   {"timeslot_start", "2026-12-01T09:00:00Z"},
                   {"timeslot_end", "2026-12-01T10:00:00Z"}});
    EXPECT_EQ(i.status, 201) << i.body;
    const std::string id = i.Json()["id"];
    auto s = Call("POST", "/api/internal/instances/" + id + "/schedule", "ccm.admin", {{"worker_id", w.Json()["id"]}});
    EXPECT_EQ(s.status, 200) << s.body;
    return id;
  }

  testing::SignedStack signed_;
  testing::Stack& stack_ = signed_.stack;
  testing::HttpClient http_;
};

TEST_F(DeviceAccessApi, ABadDeviceAccessIsRefusedNamingTheMemberAndNothingIsStored) {
  const json good_auth = {{"scheme", "password"}, {"properties", {{"password", kSecret}}}};
  const std::pair<json, std::string> cases[] = {
      {"secret", "device_access"},
      {{{"defaults", {{"authentication", good_auth}}}}, "device_access.defaults"},
      {{{"default", {{"authentication", {{"properties", {{"password", kSecret}}}}}}}},
       "device_access.default.authentication.scheme"},
      {{{"default", {{"authentication", {{"scheme", ""}, {"properties", {{"password", kSecret}}}}}}}},
       "device_access.default.authentication.scheme"},
      {{{"default", {{"authentication", {{"scheme", 7}}}}}}, "device_access.default.authentication.scheme"},
      {{{"default", {{"authentication", {{"scheme", "password"}, {"properties", {{"password", 1234}}}}}}}},
       "device_access.default.authentication.properties.password"},
      {{{"default", {{"authentication", {{"scheme", "password"}, {"properties", {{"", kSecret}}}}}}}},
       "device_access.default.authentication.properties"},
      {{{"default", {{"authentication", {{"scheme", "password"}, {"properties", kSecret}}}}}},
       "device_access.default.authentication.properties"},
      {{{"default", {{"authentication", good_auth}, {"user", kSecret}}}}, "device_access.default.user"},
      {{{"default", {{"configuration", {kSecret}}}}}, "device_access.default.configuration"},
      {{{"nodes", {{"ubuntu-desktop", kSecret}}}}, "device_access.nodes.ubuntu-desktop"},
      {{{"nodes", {{"R9", {{"authentication", good_auth}}}}}}, "device_access.nodes.R9"},
      {{{"nodes", {{"ubuntu-desktop", {{"authentication", {{"properties", {{"password", kSecret}}}}}}}}}},
       "device_access.nodes.ubuntu-desktop.authentication.scheme"},
  };
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  for (const auto& [access, field] : cases) {
    auto r = Call("POST", "/api/v1/definitions", "ccm.admin", DefinitionBody(access));
    EXPECT_EQ(r.status, 400) << access.dump() << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json");
    EXPECT_EQ(r.Json()["field"], field) << r.body;
    EXPECT_EQ(r.body.find(kSecret), std::string::npos) << r.body;  // the rule, never the value
  }
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
  // The same definition with a good device_access is taken.
  EXPECT_EQ(Call("POST", "/api/v1/definitions", "ccm.admin", DefinitionBody(Access())).status, 201);
}

TEST_F(DeviceAccessApi, DefinitionsShowDeviceAccessOnlyToAdmins) {
  auto created = Call("POST", "/api/v1/definitions", "ccm.operator", DefinitionBody(Access()));
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.body.find(kSecret), std::string::npos);  // an operator's own answer is redacted too
  const std::string id = created.Json()["id"];
  const std::string paths[] = {"/api/v1/definitions", "/api/v1/definitions/" + id,
                               "/api/v1/definitions/" + id + "/versions"};
  for (const std::string& path : paths) {
    for (const char* role : {"ccm.viewer", "ccm.operator"}) {
      auto r = Call("GET", path, role);
      ASSERT_EQ(r.status, 200) << path;
      EXPECT_EQ(r.body.find(kSecret), std::string::npos) << role << " " << path;
      EXPECT_EQ(r.body.find("pw-2"), std::string::npos) << role << " " << path;
      const json body = r.Json();
      const json def = body.contains("items") ? body["items"][0] : body;
      const json& access = def["device_access"];
      EXPECT_EQ(access["default"]["authentication"]["scheme"], "password");  // the scheme and names stay
      EXPECT_EQ(access["default"]["authentication"]["properties"],
                (json{{"username", "***"}, {"password", "***"}, {"enable_secret", "***"}}));
      EXPECT_EQ(access["default"]["configuration"], (json{{"line", "***"}, {"baud_rate", "***"}}));
      EXPECT_EQ(access["nodes"]["ubuntu-desktop"]["authentication"]["properties"]["password"], "***");
    }
    auto admin = Call("GET", path, "ccm.admin");
    ASSERT_EQ(admin.status, 200);
    const json body = admin.Json();
    const json def = body.contains("items") ? body["items"][0] : body;
    EXPECT_EQ(def["device_access"], Access()) << path;
  }
  // What an admin reads is what was sent: it round-trips through the store.
  auto deleted = Call("DELETE", "/api/v1/definitions/" + id, "ccm.operator");
  ASSERT_EQ(deleted.status, 200);
  EXPECT_EQ(deleted.body.find(kSecret), std::string::npos);
}

TEST_F(DeviceAccessApi, ThePodCarriesDeviceAccessForOperatorsAndRedactsItForViewers) {
  const std::string id = ScheduledInstance(Access(), {{"public_ip", "203.0.113.10"}, {"private_ip", "10.0.0.10"}});
  const std::string path = "/api/v1/instances/" + id + "/pod";
  for (const char* role : {"ccm.operator", "ccm.admin"}) {
    auto r = Call("GET", path, role);
    ASSERT_EQ(r.status, 200) << r.body;
    const json pod = r.Json();
    EXPECT_EQ(PodErrors(pod), std::vector<std::string>{});
    ASSERT_EQ(pod["devices"].size(), 2u);
    for (const auto& device : pod["devices"]) {
      const bool own = device["label"] == "ubuntu-desktop";
      for (const auto& iface : device["interfaces"]) {
        EXPECT_EQ(iface["host"], "203.0.113.10");  // public_ip first, by default
        EXPECT_EQ(iface["authentication"]["properties"]["password"], own ? "pw-2" : kSecret) << device["label"];
        EXPECT_EQ(iface.contains("configuration"), !own);  // the node's entry replaces the default whole
        if (!own) {
          EXPECT_EQ(iface["configuration"], (json{{"line", "console"}, {"baud_rate", 9600}}));
        }
      }
    }
  }
  auto viewer = Call("GET", path, "ccm.viewer");
  ASSERT_EQ(viewer.status, 200);
  EXPECT_EQ(viewer.body.find(kSecret), std::string::npos);
  EXPECT_EQ(viewer.body.find("pw-2"), std::string::npos);
  const json redacted = viewer.Json();
  EXPECT_EQ(PodErrors(redacted), std::vector<std::string>{});
  EXPECT_EQ(redacted["devices"][0]["interfaces"][0]["authentication"]["scheme"], "password");
  EXPECT_EQ(redacted["devices"][0]["interfaces"][0]["authentication"]["properties"]["password"], "***");

  // No event carries it: not the outbox as the API lists it, not the database's outbox rows.
  auto events = Call("GET", "/api/v1/events?limit=500", "ccm.admin");
  ASSERT_EQ(events.status, 200);
  EXPECT_GE(events.Json()["items"].size(), 3u);
  EXPECT_EQ(events.body.find(kSecret), std::string::npos);
  EXPECT_EQ(events.body.find("device_access"), std::string::npos);
}

TEST_F(DeviceAccessApi, APodWithoutDeviceAccessHasNoneAndStillValidates) {
  const std::string id = ScheduledInstance(nullptr, {{"private_ip", "10.0.0.10"}});
  auto r = Call("GET", "/api/v1/instances/" + id + "/pod", "ccm.admin");
  ASSERT_EQ(r.status, 200) << r.body;
  const json pod = r.Json();
  EXPECT_EQ(PodErrors(pod), std::vector<std::string>{});
  for (const auto& device : pod["devices"])
    for (const auto& iface : device["interfaces"]) {
      EXPECT_FALSE(iface.contains("authentication"));
      EXPECT_FALSE(iface.contains("configuration"));
      EXPECT_EQ(iface["host"], "10.0.0.10");  // no public_ip: the private one, before the hostname
    }
  auto def = Call("GET", "/api/v1/definitions", "ccm.admin");
  EXPECT_TRUE(def.Json()["items"][0]["device_access"].is_null());
}

TEST_F(DeviceAccessApi, PodHostAddressPrivateNamesThePrivateAddress) {
  const std::string id = ScheduledInstance(nullptr, {{"public_ip", "203.0.113.10"}, {"private_ip", "10.0.0.10"}});
  app::PodService inside(*stack_.store, "ccm", domain::PodAddress::kPrivate);
  auto pod = inside.ForInstance(domain::InstanceId{id});
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(pod->devices.at(0).interfaces.at(0).host, "10.0.0.10");
  EXPECT_EQ(Call("GET", "/api/v1/instances/" + id + "/pod", "ccm.viewer").Json()["devices"][0]["interfaces"][0]["host"],
            "203.0.113.10");
}

TEST(DeviceAccessWithoutAuthentication, EveryAnswerIsRedacted) {
  testing::Stack stack(testing::StoreKind::kMemory);
  testing::HttpClient http(stack.BaseUrl());
  auto created = http.PostJson("/api/v1/definitions", DefinitionBody(Access()));
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.body.find(kSecret), std::string::npos);
  auto list = http.Get("/api/v1/definitions");
  EXPECT_EQ(list.body.find(kSecret), std::string::npos);
  EXPECT_EQ(list.Json()["items"][0]["device_access"]["default"]["authentication"]["properties"]["password"], "***");
  // Yet the store keeps it as it was sent (what the Grading Engine gets).
  auto stored = stack.store->GetDefinition(domain::DefinitionId{created.Json()["id"]}, std::nullopt);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->device_access.default_access->authentication->properties.at("password"), kSecret);
}

}  // namespace
}  // namespace ccm
