// kill -9 ccm while its outbox holds undelivered events; start it again: every event
// arrives (duplicates allowed, losses not).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <thread>

#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"

namespace ccm {
namespace {

using nlohmann::json;

std::set<std::string> OutboxIds(const std::string& db_path) {
  std::set<std::string> ids;
  sqlite3* db = nullptr;
  sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT id FROM outbox", -1, &s, nullptr);
  while (sqlite3_step(s) == SQLITE_ROW) ids.insert(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return ids;
}

TEST(Crash, KillNineWithUndeliveredEventsLosesNone) {
  testing::TempDir dir;
  const std::uint16_t sink_port = testing::FreePort();
  const std::map<std::string, std::string> env = {
      {"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
      {"CLOUDEVENTS_SINK_URL", "http://127.0.0.1:" + std::to_string(sink_port) + "/events"},
      {"CLOUDEVENTS_MODE", "structured"},
      {"CCM_RECONCILERS", "false"}};  // only what the test does is written

  {
    // The sink is down: every event stays in the outbox.
    testing::CcmProcess ccm(dir.path(), env);
    testing::HttpClient http(ccm.BaseUrl());
    json worker = {{"name", "w1"}, {"hostname", "w1"}, {"cml_url", "http://w1"}, {"license_type", "ENTERPRISE"},
                   {"capacity", {{"cpu_cores", 64}, {"memory_gb", 256}, {"max_nodes", 100}}}, {"state", "RUNNING"}};
    ASSERT_EQ(http.PostJson("/api/v1/workers", worker).status, 201);
    json def = {{"name", "lab"}, {"version", "1.0.0"}, {"lab_yaml", "nodes: [{id: n0, label: r1}]"},
                {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}},
                {"license_affinity", {"ENTERPRISE"}}, {"max_duration_minutes", 60}, {"created_by", "test"}};
    const std::string def_id = http.PostJson("/api/v1/definitions", def).Json()["id"];
    for (int n = 0; n < 40; ++n) {
      json inst = {{"definition_id", def_id}, {"owner_id", "c" + std::to_string(n)},
                   {"timeslot_start", "2026-12-01T09:00:00Z"}, {"timeslot_end", "2026-12-01T10:00:00Z"}};
      const std::string id = http.PostJson("/api/v1/instances", inst).Json()["id"];
      if (n % 2) {
        ASSERT_EQ(http.Delete("/api/v1/instances/" + id).status, 202);
      }
    }
    ccm.Kill(SIGKILL);
  }
  const auto expected = OutboxIds(dir.File("ccm.db"));
  ASSERT_EQ(expected.size(), 3u + 40u + 20u);  // worker pending/provisioning/running, 40 pending, 20 terminated

  testing::TestSink sink(sink_port);
  testing::CcmProcess again(dir.path(), env);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (sink.Distinct() < expected.size() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(sink.Ids(), expected);
  again.Kill(SIGTERM);
  sink.Stop();
}

}  // namespace
}  // namespace ccm

namespace ccm {
namespace {

TEST(EventsCli, ListsDeadLettersAndReplays) {
  testing::TempDir dir;
  // A sink that refuses everything for good: the events die at once.
  testing::TestSink sink(testing::FreePort(), std::vector<testing::TestSink::Step>(100, {400, ""}));
  testing::CcmProcess ccm(dir.path(), {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                       {"CCM_RECONCILERS", "false"},
                                       {"CLOUDEVENTS_SINK_URL", "http://127.0.0.1:" + std::to_string(sink.port())}});
  testing::HttpClient http(ccm.BaseUrl());
  json worker = {{"name", "w1"}, {"hostname", "w1"}, {"cml_url", "http://w1"}, {"license_type", "ENTERPRISE"},
                 {"capacity", {{"cpu_cores", 4}, {"memory_gb", 4}, {"max_nodes", 4}}}, {"state", "RUNNING"}};
  const std::string wid = http.PostJson("/api/v1/workers", worker).Json()["id"];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (http.Get("/api/v1/events/dead-letters").Json()["items"].size() < 1 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));

  const std::string url = " --url " + ccm.BaseUrl();
  auto [list_rc, listed] = testing::RunCcm("events list" + url + " --subject " + wid);
  EXPECT_EQ(list_rc, 0) << listed;
  EXPECT_NE(listed.find("ccm.worker.pending"), std::string::npos) << listed;
  EXPECT_NE(listed.find("\tdead\t1\t"), std::string::npos) << listed;
  EXPECT_NE(listed.find("HTTP 400"), std::string::npos) << listed;
  // The worker's later events wait behind its dead letter, and the listing says why.
  EXPECT_NE(listed.find("\theld\t0\tccm.worker.running"), std::string::npos) << listed;
  EXPECT_NE(listed.find("# held: waiting behind a dead letter"), std::string::npos) << listed;

  // The same records as the API's JSON, and as YAML.
  auto [json_rc, as_json] = testing::RunCcm("events dead-letters -o json" + url);
  EXPECT_EQ(json_rc, 0) << as_json;
  const json page = json::parse(as_json, nullptr, false);
  ASSERT_TRUE(page.is_object()) << as_json;
  EXPECT_EQ(page["items"][0]["state"], "dead") << as_json;
  EXPECT_EQ(page["items"][0]["subject"], wid) << as_json;
  auto [yaml_rc, as_yaml] = testing::RunCcm("events list -o yaml --all --limit 1 --subject " + wid + url);
  EXPECT_EQ(yaml_rc, 0) << as_yaml;
  EXPECT_NE(as_yaml.find("type: ccm.worker.pending\n"), std::string::npos) << as_yaml;
  EXPECT_NE(as_yaml.find("type: ccm.worker.running\n"), std::string::npos) << as_yaml;  // the second page
  EXPECT_NE(as_yaml.find("state: held\n"), std::string::npos) << as_yaml;

  auto [dead_rc, dead] = testing::RunCcm("events dead-letters" + url);
  EXPECT_EQ(dead_rc, 0);
  const std::string event_id = dead.substr(dead.find('\t') + 1, 36);
  auto [replay_rc, replayed] = testing::RunCcm("events replay " + event_id + url);
  EXPECT_EQ(replay_rc, 0) << replayed;
  EXPECT_EQ(replayed, "replayed " + event_id + "\n");
  auto [missing_rc, missing] = testing::RunCcm("events replay nope" + url);
  EXPECT_EQ(missing_rc, 3);  // not found
  EXPECT_NE(missing.find("not found"), std::string::npos);
  auto [bad_rc, bad] = testing::RunCcm("events list --state bogus" + url);
  EXPECT_EQ(bad_rc, 5);  // invalid input
  EXPECT_NE(bad.find("state must be pending, delivered, dead or held"), std::string::npos) << bad;
  sink.Stop();
}

}  // namespace
}  // namespace ccm
