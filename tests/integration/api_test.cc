// The REST API over real HTTP on loopback, against a real SQLite file.
#include <gtest/gtest.h>

#include <thread>
#include <sqlite3.h>

#include <set>

#include "ports/outbox.h"
#include "ports/store.h"
#include "support/db_snapshot.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/raw_socket.h"
#include "support/stack.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::HttpClient;
using testing::HttpResult;

json DefinitionBody(const std::string& name = "devasc-2-5-1", const std::string& version = "1.0.0") {
  return {{"name", name},
          {"version", version},
          {"lab_yaml", testing::ReadTestData("sample_lab_template.yaml")},
          {"resource_requirements", {{"cpu_cores", 4}, {"memory_gb", 8}, {"storage_gb", 20}}},
          {"license_affinity", {"ENTERPRISE", "PERSONAL"}},
          {"max_duration_minutes", 120},
          {"created_by", "alice"}};
}

json WorkerBody(const std::string& name = "w1") {
  return {{"name", name},
          {"hostname", name + ".example"},
          {"public_ip", "203.0.113.5"},
          {"cml_url", "https://" + name + ".example"},
          {"license_type", "ENTERPRISE"},
          {"capacity", {{"cpu_cores", 32}, {"memory_gb", 128}, {"storage_gb", 500}, {"max_nodes", 40}}},
          {"state", "RUNNING"}};
}

json InstanceBody(const std::string& definition_id) {
  return {{"definition_id", definition_id},
          {"owner_id", "candidate-1"},
          {"assessment", {{"session_id", "s-1"}, {"part_id", "p-1"}}},
          {"timeslot_start", "2026-12-01T09:00:00Z"},
          {"timeslot_end", "2026-12-01T10:00:00Z"}};
}

class Api : public ::testing::Test {
 protected:
  Api() : http_(stack_.BaseUrl()) {}

  json Created(const std::string& path, const json& body) {
    HttpResult r = http_.PostJson(path, body);
    EXPECT_EQ(r.status, 201) << path << ": " << r.body;
    return r.Json();
  }

  std::string Snapshot() { return testing::DbSnapshot(stack_.DbPath()); }

  int OutboxCount(const std::string& type) { return testing::OutboxCount(stack_.DbPath(), type); }

  testing::Stack stack_;
  HttpClient http_;
};

TEST_F(Api, HealthAndOpenApi) {
  EXPECT_EQ(http_.Get("/health/live").status, 200);
  HttpResult ready = http_.Get("/health/ready");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.Json()["store"], "ok");
  EXPECT_EQ(ready.Json()["leader"], true);  // one process on SQLite always leads
  EXPECT_NE(http_.Get("/metrics").body.find("\nccm_leader 1\n"), std::string::npos);
  HttpResult doc = http_.Get("/openapi.json");
  ASSERT_EQ(doc.status, 200);
  EXPECT_EQ(doc.Json()["openapi"], "3.1.0");
}

TEST_F(Api, EveryRouteIsInTheOpenApiDocumentAndEveryDocumentedOperationIsRouted) {
  const json doc = json::parse(http::OpenApiDocument());
  std::set<std::pair<std::string, std::string>> routed, documented;
  for (const auto& r : stack_.router.routes()) {
    std::string method = r.method;
    std::transform(method.begin(), method.end(), method.begin(), ::tolower);
    routed.insert({r.pattern, method});
  }
  for (const auto& [path, ops] : doc["paths"].items())
    for (const auto& [method, _] : ops.items()) documented.insert({path, method});
  for (const auto& r : routed) EXPECT_TRUE(documented.count(r)) << r.second << " " << r.first << " is not documented";
  for (const auto& d : documented) EXPECT_TRUE(routed.count(d)) << d.second << " " << d.first << " is not routed";
}

// The writes that run on the server's queueing pool, as ccm serve marks them: events (one or a
// batch) and a move, nothing else.
TEST_F(Api, EventsAndAMoveAreTheWritesThatQueueTheirCommit) {
  const auto request = [](std::string method, std::string path) {
    http::Request r;
    r.method = std::move(method);
    r.path = std::move(path);
    return r;
  };
  const http::Router& router = stack_.router;
  for (const char* path : {"/api/v1/events", "/api/v1/events/", "/api/internal/instances/01JD2Q/transition"}) {
    http::Request r = request("POST", path);
    EXPECT_TRUE(router.QueuesCommit(r)) << path;
  }
  for (auto [method, path] : {std::pair{"GET", "/api/v1/events"}, std::pair{"PUT", "/api/internal/instances/01JD2Q/transition"},
                              std::pair{"POST", "/api/internal/instances/01JD2Q/collect"},
                              std::pair{"POST", "/api/internal/instances//transition"},
                              std::pair{"POST", "/api/internal/workers/w1/transition"},
                              std::pair{"POST", "/api/v1/events/replay"}, std::pair{"POST", "/api/v1/instances"}}) {
    http::Request r = request(method, path);
    EXPECT_FALSE(router.QueuesCommit(r)) << method << " " << path;
  }
}

TEST_F(Api, DefinitionLifecycle) {
  json v1 = Created("/api/v1/definitions", DefinitionBody());
  const std::string id = v1["id"];
  EXPECT_EQ(v1["node_count"], 2);
  EXPECT_EQ(v1["port_template"].size(), 3u);
  EXPECT_EQ(v1["lab_yaml_hash"].get<std::string>().rfind("sha256:", 0), 0u);
  EXPECT_EQ(v1["lab_yaml_hash"].get<std::string>().size(), 7u + 64u);

  json v2 = Created("/api/v1/definitions", DefinitionBody("devasc-2-5-1", "1.1.0"));
  EXPECT_EQ(v2["id"], id);  // same name, same id
  EXPECT_EQ(http_.Get("/api/v1/definitions/" + id).Json()["version"], "1.1.0");
  EXPECT_EQ(http_.Get("/api/v1/definitions/" + id + "?version=1.0.0").Json()["version"], "1.0.0");
  json versions = http_.Get("/api/v1/definitions/" + id + "/versions").Json();
  ASSERT_EQ(versions["items"].size(), 2u);
  EXPECT_EQ(versions["items"][0]["version"], "1.0.0");

  Created("/api/v1/definitions", DefinitionBody("other", "0.1.0"));
  json page = http_.Get("/api/v1/definitions?limit=1").Json();
  ASSERT_EQ(page["items"].size(), 1u);
  ASSERT_TRUE(page["next"].is_string());
  json page2 = http_.Get("/api/v1/definitions?limit=1&after=" + page["next"].get<std::string>()).Json();
  ASSERT_EQ(page2["items"].size(), 1u);
  EXPECT_TRUE(page2["next"].is_null());
  EXPECT_NE(page["items"][0]["id"], page2["items"][0]["id"]);
  EXPECT_EQ(http_.Get("/api/v1/definitions?name=other").Json()["items"].size(), 1u);

  HttpResult dup = http_.PostJson("/api/v1/definitions", DefinitionBody());
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(dup.Json()["field"], "version");

  HttpResult del = http_.Delete("/api/v1/definitions/" + id);
  ASSERT_EQ(del.status, 200);
  EXPECT_TRUE(del.Json()["deleted"].get<bool>());
  EXPECT_EQ(http_.Get("/api/v1/definitions").Json()["items"].size(), 1u);
  EXPECT_EQ(http_.Get("/api/v1/definitions?include_deleted=true").Json()["items"].size(), 2u);
  HttpResult refused = http_.PostJson("/api/v1/instances", InstanceBody(id));
  EXPECT_EQ(refused.status, 409);
  EXPECT_EQ(refused.Json()["field"], "definition_id");
}

TEST_F(Api, InstanceAndWorkerLifecycleWithEvents) {
  const std::string def = Created("/api/v1/definitions", DefinitionBody())["id"];
  json worker = Created("/api/v1/workers", WorkerBody());
  const std::string wid = worker["id"];
  EXPECT_EQ(worker["state"], "RUNNING");
  EXPECT_EQ(OutboxCount("ccm.worker.running"), 1);

  HttpResult created = http_.PostJson("/api/v1/instances", InstanceBody(def));
  ASSERT_EQ(created.status, 201);
  json inst = created.Json();
  const std::string iid = inst["id"];
  EXPECT_EQ(created.headers["location"], "/api/v1/instances/" + iid);
  EXPECT_EQ(inst["state"], "PENDING");
  EXPECT_EQ(inst["definition_version"], "1.0.0");
  EXPECT_EQ(OutboxCount("ccm.lablet.instance.pending"), 1);

  json scheduled = http_.PostJson("/api/internal/instances/" + iid + "/schedule", {{"worker_id", wid}}).Json();
  EXPECT_EQ(scheduled["state"], "SCHEDULED");
  EXPECT_EQ(scheduled["allocated_ports"], json({{"serial_1", 2000}, {"serial_2", 2001}, {"vnc_1", 2002}}));
  json ports = http_.Get("/api/v1/workers/" + wid + "/ports").Json();
  EXPECT_EQ(ports["allocations"][iid], scheduled["allocated_ports"]);
  EXPECT_EQ(ports["free_ports"], 8000 - 3);
  json capacity = http_.Get("/api/v1/workers/" + wid + "/capacity").Json();
  EXPECT_EQ(capacity["allocated"]["cpu_cores"], 4.0);
  EXPECT_EQ(capacity["free"]["nodes"], 38);
  EXPECT_EQ(http_.Get("/api/v1/workers/" + wid + "/instances").Json()["items"][0]["id"], iid);
  EXPECT_EQ(http_.Get("/api/v1/instances?worker_id=" + wid).Json()["items"].size(), 1u);
  EXPECT_EQ(http_.Get("/api/v1/instances?state=PENDING").Json()["items"].size(), 0u);

  for (const char* to : {"INSTANTIATING", "RUNNING"}) {
    HttpResult r = http_.PostJson("/api/internal/instances/" + iid + "/transition", {{"to", to}, {"reason", "test"}});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  // A stale expected_version is refused; the illegal move names the allowed ones.
  HttpResult stale =
      http_.PostJson("/api/internal/instances/" + iid + "/transition", {{"to", "STOPPING"}, {"expected_version", 2}});
  EXPECT_EQ(stale.status, 409);
  EXPECT_EQ(stale.Json()["field"], "version");
  HttpResult illegal = http_.PostJson("/api/internal/instances/" + iid + "/transition", {{"to", "PENDING"}});
  EXPECT_EQ(illegal.status, 409);
  EXPECT_EQ(illegal.Json()["detail"], "instance is RUNNING and cannot move to PENDING; allowed: COLLECTING, STOPPING");

  // DELETE from RUNNING: to STOPPING now, the rest by the stopper.
  HttpResult del = http_.Delete("/api/v1/instances/" + iid);
  ASSERT_EQ(del.status, 202);
  EXPECT_EQ(del.Json()["state"], "STOPPING");
  EXPECT_TRUE(del.Json()["termination_requested"].get<bool>());
  for (const char* to : {"STOPPED", "ARCHIVED"})
    ASSERT_EQ(http_.PostJson("/api/internal/instances/" + iid + "/transition", {{"to", to}}).status, 200);
  EXPECT_EQ(http_.Get("/api/v1/workers/" + wid + "/capacity").Json()["allocated"]["cpu_cores"], 0.0);
  EXPECT_EQ(http_.Get("/api/v1/workers/" + wid + "/ports").Json()["free_ports"], 8000 - 3);
  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + iid + "/transition", {{"to", "TERMINATED"}}).status, 200);
  EXPECT_EQ(http_.Get("/api/v1/workers/" + wid + "/ports").Json()["free_ports"], 8000);

  json final = http_.Get("/api/v1/instances/" + iid).Json();
  EXPECT_EQ(final["state"], "TERMINATED");
  std::vector<std::string> path;
  for (const auto& h : final["state_history"]) path.push_back(h["to"]);
  EXPECT_EQ(path, (std::vector<std::string>{"SCHEDULED", "INSTANTIATING", "RUNNING", "STOPPING", "STOPPED", "ARCHIVED",
                                            "TERMINATED"}));
  // One event per state entered.
  for (const char* type : {"ccm.lablet.instance.scheduled", "ccm.lablet.instance.provisioning.started",
                           "ccm.lablet.instance.running", "ccm.lablet.instance.stopping",
                           "ccm.lablet.instance.stopped", "ccm.lablet.instance.archived",
                           "ccm.lablet.instance.terminated"})
    EXPECT_EQ(OutboxCount(type), 1) << type;
  // Deleting again is harmless.
  EXPECT_EQ(http_.Delete("/api/v1/instances/" + iid).status, 202);
  EXPECT_EQ(OutboxCount("ccm.lablet.instance.terminated"), 1);

  // Worker moves, and the drain rule.
  HttpResult drain = http_.PostJson("/api/internal/workers/" + wid + "/transition", {{"to", "DRAINING"}});
  ASSERT_EQ(drain.status, 200);
  EXPECT_EQ(drain.Json()["state"], "DRAINING");
  EXPECT_EQ(OutboxCount("ccm.worker.draining"), 1);
}

// Moves that each give capacity back to one worker race on its version: a commit that loses
// is decided again on a fresh read (on a handler thread, not the commit's), so every move
// succeeds and the worker gets every instance's capacity back once.
TEST_F(Api, MovesRacingOnOneWorkerAllSucceed) {
  const std::string def = Created("/api/v1/definitions", DefinitionBody())["id"];
  const std::string wid = Created("/api/v1/workers", WorkerBody())["id"];
  constexpr int kInstances = 8;
  std::vector<std::string> ids;
  for (int n = 0; n < kInstances; ++n) {
    const std::string iid = Created("/api/v1/instances", InstanceBody(def))["id"];
    ASSERT_EQ(http_.PostJson("/api/internal/instances/" + iid + "/schedule", {{"worker_id", wid}}).status, 200);
    for (const char* to : {"INSTANTIATING", "RUNNING", "STOPPING", "STOPPED"})
      ASSERT_EQ(http_.PostJson("/api/internal/instances/" + iid + "/transition", {{"to", to}}).status, 200) << to;
    ids.push_back(iid);
  }
  const int version_before = http_.Get("/api/v1/workers/" + wid).Json()["version"];
  std::vector<HttpResult> moved(kInstances);
  std::vector<std::thread> threads;
  for (int n = 0; n < kInstances; ++n)
    threads.emplace_back([&, n] {
      moved[n] = HttpClient(stack_.BaseUrl()).PostJson("/api/internal/instances/" + ids[n] + "/transition", {{"to", "ARCHIVED"}});
    });
  for (auto& t : threads) t.join();
  for (int n = 0; n < kInstances; ++n) {
    ASSERT_EQ(moved[n].status, 200) << moved[n].body;
    EXPECT_EQ(moved[n].Json()["id"], ids[n]);
    EXPECT_EQ(moved[n].Json()["state"], "ARCHIVED");
  }
  const json worker = http_.Get("/api/v1/workers/" + wid).Json();
  EXPECT_EQ(worker["version"], version_before + kInstances);
  const json capacity = http_.Get("/api/v1/workers/" + wid + "/capacity").Json();
  EXPECT_EQ(capacity["allocated"]["cpu_cores"], 0.0);
  EXPECT_EQ(OutboxCount("ccm.lablet.instance.archived"), kInstances);
}

TEST_F(Api, DeleteFromPendingTerminatesAtOnce) {
  const std::string def = Created("/api/v1/definitions", DefinitionBody())["id"];
  const std::string iid = Created("/api/v1/instances", InstanceBody(def))["id"];
  HttpResult del = http_.Delete("/api/v1/instances/" + iid);
  ASSERT_EQ(del.status, 202);
  EXPECT_EQ(del.Json()["state"], "TERMINATED");
  EXPECT_EQ(OutboxCount("ccm.lablet.instance.terminated"), 1);
}

// Each refused request: its status, a problem+json body naming the field, and no write.
struct BadRequest {
  std::string name;
  std::string method;
  std::string path;  // {def}, {inst}, {worker} are replaced by real ids
  std::string body;
  std::string content_type;
  int status;
  std::string field;  // "" when the problem names none
};

TEST_F(Api, BadInputIsRefusedWithProblemJsonAndWritesNothing) {
  const std::string def = Created("/api/v1/definitions", DefinitionBody())["id"];
  const std::string wid = Created("/api/v1/workers", WorkerBody())["id"];
  const std::string iid = Created("/api/v1/instances", InstanceBody(def))["id"];
  const std::string full_wid = Created("/api/v1/workers", [] {
    json w = WorkerBody("tiny");
    w["capacity"]["cpu_cores"] = 1;
    return w;
  }())["id"];

  auto with = [](json base, const std::string& key, json value) {
    if (value.is_null()) base.erase(key);
    else base[key] = std::move(value);
    return base.dump();
  };
  auto nested = [](json base, const std::string& obj, const std::string& key, json value) {
    base[obj][key] = std::move(value);
    return base.dump();
  };
  const json d = DefinitionBody("new-name", "1.0.0");
  const json w = WorkerBody("w-new");
  const json i = InstanceBody(def);
  const std::string json_type = "application/json";

  const std::vector<BadRequest> cases = {
      // definitions
      {"def: not json", "POST", "/api/v1/definitions", "{nope", json_type, 400, "body"},
      {"def: array body", "POST", "/api/v1/definitions", "[]", json_type, 400, "body"},
      {"def: text/plain", "POST", "/api/v1/definitions", d.dump(), "text/plain", 415, "content-type"},
      {"def: no content type", "POST", "/api/v1/definitions", d.dump(), "", 415, "content-type"},
      {"def: missing name", "POST", "/api/v1/definitions", with(d, "name", nullptr), json_type, 400, "name"},
      {"def: bad name", "POST", "/api/v1/definitions", with(d, "name", "a b"), json_type, 400, "name"},
      {"def: name not string", "POST", "/api/v1/definitions", with(d, "name", 7), json_type, 400, "name"},
      {"def: bad version", "POST", "/api/v1/definitions", with(d, "version", "one"), json_type, 400, "version"},
      {"def: bad yaml", "POST", "/api/v1/definitions", with(d, "lab_yaml", "nodes: ["), json_type, 400, "lab_yaml"},
      {"def: not a topology", "POST", "/api/v1/definitions", with(d, "lab_yaml", "a: 1"), json_type, 400, "lab_yaml"},
      {"def: zero cpu", "POST", "/api/v1/definitions", nested(d, "resource_requirements", "cpu_cores", 0), json_type,
       400, "resource_requirements.cpu_cores"},
      {"def: cpu string", "POST", "/api/v1/definitions", nested(d, "resource_requirements", "cpu_cores", "4"),
       json_type, 400, "resource_requirements.cpu_cores"},
      {"def: unknown resource", "POST", "/api/v1/definitions", nested(d, "resource_requirements", "gpus", 1),
       json_type, 400, "resource_requirements.gpus"},
      {"def: empty affinity", "POST", "/api/v1/definitions", with(d, "license_affinity", json::array()), json_type,
       400, "license_affinity"},
      {"def: bad licence", "POST", "/api/v1/definitions", with(d, "license_affinity", {"FREE"}), json_type, 400,
       "license_affinity[0]"},
      {"def: duration 0", "POST", "/api/v1/definitions", with(d, "max_duration_minutes", 0), json_type, 400,
       "max_duration_minutes"},
      {"def: duration float", "POST", "/api/v1/definitions", with(d, "max_duration_minutes", 1.5), json_type, 400,
       "max_duration_minutes"},
      {"def: unknown field", "POST", "/api/v1/definitions", with(d, "colour", "red"), json_type, 400, "colour"},
      {"def: duplicate version", "POST", "/api/v1/definitions", DefinitionBody().dump(), json_type, 409, "version"},
      {"def list: limit 0", "GET", "/api/v1/definitions?limit=0", "", "", 400, "limit"},
      {"def list: limit 501", "GET", "/api/v1/definitions?limit=501", "", "", 400, "limit"},
      {"def list: limit text", "GET", "/api/v1/definitions?limit=ten", "", "", 400, "limit"},
      {"def list: bad flag", "GET", "/api/v1/definitions?include_deleted=yes", "", "", 400, "include_deleted"},
      {"def list: unknown param", "GET", "/api/v1/definitions?sort=name", "", "", 400, "sort"},
      {"def get: unknown", "GET", "/api/v1/definitions/nope", "", "", 404, ""},
      {"def get: unknown version", "GET", "/api/v1/definitions/{def}?version=9.9.9", "", "", 404, ""},
      {"def versions: unknown", "GET", "/api/v1/definitions/nope/versions", "", "", 404, ""},
      {"def delete: unknown", "DELETE", "/api/v1/definitions/nope", "", "", 404, ""},
      // instances
      {"inst: not json", "POST", "/api/v1/instances", "{", json_type, 400, "body"},
      {"inst: form type", "POST", "/api/v1/instances", i.dump(), "application/x-www-form-urlencoded", 415,
       "content-type"},
      {"inst: missing definition", "POST", "/api/v1/instances", with(i, "definition_id", nullptr), json_type, 400,
       "definition_id"},
      {"inst: unknown definition", "POST", "/api/v1/instances", with(i, "definition_id", "nope"), json_type, 404,
       "definition_id"},
      {"inst: unknown version", "POST", "/api/v1/instances", with(i, "definition_version", "9.0.0"), json_type, 404,
       "definition_version"},
      {"inst: empty owner", "POST", "/api/v1/instances", with(i, "owner_id", ""), json_type, 400, "owner_id"},
      {"inst: bad time", "POST", "/api/v1/instances", with(i, "timeslot_start", "tomorrow"), json_type, 400,
       "timeslot_start"},
      {"inst: end before start", "POST", "/api/v1/instances", with(i, "timeslot_end", "2026-12-01T08:00:00Z"),
       json_type, 400, "timeslot_end"},
      {"inst: too long", "POST", "/api/v1/instances", with(i, "timeslot_end", "2026-12-01T12:00:00Z"), json_type, 400,
       "timeslot_end"},
      {"inst: assessment not object", "POST", "/api/v1/instances", with(i, "assessment", "s-1"), json_type, 400,
       "assessment"},
      {"inst: assessment no part", "POST", "/api/v1/instances", with(i, "assessment", {{"session_id", "s"}}),
       json_type, 400, "assessment.part_id"},
      {"inst: unknown field", "POST", "/api/v1/instances", with(i, "state", "RUNNING"), json_type, 400, "state"},
      {"inst list: bad state", "GET", "/api/v1/instances?state=running", "", "", 400, "state"},
      {"inst list: bad limit", "GET", "/api/v1/instances?limit=-1", "", "", 400, "limit"},
      {"inst list: unknown param", "GET", "/api/v1/instances?owner=x", "", "", 400, "owner"},
      {"inst get: unknown", "GET", "/api/v1/instances/nope", "", "", 404, ""},
      {"inst delete: unknown", "DELETE", "/api/v1/instances/nope", "", "", 404, ""},
      // workers
      {"worker: not json", "POST", "/api/v1/workers", "nope", json_type, 400, "body"},
      {"worker: xml", "POST", "/api/v1/workers", w.dump(), "application/xml", 415, "content-type"},
      {"worker: missing hostname", "POST", "/api/v1/workers", with(w, "hostname", nullptr), json_type, 400,
       "hostname"},
      {"worker: bad url", "POST", "/api/v1/workers", with(w, "cml_url", "w1"), json_type, 400, "cml_url"},
      {"worker: bad licence", "POST", "/api/v1/workers", with(w, "license_type", "GOLD"), json_type, 400,
       "license_type"},
      {"worker: no capacity", "POST", "/api/v1/workers", with(w, "capacity", nullptr), json_type, 400, "capacity"},
      {"worker: max_nodes 0", "POST", "/api/v1/workers", nested(w, "capacity", "max_nodes", 0), json_type, 400,
       "capacity.max_nodes"},
      {"worker: bad port range", "POST", "/api/v1/workers", with(w, "port_range", {{"start", 9000}, {"end", 8000}}),
       json_type, 400, "port_range.end"},
      {"worker: port 70000", "POST", "/api/v1/workers", with(w, "port_range", {{"start", 2000}, {"end", 70000}}),
       json_type, 400, "port_range.end"},
      {"worker: bad state", "POST", "/api/v1/workers", with(w, "state", "DRAINING"), json_type, 400, "state"},
      {"worker: unknown field", "POST", "/api/v1/workers", with(w, "region", "eu"), json_type, 400, "region"},
      {"worker list: bad limit", "GET", "/api/v1/workers?limit=x", "", "", 400, "limit"},
      {"worker get: unknown", "GET", "/api/v1/workers/nope", "", "", 404, ""},
      {"worker capacity: unknown", "GET", "/api/v1/workers/nope/capacity", "", "", 404, ""},
      {"worker ports: unknown", "GET", "/api/v1/workers/nope/ports", "", "", 404, ""},
      {"worker instances: unknown", "GET", "/api/v1/workers/nope/instances", "", "", 404, ""},
      // internal
      {"schedule: no worker_id", "POST", "/api/internal/instances/{inst}/schedule", "{}", json_type, 400, "worker_id"},
      {"schedule: text", "POST", "/api/internal/instances/{inst}/schedule", "{}", "text/plain", 415, "content-type"},
      {"schedule: unknown worker", "POST", "/api/internal/instances/{inst}/schedule", R"({"worker_id":"nope"})",
       json_type, 404, "worker_id"},
      {"schedule: unknown instance", "POST", "/api/internal/instances/nope/schedule",
       json({{"worker_id", wid}}).dump(), json_type, 404, ""},
      {"schedule: worker too small", "POST", "/api/internal/instances/{inst}/schedule",
       json({{"worker_id", full_wid}}).dump(), json_type, 409, ""},
      {"transition: no to", "POST", "/api/internal/instances/{inst}/transition", "{}", json_type, 400, "to"},
      {"transition: bad to", "POST", "/api/internal/instances/{inst}/transition", R"({"to":"FLYING"})", json_type, 400,
       "to"},
      {"transition: to scheduled", "POST", "/api/internal/instances/{inst}/transition", R"({"to":"SCHEDULED"})",
       json_type, 400, "to"},
      {"transition: illegal", "POST", "/api/internal/instances/{inst}/transition", R"({"to":"RUNNING"})", json_type,
       409, "state"},
      {"transition: stale", "POST", "/api/internal/instances/{inst}/transition",
       R"({"to":"TERMINATED","expected_version":7})", json_type, 409, "version"},
      {"transition: version 0", "POST", "/api/internal/instances/{inst}/transition",
       R"({"to":"TERMINATED","expected_version":0})", json_type, 400, "expected_version"},
      {"transition: unknown", "POST", "/api/internal/instances/nope/transition", R"({"to":"TERMINATED"})", json_type,
       404, ""},
      {"worker transition: bad to", "POST", "/api/internal/workers/{worker}/transition", R"({"to":"GONE"})",
       json_type, 400, "to"},
      {"worker transition: illegal", "POST", "/api/internal/workers/{worker}/transition", R"({"to":"PENDING"})",
       json_type, 409, "state"},
      {"worker transition: unknown", "POST", "/api/internal/workers/nope/transition", R"({"to":"DRAINING"})",
       json_type, 404, ""},
      {"worker transition: not json", "POST", "/api/internal/workers/{worker}/transition", "x", json_type, 400,
       "body"},
      // events
      {"events: bad since", "GET", "/api/v1/events?since=yesterday", "", "", 400, "since"},
      {"events: bad until", "GET", "/api/v1/events?until=2026-13-01T00:00:00Z", "", "", 400, "until"},
      {"events: bad state", "GET", "/api/v1/events?state=lost", "", "", 400, "state"},
      {"events: bad after", "GET", "/api/v1/events?after=abc", "", "", 400, "after"},
      {"events: after past any sequence", "GET", "/api/v1/events?after=99999999999999999999", "", "", 400, "after"},
      {"definitions: bad after", "GET", "/api/v1/definitions?after=zzz", "", "", 400, "after"},
      {"instances: bad after", "GET", "/api/v1/instances?after=01234567-89ab-cdef-0123-456789ABCDEF", "", "", 400,
       "after"},
      {"workers: bad after", "GET", "/api/v1/workers?after=%20", "", "", 400, "after"},
      {"events: bad limit", "GET", "/api/v1/events?limit=0", "", "", 400, "limit"},
      {"events: unknown param", "GET", "/api/v1/events?kind=x", "", "", 400, "kind"},
      {"dead letters: bad limit", "GET", "/api/v1/events/dead-letters?limit=x", "", "", 400, "limit"},
      {"dead letters: bad after", "GET", "/api/v1/events/dead-letters?after=x", "", "", 400, "after"},
      {"replay: unknown event", "POST", "/api/v1/events/dead-letters/nope/replay", "", "", 404, ""},
      {"replay: not dead", "POST", "/api/v1/events/dead-letters/{event}/replay", "", "", 409, ""},
      // routing
      {"unknown route", "GET", "/api/v1/nothing", "", "", 404, ""},
      {"wrong method", "PUT", "/api/v1/instances/{inst}", "{}", json_type, 405, ""},
  };

  const std::string event_id = http_.Get("/api/v1/events?limit=1").Json()["items"][0]["id"];
  for (BadRequest c : cases) {
    for (auto [token, value] : {std::pair{"{def}", def}, {"{inst}", iid}, {"{worker}", wid}, {"{event}", event_id}})
      if (auto at = c.path.find(token); at != std::string::npos) c.path.replace(at, std::string(token).size(), value);
    const std::string before = Snapshot();
    std::map<std::string, std::string> headers;
    if (!c.content_type.empty()) headers["Content-Type"] = c.content_type;
    HttpResult r = http_.Send(c.method, c.path, c.body, headers);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json") << c.name;
    const json problem = r.Json();
    ASSERT_TRUE(problem.is_object()) << c.name << ": " << r.body;
    EXPECT_EQ(problem["status"], c.status) << c.name;
    EXPECT_FALSE(problem.value("detail", "").empty()) << c.name;
    EXPECT_FALSE(problem.value("type", "").empty()) << c.name;
    if (!c.field.empty()) {
      EXPECT_EQ(problem.value("field", ""), c.field) << c.name << ": " << r.body;
    }
    EXPECT_EQ(Snapshot(), before) << c.name << " wrote something";
  }
}

TEST_F(Api, BodyOverOneMebibyteIs413AndWritesNothing) {
  const std::string before = Snapshot();
  json big = DefinitionBody("big", "1.0.0");
  big["lab_yaml"] = std::string(2 << 20, 'x');
  HttpResult r = http_.PostJson("/api/v1/definitions", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.ContentType(), "application/problem+json");
  EXPECT_EQ(r.Json()["status"], 413);
  EXPECT_EQ(Snapshot(), before);
  // The server is still there for the next client.
  HttpClient other(stack_.BaseUrl());
  EXPECT_EQ(other.Get("/health/live").status, 200);
}

TEST_F(Api, EventsAuditDeadLettersReplayAndMetrics) {
  const std::string def = Created("/api/v1/definitions", DefinitionBody())["id"];
  const std::string wid = Created("/api/v1/workers", WorkerBody())["id"];
  const std::string iid = Created("/api/v1/instances", InstanceBody(def))["id"];
  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + iid + "/schedule", {{"worker_id", wid}}).status, 200);

  json mine = http_.Get("/api/v1/events?subject=" + iid).Json();
  ASSERT_EQ(mine["items"].size(), 2u);
  EXPECT_EQ(mine["items"][0]["type"], "ccm.lablet.instance.pending");
  EXPECT_EQ(mine["items"][1]["type"], "ccm.lablet.instance.scheduled");
  EXPECT_EQ(mine["items"][1]["state"], "pending");
  EXPECT_EQ(mine["items"][1]["event"]["data"]["allocated_ports"]["vnc_1"], 2002);
  EXPECT_LT(mine["items"][0]["seq"].get<int>(), mine["items"][1]["seq"].get<int>());
  EXPECT_EQ(http_.Get("/api/v1/events?type=ccm.worker.running").Json()["items"].size(), 1u);
  EXPECT_EQ(http_.Get("/api/v1/events?since=2099-01-01T00:00:00Z").Json()["items"].size(), 0u);
  json first = http_.Get("/api/v1/events?limit=2").Json();
  ASSERT_TRUE(first["next"].is_string());
  json second = http_.Get("/api/v1/events?limit=2&after=" + first["next"].get<std::string>()).Json();
  EXPECT_GT(second["items"][0]["seq"].get<int>(), first["items"][1]["seq"].get<int>());

  // Make two dead letters as the dispatcher would, then replay one and then all.
  ports::Changes dead;
  for (const auto& item : mine["items"])
    dead.deliveries.push_back({item["seq"].get<std::int64_t>(), ports::DeliveryState::kDead, 12,
                               stack_.clock.Now(), "HTTP 500 (attempt limit reached)", item["id"]});
  ASSERT_TRUE(stack_.store->Commit(dead));
  json letters = http_.Get("/api/v1/events/dead-letters").Json();
  ASSERT_EQ(letters["items"].size(), 2u);
  EXPECT_EQ(letters["items"][0]["last_error"], "HTTP 500 (attempt limit reached)");
  const std::string first_id = letters["items"][0]["id"];
  HttpResult one = http_.Post("/api/v1/events/dead-letters/" + first_id + "/replay", "", "");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(one.Json()["state"], "pending");
  EXPECT_EQ(one.Json()["attempts"], 0);
  HttpResult all = http_.Post("/api/v1/events/dead-letters/replay", "", "");
  ASSERT_EQ(all.status, 200);
  EXPECT_EQ(all.Json()["replayed"], 1);
  EXPECT_EQ(http_.Get("/api/v1/events/dead-letters").Json()["items"].size(), 0u);

  HttpResult metrics = http_.Get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.ContentType().rfind("text/plain", 0), 0u);
  EXPECT_NE(metrics.body.find("# TYPE ccm_events_published_total counter"), std::string::npos);
  const json all_events = http_.Get("/api/v1/events?limit=500").Json();
  EXPECT_NE(metrics.body.find("ccm_outbox_depth " + std::to_string(all_events["items"].size())), std::string::npos)
      << metrics.body;
}

TEST_F(Api, KeepAliveServesManyRequestsOnOneConnection) {
  for (int n = 0; n < 50; ++n) ASSERT_EQ(http_.Get("/health/live").status, 200);
}

// RFC 9110 9.3.2: HEAD answers with the GET's status and headers, Content-Length included,
// and no body; the connection stays usable for the next request.
TEST_F(Api, HeadOnAGetRouteHasItsHeadersAndNoBody) {
  Created("/api/v1/definitions", DefinitionBody());
  const HttpResult get = http_.Get("/api/v1/definitions");
  ASSERT_EQ(get.status, 200);
  testing::RawSocket s(stack_.server->port());
  ASSERT_TRUE(s.Send("HEAD /api/v1/definitions HTTP/1.1\r\nHost: a\r\n\r\n"
                     "GET /health/live HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
  const std::string both = s.ReadUntilClosed(std::chrono::seconds(10));
  const size_t head_end = both.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << both;
  const std::string head = both.substr(0, head_end);
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Length: " + std::to_string(get.body.size())), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Type: application/json"), std::string::npos) << head;
  // What follows the HEAD's headers is the next answer, not a body.
  EXPECT_EQ(both.substr(head_end + 4).rfind("HTTP/1.1 200", 0), 0u) << both;

  // HEAD goes where GET goes: a POST-only route says so, and GET routes list it.
  const HttpResult wrong = http_.Send("PUT", "/api/v1/definitions", "{}", {{"Content-Type", "application/json"}});
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.headers.at("allow"), "POST, GET, HEAD") << wrong.body;
}

// A percent-encoded slash is part of its segment: the route matches and the id has the slash.
TEST_F(Api, APercentEncodedSlashStaysInItsSegment) {
  const HttpResult r = http_.Get("/api/v1/instances/a%2Fb");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Json()["detail"], "instance a/b not found") << r.body;
  EXPECT_EQ(http_.Get("/api/v1/instances/a/b").status, 404);
  EXPECT_NE(http_.Get("/api/v1/instances/a/b").Json()["detail"].get<std::string>().find("no route"),
            std::string::npos);
}

TEST(Cli, VersionFlagAndCommandSayTheSame) {
  const auto [flag_rc, flag] = testing::RunCcm("--version");
  const auto [cmd_rc, cmd] = testing::RunCcm("version");
  EXPECT_EQ(flag_rc, 0) << flag;
  EXPECT_EQ(cmd_rc, 0) << cmd;
  EXPECT_EQ(flag, cmd);
  EXPECT_EQ(flag.rfind("ccm ", 0), 0u) << flag;
}

}  // namespace
}  // namespace ccm
