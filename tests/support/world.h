#pragma once
// ccm as a process with cml-sim (the CML worker, and the cloud provider), for tests that drive
// lablets through their whole lifecycle over real HTTP.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "app/events.h"
#include "support/http_client.h"
#include "support/json_schema.h"
#include "support/lab_seed.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace ccm::testing {

using nlohmann::json;

inline std::vector<std::string> Column(const json& items, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i[key]);
  return out;
}

// The reason of the instance's move to `state` (its history as the API shows it), or "".
inline std::string ReasonOf(const json& instance, const std::string& state) {
  for (const auto& h : instance["state_history"])
    if (h["to"] == state) return h["reason"];
  return "";
}

// The file of the schema ccm publishes `type`'s data by: "{type}.v{N}.json".
inline std::string SchemaFileOf(const std::string& type) {
  return type + ".v" + std::to_string(app::DataSchemaVersion(type)) + ".json";
}

// Every event ccm published names, as dataschema, the schema ccm serves for its type, and its
// data validates against it. Returns how many events were checked.
inline int ExpectEveryEventMatchesItsSchema(HttpClient& http, const std::string& base_url) {
  int checked = 0;
  std::string after;
  std::map<std::string, json> schemas;
  for (;;) {
    const json page = http.Get("/api/v1/events?limit=500&after=" + after).Json();
    for (const auto& record : page["items"]) {
      const json event = record["event"];
      const std::string type = event["type"];
      EXPECT_EQ(event.value("dataschema", ""), base_url + "/schemas/" + SchemaFileOf(type)) << type;
      if (!schemas.count(type)) {
        auto got = http.Get("/schemas/" + SchemaFileOf(type));
        EXPECT_EQ(got.status, 200) << type << " has no schema";
        EXPECT_EQ(got.ContentType(), "application/schema+json");
        schemas[type] = got.Json();
      }
      const auto errors = ValidateSchema(schemas[type], schemas[type], event["data"]);
      EXPECT_TRUE(errors.empty()) << type << ": " << errors.front() << "\n" << event["data"];
      ++checked;
    }
    if (!page["next"].is_string() || page["next"].get<std::string>().empty()) break;
    after = page["next"];
  }
  return checked;
}

// cml-sim, and ccm on a free port with the given settings added.
struct World {
  TempDir dir;
  std::unique_ptr<ChildProcess> cml;
  std::unique_ptr<CcmProcess> ccm;
  std::unique_ptr<HttpClient> http;

  // With `cloud`, cml-sim is also ccm's cloud provider.
  World(std::vector<std::string> cml_args, std::map<std::string, std::string> env, bool cloud = false) {
    std::vector<std::string> argv = {CML_SIM_BINARY, "--ready-file", dir.File("cml.ready"), "--cml-schema",
                                     std::string(CCM_TEST_DATA) + "/cml-2.9.openapi.json"};
    if (std::find(cml_args.begin(), cml_args.end(), "--start-delay-ms") == cml_args.end())
      cml_args.insert(cml_args.end(), {"--start-delay-ms", "200"});
    argv.insert(argv.end(), cml_args.begin(), cml_args.end());
    cml = std::make_unique<ChildProcess>(argv, std::map<std::string, std::string>{}, dir.File("cml.ready"));
    env.emplace("CCM_STORE", "sqlite:" + dir.File("ccm.db"));
    env.emplace("CML_PASSWORD", "cml-secret");
    env.emplace("RECONCILE_INTERVAL_MS", "100");
    env.emplace("INSTANTIATION_LEAD_SECONDS", "0");
    if (cloud) env.emplace("CLOUD_PROVIDER_URL", cml->BaseUrl());
    env_ = std::move(env);
    Start();
  }

  // Starts ccm (again, after a Kill) with the same settings and store.
  void Start() {
    // Authentication is on when an issuer is given (the test sets its token on `http`).
    ccm = std::make_unique<CcmProcess>(dir.path(), env_, env_.count("AUTH_JWKS_URL") > 0);
    http = std::make_unique<HttpClient>(ccm->BaseUrl());
  }

  std::string AddWorker(const std::string& name, int cpu_cores) {
    return http->PostJson("/api/v1/workers", WorkerBody(name, cml->BaseUrl(), cpu_cores)).Json()["id"];
  }
  std::string AddDefinition() {
    const json d = SampleDefinitionBody(ReadTestData("sample_lab_template.yaml"));
    return http->PostJson("/api/v1/definitions", d).Json()["id"];
  }
  // An instance whose timeslot runs from `start` to `end` from now.
  std::string AddInstance(const std::string& definition, int n, std::chrono::seconds start, std::chrono::seconds end,
                          bool assessment = true) {
    const auto now = std::chrono::system_clock::now();
    json body = {{"definition_id", definition},
                 {"owner_id", "candidate-" + std::to_string(n)},
                 {"timeslot_start", Rfc3339(now + start)},
                 {"timeslot_end", Rfc3339(now + end)}};
    if (assessment)
      body["assessment"] = {{"session_id", "session-" + std::to_string(n)}, {"part_id", "part-1"}};
    auto r = http->PostJson("/api/v1/instances", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json()["id"];
  }
  json Instance(const std::string& id) { return http->Get("/api/v1/instances/" + id).Json(); }
  bool InState(const std::string& id, const std::string& state) { return Instance(id)["state"] == state; }
  json Events(const std::string& subject) {
    return http->Get("/api/v1/events?limit=500&subject=" + subject).Json()["items"];
  }
  json Labs() { return HttpClient(cml->BaseUrl()).Get("/sim/labs").Json(); }

 private:
  std::map<std::string, std::string> env_;
};

}  // namespace ccm::testing
