// Several ccm processes on one etcd cluster, all real: three etcd members, two `ccm serve`
// replicas, cml-sim and a sink over loopback. The leader is killed and the other takes over
// within twice the lease TTL; an etcd member is killed and nothing stops; no event is lost
// and no port handed out twice; the same event sent to both replicas at once applies once.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"
#include "support/wait.h"

namespace ccm {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

using testing::Eventually;
using testing::Rfc3339;

std::string ReadLog(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

constexpr int kLeaderTtlSeconds = 2;

// Two replicas, each with its own folder and HTTP client.
struct Replicas {
  testing::TempDir dir;
  std::vector<std::unique_ptr<testing::TempDir>> dirs;
  std::vector<std::unique_ptr<testing::CcmProcess>> ccm;
  std::vector<std::unique_ptr<testing::HttpClient>> http;

  Replicas(const std::map<std::string, std::string>& env) {
    for (int n = 0; n < 2; ++n) {
      dirs.push_back(std::make_unique<testing::TempDir>());
      ccm.push_back(std::make_unique<testing::CcmProcess>(dirs[n]->path(), env, false, dirs[n]->File("ccm.log")));
      http.push_back(std::make_unique<testing::HttpClient>(ccm[n]->BaseUrl()));
    }
  }
  // The replica that reports itself leader, or -1.
  int Leader(const std::set<int>& alive = {0, 1}) {
    int leader = -1, leaders = 0;
    for (int n : alive) {
      auto r = http[n]->Get("/health/ready");
      if (r.status == 200 && r.Json().value("leader", false)) {
        leader = n;
        ++leaders;
      }
    }
    return leaders == 1 ? leader : -1;
  }
};

TEST(Replicas, KillingTheLeaderAndAnEtcdMemberLosesNoEventAndHandsOutNoPortTwice) {
  testing::TempDir side;
  testing::EtcdCluster etcd(side.File("etcd"), 3);
  testing::TestSink sink(0);
  testing::ChildProcess cml({CML_SIM_BINARY, "--ready-file", side.File("cml.ready"), "--cml-schema",
                             std::string(CCM_TEST_DATA) + "/cml-2.9.openapi.json", "--start-delay-ms", "300"},
                            {}, side.File("cml.ready"));
  Replicas replicas({{"CCM_STORE", etcd.StoreSetting()},
                     {"CCM_LEADER_TTL_SECONDS", std::to_string(kLeaderTtlSeconds)},
                     {"CLOUDEVENTS_SINK_URL", "http://127.0.0.1:" + std::to_string(sink.port()) + "/events"},
                     {"CML_PASSWORD", "cml-secret"},
                     {"RECONCILE_INTERVAL_MS", "100"},
                     {"INSTANTIATION_LEAD_SECONDS", "0"},
                     {"ARCHIVE_RETENTION_MINUTES", "0"},
                     {"CCM_LOG_LEVEL", "info"}});
  ASSERT_TRUE(Eventually([&] { return replicas.Leader() >= 0; }, 10s));
  const int first_leader = replicas.Leader();
  const int survivor = 1 - first_leader;
  auto& api = *replicas.http[survivor];
  auto& other = *replicas.http[first_leader];
  EXPECT_NE(other.Get("/metrics").body.find("\nccm_leader 1\n"), std::string::npos);
  EXPECT_NE(api.Get("/metrics").body.find("\nccm_leader 0\n"), std::string::npos);

  // Everything is asked of both replicas: each serves the API.
  const std::string worker_id = other.PostJson("/api/v1/workers", testing::WorkerBody("w1", cml.BaseUrl(), 64)).Json()["id"];
  const json def = testing::SampleDefinitionBody(testing::ReadTestData("sample_lab_template.yaml"));
  const std::string definition = api.PostJson("/api/v1/definitions", def).Json()["id"];
  std::vector<std::string> ids;
  const auto now = std::chrono::system_clock::now();
  for (int n = 0; n < 10; ++n) {
    json body = {{"definition_id", definition},
                 {"owner_id", "candidate-" + std::to_string(n)},
                 {"timeslot_start", Rfc3339(now)},
                 {"timeslot_end", Rfc3339(now + 1h)}};
    auto r = (n % 2 ? api : other).PostJson("/api/v1/instances", body);
    ASSERT_EQ(r.status, 201) << r.body;
    ids.push_back(r.Json()["id"]);
  }
  auto state = [&](const std::string& id) { return api.Get("/api/v1/instances/" + id).Json().value("state", ""); };

  // The leader is killed without warning once the first lab runs.
  ASSERT_TRUE(Eventually([&] {
    for (const auto& id : ids)
      if (state(id) == "RUNNING") return true;
    return false;
  }));
  const auto killed = std::chrono::steady_clock::now();
  replicas.ccm[first_leader]->Kill(SIGKILL);
  ASSERT_TRUE(Eventually([&] { return replicas.Leader({survivor}) == survivor; }, 10s))
      << ReadLog(replicas.dirs[survivor]->File("ccm.log"));
  const auto takeover = std::chrono::steady_clock::now() - killed;
  EXPECT_LT(takeover, std::chrono::seconds(2 * kLeaderTtlSeconds));
  std::cout << "takeover after the leader's death: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(takeover).count() << " ms\n";

  // One etcd member dies, the raft leader among them: ccm carries on with the other two.
  const int etcd_leader = etcd.Leader();
  ASSERT_GE(etcd_leader, 0);
  etcd.Kill(etcd_leader);

  for (const auto& id : ids) ASSERT_TRUE(Eventually([&] { return state(id) == "RUNNING"; }, 30s)) << id;
  // While every lablet runs, no port is held twice on the worker.
  std::set<int> ports;
  for (const auto& id : ids) {
    const json allocated = api.Get("/api/v1/instances/" + id).Json()["allocated_ports"];
    for (const auto& [name, port] : allocated.items())
      EXPECT_TRUE(ports.insert(port.get<int>()).second) << "port " << port << " handed out twice";
  }
  EXPECT_EQ(ports.size(), ids.size() * 3);  // three ports per lab

  for (const auto& id : ids) ASSERT_EQ(api.Delete("/api/v1/instances/" + id).status, 202);
  for (const auto& id : ids) ASSERT_TRUE(Eventually([&] { return state(id) == "TERMINATED"; }, 30s)) << id;

  // Each state once, in order: nothing applied twice across the failover.
  for (const auto& id : ids) {
    std::vector<std::string> to;
    const json instance = api.Get("/api/v1/instances/" + id).Json();
    for (const auto& c : instance["state_history"]) to.push_back(c["to"]);
    EXPECT_EQ(to, (std::vector<std::string>{"SCHEDULED", "INSTANTIATING", "RUNNING", "STOPPING", "STOPPED", "ARCHIVED",
                                            "TERMINATED"}))
        << id;
  }
  // Every event committed reached the sink (at least once), whichever replica committed it.
  ASSERT_TRUE(Eventually([&] { return api.Get("/metrics").body.find("ccm_outbox_depth 0\n") != std::string::npos; }));
  const json events = api.Get("/api/v1/events?limit=500").Json()["items"];
  std::map<std::string, int> by_type;
  for (const auto& e : events) ++by_type[e["type"].get<std::string>()];
  // Per instance, pending and seven transitions; the worker's registration, three.
  ASSERT_EQ(events.size(), ids.size() * 8 + 3) << json(by_type);
  const auto arrived = sink.Ids();
  for (const auto& e : events) {
    EXPECT_EQ(e["state"], "delivered") << e;
    EXPECT_TRUE(arrived.count(e["id"].get<std::string>())) << "lost: " << e;
  }
  // Ports and capacity given back; every recorded lab deleted.
  const json w = api.Get("/api/v1/workers/" + worker_id).Json();
  EXPECT_TRUE(w["port_allocations"].empty()) << w;
  EXPECT_TRUE(w["reservations"].empty()) << w;
  std::set<std::string> deleted;
  for (const auto& lab : testing::HttpClient(cml.BaseUrl()).Get("/sim/labs").Json())
    if (lab["deleted"].get<bool>()) deleted.insert(lab["id"].get<std::string>());
  for (const auto& id : ids) {
    const json i = api.Get("/api/v1/instances/" + id).Json();
    EXPECT_TRUE(deleted.count(i["cml_lab_id"].get<std::string>())) << i;
  }
}

TEST(Replicas, AChangeMadeThroughAnotherReplicaWakesTheLeadersLoops) {
  testing::TempDir side;
  testing::EtcdCluster etcd(side.File("etcd"), 1);
  // The periodic sweep is ten minutes away: only the watch can wake the scheduler.
  Replicas replicas({{"CCM_STORE", etcd.StoreSetting()}, {"RECONCILE_INTERVAL_MS", "600000"}});
  ASSERT_TRUE(Eventually([&] { return replicas.Leader() >= 0; }, 10s));
  auto& follower = *replicas.http[1 - replicas.Leader()];
  const auto seed = testing::SeedLab(follower, testing::ReadTestData("sample_lab_template.yaml"));
  std::this_thread::sleep_for(500ms);  // the loops' first sweeps are over
  const auto now = std::chrono::system_clock::now();
  json body = {{"definition_id", seed.definition_id}, {"owner_id", "c"},
               {"timeslot_start", Rfc3339(now + 10min)}, {"timeslot_end", Rfc3339(now + 70min)}};
  const std::string id = follower.PostJson("/api/v1/instances", body).Json()["id"];
  EXPECT_TRUE(Eventually([&] { return follower.Get("/api/v1/instances/" + id).Json()["state"] == "SCHEDULED"; }, 5s))
      << follower.Get("/api/v1/instances/" + id).body;
}

TEST(Replicas, TheSameEventSentToBothReplicasAtOnceIsAppliedOnce) {
  testing::TempDir side;
  testing::EtcdCluster etcd(side.File("etcd"), 1);
  Replicas replicas({{"CCM_STORE", etcd.StoreSetting()}, {"CCM_RECONCILERS", "false"}});
  auto& a = *replicas.http[0];
  auto& b = *replicas.http[1];
  const auto seed = testing::SeedLab(a, testing::ReadTestData("sample_lab_template.yaml"));
  constexpr int kEvents = 12;
  std::vector<std::string> ids;
  for (int n = 0; n < kEvents; ++n) {
    json body = {{"definition_id", seed.definition_id}, {"owner_id", "c" + std::to_string(n)},
                 {"timeslot_start", "2026-12-01T09:00:00Z"}, {"timeslot_end", "2026-12-01T10:00:00Z"}};
    const std::string id = b.PostJson("/api/v1/instances", body).Json()["id"];
    ASSERT_EQ(a.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", seed.worker_id}}).status, 200);
    for (const char* to : {"INSTANTIATING", "RUNNING", "COLLECTING"})
      ASSERT_EQ(b.PostJson("/api/internal/instances/" + id + "/transition", {{"to", to}}).status, 200);
    ids.push_back(id);
  }
  std::map<std::string, int> outcomes;
  std::mutex mu;
  for (int n = 0; n < kEvents; ++n) {
    const json event = {{"specversion", "1.0"},
                        {"id", "col-done-" + std::to_string(n)},
                        {"source", "/assessment-platform"},
                        {"type", "assessment.collection.completed"},
                        {"datacontenttype", "application/json"},
                        {"data", {{"instance_id", ids[n]}, {"collection_id", "c"}, {"artifacts_uri", "s3://x"}}}};
    auto send = [&](testing::HttpClient& to) {
      auto r = to.Post("/api/v1/events", event.dump(), "application/cloudevents+json");
      std::lock_guard lock(mu);
      ++outcomes[std::to_string(r.status) + " " + r.Json().value("outcome", r.body)];
    };
    std::thread ta([&] { send(a); });
    std::thread tb([&] { send(b); });
    ta.join();
    tb.join();
  }
  EXPECT_EQ(outcomes["202 applied"], kEvents) << json(outcomes);
  EXPECT_EQ(outcomes["202 duplicate"], kEvents) << json(outcomes);
  for (const auto& id : ids) {
    int graded = 0;
    const json instance = a.Get("/api/v1/instances/" + id).Json();  // kept: the loop reads a member
    for (const auto& c : instance["state_history"]) graded += c["to"] == "GRADING";
    EXPECT_EQ(graded, 1) << instance;
  }
}

}  // namespace
}  // namespace ccm
