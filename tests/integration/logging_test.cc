// ccm's own logs, read from a real process: with CCM_LOG_FORMAT=json every line is a JSON
// object with time, level, logger and message; each answered request has an access line
// naming its route pattern, status and request id; a reconciler's lines name the lablet and
// the worker; no token, query string or body reaches the log.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "os/clock.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace ccm {
namespace {

using nlohmann::json;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> LinesOf(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) lines.push_back(l);
  return lines;
}

// Every line of `path`, each of which must be a JSON object with the fields every line has.
std::vector<json> JsonLines(const std::string& path) {
  std::vector<json> out;
  for (const auto& line : LinesOf(ReadAll(path))) {
    json j = json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "not a JSON object: " << line;
    if (!j.is_object()) continue;
    for (const char* field : {"time", "level", "logger", "message"})
      EXPECT_TRUE(j.contains(field) && j[field].is_string()) << field << " missing: " << line;
    out.push_back(std::move(j));
  }
  return out;
}

// The access line of the request `id`, or null.
json AccessLineOf(const std::vector<json>& lines, const std::string& id) {
  for (const auto& l : lines)
    if (l.value("logger", "") == "access" && l.value("request_id", "") == id) return l;
  return nullptr;
}

TEST(JsonLogs, EveryLineIsAnObjectAndEachRequestHasAnAccessLineWithoutSecrets) {
  testing::TempDir dir;
  const std::string log = dir.File("ccm.log");
  {
    testing::CcmProcess ccm(dir.path(),
                            {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                             {"CCM_LOG_FORMAT", "json"},
                             {"CCM_LOG_LEVEL", "debug"}},
                            false, log);
    testing::HttpClient http(ccm.BaseUrl());
    // A token in the Authorization header, one in the query, one in the body: none may show.
    auto listed = http.Send("GET", "/api/v1/instances?limit=5&access_token=Qu3ry-S3cr3t", "",
                            {{"X-Request-Id", "req-list-1"}, {"Authorization", "Bearer H3ader-S3cr3t"}});
    EXPECT_EQ(listed.status, 400) << listed.body;  // access_token is no parameter of the route
    auto one = http.Send("GET", "/api/v1/instances/no-such-instance", "", {{"X-Request-Id", "req-get-2"}});
    EXPECT_EQ(one.status, 404);
    auto none = http.Send("GET", "/no/such/route", "", {{"X-Request-Id", "req-none-3"}});
    EXPECT_EQ(none.status, 404);
    auto posted = http.Send("POST", "/api/v1/workers", R"({"name": "w", "password": "B0dy-S3cr3t"})",
                            {{"X-Request-Id", "req-post-4"}, {"Content-Type", "application/json"}});
    EXPECT_EQ(posted.status, 400) << posted.body;
    auto made_id = http.Get("/health/live");
    EXPECT_EQ(made_id.status, 200);
    ccm.Kill(SIGTERM);
    ASSERT_FALSE(made_id.headers["x-request-id"].empty());
    const auto lines = JsonLines(log);
    ASSERT_GE(lines.size(), 5u) << ReadAll(log);

    const json list = AccessLineOf(lines, "req-list-1");
    ASSERT_TRUE(list.is_object()) << ReadAll(log);
    EXPECT_EQ(list["level"], "info");
    EXPECT_EQ(list["method"], "GET");
    EXPECT_EQ(list["route"], "/api/v1/instances");
    EXPECT_EQ(list["path"], "/api/v1/instances");
    EXPECT_EQ(list["status"], 400);
    EXPECT_TRUE(list["duration_ms"].is_number()) << list;
    EXPECT_GE(list["duration_ms"].get<double>(), 0.0);

    const json get = AccessLineOf(lines, "req-get-2");
    ASSERT_TRUE(get.is_object());
    EXPECT_EQ(get["route"], "/api/v1/instances/{id}");  // the pattern, not the id
    EXPECT_EQ(get["path"], "/api/v1/instances/no-such-instance");
    EXPECT_EQ(get["status"], 404);

    const json unmatched = AccessLineOf(lines, "req-none-3");
    ASSERT_TRUE(unmatched.is_object());
    EXPECT_EQ(unmatched["route"], "unmatched");

    const json post = AccessLineOf(lines, "req-post-4");
    ASSERT_TRUE(post.is_object());
    EXPECT_EQ(post["method"], "POST");
    EXPECT_EQ(post["route"], "/api/v1/workers");
    // The server's debug line about the refusal carries the request id too.
    bool debug_with_id = false;
    for (const auto& l : lines)
      debug_with_id |= l["logger"] == "ccm" && l.value("request_id", "") == "req-post-4";
    EXPECT_TRUE(debug_with_id) << ReadAll(log);

    // The id the server made when the client sent none is the one in the access line.
    EXPECT_TRUE(AccessLineOf(lines, made_id.headers["x-request-id"]).is_object()) << ReadAll(log);
  }
  const std::string all = ReadAll(log);
  for (const char* secret : {"Qu3ry-S3cr3t", "H3ader-S3cr3t", "B0dy-S3cr3t"})
    EXPECT_EQ(all.find(secret), std::string::npos) << secret << " is in the log:\n" << all;
}

TEST(JsonLogs, AReconcilersLinesNameTheLabletAndItsWorker) {
  // A CML that refuses everything: the instantiator logs each failure of the instance.
  testing::FakeServer cml([](http::Request&) {
    http::Response r;
    r.status = 500;
    r.body = R"({"description": "broken"})";
    return r;
  });
  testing::TempDir dir;
  const std::string log = dir.File("ccm.log");
  testing::CcmProcess ccm(dir.path(),
                          {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                           {"CCM_LOG_FORMAT", "json"},
                           {"CML_MAX_FAILURES", "2"},
                           {"RECONCILE_INTERVAL_MS", "50"},
                           {"INSTANTIATION_LEAD_SECONDS", "0"}},
                          false, log);
  testing::HttpClient http(ccm.BaseUrl());
  json worker = {{"name", "w1"}, {"hostname", "w1"}, {"cml_url", cml.Url()}, {"license_type", "ENTERPRISE"},
                 {"capacity", {{"cpu_cores", 8}, {"memory_gb", 8}, {"max_nodes", 10}}}, {"state", "RUNNING"}};
  auto w = http.PostJson("/api/v1/workers", worker);
  ASSERT_EQ(w.status, 201) << w.body;
  const std::string worker_id = w.Json()["id"];
  json def = {{"name", "lab"}, {"version", "1.0.0"}, {"lab_yaml", "nodes: [{id: n0, label: r1}]\nlinks: []\nlab: {}\n"},
              {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}}, {"license_affinity", {"ENTERPRISE"}},
              {"max_duration_minutes", 60}, {"created_by", "t"}};
  const std::string def_id = http.PostJson("/api/v1/definitions", def).Json()["id"];
  const auto now = os::SystemClock().Now();
  json inst = {{"definition_id", def_id}, {"owner_id", "c"}, {"timeslot_start", FormatRfc3339(now)},
               {"timeslot_end", FormatRfc3339(now + std::chrono::minutes(30))}};
  const std::string id = http.PostJson("/api/v1/instances", inst).Json()["id"];
  json found;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (found.is_null() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (const auto& line : LinesOf(ReadAll(log))) {
      json l = json::parse(line, nullptr, false);
      if (l.is_object() && l.value("logger", "") == "ccm" && l.value("lablet_id", "") == id &&
          l.value("message", "").find("instantiator") != std::string::npos)
        found = l;
    }
  }
  ASSERT_TRUE(found.is_object()) << ReadAll(log);
  EXPECT_EQ(found["worker_id"], worker_id) << found;
  EXPECT_EQ(found["level"], "warning");
  EXPECT_FALSE(found.contains("request_id")) << found;  // a reconciler's step, no request's
  ccm.Kill(SIGTERM);
  JsonLines(log);  // every line an object
}

TEST(TextLogs, TheAccessLogIsOnByDefaultAndCanBeTurnedOff) {
  testing::TempDir dir;
  for (const bool on : {true, false}) {
    const std::string log = dir.File(on ? "on.log" : "off.log");
    std::map<std::string, std::string> env = {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                              {"CCM_LOG_LEVEL", "info"}};
    if (!on) env["CCM_ACCESS_LOG"] = "false";
    testing::CcmProcess ccm(dir.path(), env, false, log);
    testing::HttpClient http(ccm.BaseUrl());
    EXPECT_EQ(http.Send("GET", "/api/v1/workers/w-1?x=Qu3ry", "", {{"X-Request-Id", "text-req-1"}}).status, 404);
    ccm.Kill(SIGTERM);
    const std::string text = ReadAll(log);
    const bool logged = text.find("[access] [info] GET /api/v1/workers/{id} 404 request_id=text-req-1 method=GET "
                                  "route=/api/v1/workers/{id} path=/api/v1/workers/w-1 status=404 duration_ms=") !=
                        std::string::npos;
    EXPECT_EQ(logged, on) << text;
    EXPECT_EQ(text.find("Qu3ry"), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace ccm
