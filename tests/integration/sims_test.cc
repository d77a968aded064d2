// ccm against its simulators over real HTTP, driven by its own reconcilers: oidc-sim for
// tokens, cml-sim as the CML worker (and the cloud provider), assessment-sim as the
// Assessment Platform and the Grading Engine (which refuses pods that do not validate and
// sends every result twice), and a CloudEvents sink.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "domain/time.h"
#include "support/test_sink.h"
#include "support/wait.h"
#include "support/world.h"

namespace ccm {
namespace {

using nlohmann::json;

using testing::Column;
using testing::Eventually;
using testing::ExpectEveryEventMatchesItsSchema;
using testing::World;

// Task 4.12: the whole lifecycle of several instances, by the real flows.
TEST(EndToEnd, EveryInstanceGoesFromPendingToTerminatedByTheRealFlows) {
  testing::TempDir side;
  testing::TestSink sink(0);
  const std::string ccm_address = "127.0.0.1:" + std::to_string(testing::FreePort());
  // Tokens live 2 s, so ccm's outbound token is renewed during the test; inbound, ccm accepts
  // a token up to AUTH_CLOCK_SKEW_SECONDS (60) past its expiry, which covers the test's own.
  testing::ChildProcess oidc({OIDC_SIM_BINARY, "--ready-file", side.File("oidc.ready"), "--lifetime", "2",
                              "--issuer", "http://oidc-sim", "--client", "tester:t-secret:ccm.admin",
                              "--client", "platform:p-secret:ccm.events.publish"},
                             {}, side.File("oidc.ready"));
  testing::ChildProcess platform({ASSESSMENT_SIM_BINARY, "--ready-file", side.File("sim.ready"), "--events-url",
                                  "http://" + ccm_address + "/api/v1/events", "--grading-schema",
                                  std::string(CCM_TEST_DATA) + "/grading-engine.openapi.json", "--delay-ms", "100",
                                  "--fail-collections", "2", "--send-twice", "--require-bearer", "--token-url",
                                  oidc.BaseUrl() + "/token", "--client-id", "platform", "--client-secret", "p-secret"},
                                 {}, side.File("sim.ready"));
  // CML tokens live half a second: ccm authenticates again when one expires.
  World world({"--token-ttl-ms", "500"},
              {{"CCM_LISTEN", ccm_address},
               {"CLOUDEVENTS_SINK_URL", "http://127.0.0.1:" + std::to_string(sink.port()) + "/events"},
               {"ASSESSMENT_PLATFORM_URL", platform.BaseUrl()},
               {"GRADING_ENGINE_URL", platform.BaseUrl()},
               {"OIDC_TOKEN_URL", oidc.BaseUrl() + "/token"},
               {"OIDC_CLIENT_ID", "ccm"},
               {"OIDC_CLIENT_SECRET", "ccm-secret"},
               {"AUTH_JWKS_URL", oidc.BaseUrl() + "/jwks"},
               {"AUTH_ISSUER", "http://oidc-sim"},
               {"ARCHIVE_RETENTION_MINUTES", "0"}});
  world.http->SetBearer(testing::HttpClient(oidc.BaseUrl())
                            .Post("/token", "grant_type=client_credentials&client_id=tester&client_secret=t-secret",
                                  "application/x-www-form-urlencoded")
                            .Json()["access_token"]);
  const std::string worker = world.AddWorker("cml-worker-1", 32);
  const std::string definition = world.AddDefinition();
  // Three collected through the API; the fourth when its timeslot ends, three seconds in.
  std::vector<std::string> ids;
  for (int n = 1; n <= 3; ++n) ids.push_back(world.AddInstance(definition, n, std::chrono::seconds(0), std::chrono::seconds(3600)));
  ids.push_back(world.AddInstance(definition, 4, std::chrono::seconds(-60), std::chrono::seconds(3)));

  // Each pod goes to the Grading Engine after the move to RUNNING.
  for (const auto& id : ids)
    ASSERT_TRUE(Eventually([&] { return world.Instance(id)["pod_assigned"].get<bool>(); })) << world.Instance(id);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // past a CML token's life
  for (int n = 0; n < 3; ++n) {
    auto r = world.http->PostJson("/api/v1/instances/" + ids[n] + "/collect", {{"triggered_by", "proctor"}});
    ASSERT_EQ(r.status, 202) << r.body;
  }
  for (const auto& id : ids)
    ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); }, std::chrono::seconds(30)))
        << world.Instance(id);

  // Every state in order, per instance.
  const std::vector<std::string> states = {"SCHEDULED", "INSTANTIATING", "RUNNING",  "COLLECTING", "GRADING",
                                           "STOPPING",  "STOPPED",       "ARCHIVED", "TERMINATED"};
  const std::vector<std::string> types = {
      "ccm.lablet.instance.pending",          "ccm.lablet.instance.scheduled",
      "ccm.lablet.instance.provisioning.started", "ccm.lablet.instance.running",
      "ccm.lablet.instance.pod.assigned",     "ccm.lablet.instance.collecting.started",
      "ccm.lablet.instance.grading.started",
      "ccm.lablet.instance.grading.completed", "ccm.lablet.instance.stopping",
      "ccm.lablet.instance.stopped",          "ccm.lablet.instance.archived",
      "ccm.lablet.instance.terminated"};
  ASSERT_TRUE(Eventually([&] { return world.http->Get("/metrics").body.find("ccm_outbox_depth 0\n") != std::string::npos; }));
  std::set<std::string> lab_ids;
  for (size_t n = 0; n < ids.size(); ++n) {
    const json i = world.Instance(ids[n]);
    EXPECT_EQ(Column(i["state_history"], "to"), states) << i;
    EXPECT_EQ(i["grading_score"]["total"], 8.0);
    EXPECT_TRUE(i["pod_assigned"].get<bool>()) << i["pod_error"];
    ASSERT_TRUE(i["cml_lab_id"].is_string());
    lab_ids.insert(i["cml_lab_id"].get<std::string>());

    // Every event in order, of the right type and data; the sink got them in that order.
    const json events = world.Events(ids[n]);
    ASSERT_EQ(Column(events, "type"), types);
    EXPECT_EQ(sink.FirstArrivals()[ids[n]], Column(events, "id"));
    auto data = [&](size_t k) { return json::parse(events[k]["event"].dump())["data"]; };
    EXPECT_EQ(data(1)["worker_id"], worker);
    EXPECT_EQ(data(1)["allocated_ports"], i["allocated_ports"]);
    EXPECT_EQ(data(3)["cml_lab_id"], i["cml_lab_id"]);
    EXPECT_EQ(data(3)["worker_hostname"], "cml-worker-1.lab");
    EXPECT_EQ(data(3)["pod_assigned"], false);  // assigned after the move: the next event
    EXPECT_EQ(data(4)["session_id"], "session-" + std::to_string(n + 1));
    EXPECT_EQ(data(5)["collection_reason"], n < 3 ? "manual" : "timeslot_end");
    EXPECT_EQ(data(7)["score"]["total"], 8.0);
    EXPECT_EQ(data(11)["final_state"], "ARCHIVED");  // the state it ended from
    for (const auto& e : events) EXPECT_EQ(e["state"], "delivered") << e;
  }

  // The CML labs: imported with the instance's ports, then stopped, wiped and deleted.
  const json labs = world.Labs();
  ASSERT_EQ(labs.size(), ids.size());
  for (const auto& lab : labs) {
    EXPECT_TRUE(lab_ids.count(lab["id"].get<std::string>())) << lab["id"];
    EXPECT_TRUE(lab["deleted"].get<bool>());
    EXPECT_GE(lab["stops"].get<int>(), 1);
    EXPECT_GE(lab["wipes"].get<int>(), 1);
    EXPECT_EQ(lab["topology"].dump().find("${PORT_"), std::string::npos);
  }
  const json first = world.Instance(ids[0]);
  // Labs are imported side by side, so the first instance's lab may be any of them.
  json first_lab;
  for (const auto& lab : labs)
    if (lab["id"] == first["cml_lab_id"]) first_lab = lab;
  ASSERT_TRUE(first_lab.is_object()) << first["cml_lab_id"];
  EXPECT_NE(first_lab["topology"].dump().find("serial:" + std::to_string(first["allocated_ports"]["serial_1"].get<int>())),
            std::string::npos);
  const json sims = testing::HttpClient(world.cml->BaseUrl()).Get("/sim/workers").Json();
  EXPECT_GE(sims["authentications"].get<int>(), 2);  // the expired token was replaced

  // The data of every event matches the schema its dataschema names.
  EXPECT_GE(ExpectEveryEventMatchesItsSchema(*world.http, "http://" + ccm_address), 4 * 12 + 3);

  // Ports and capacity given back.
  const json w = world.http->Get("/api/v1/workers/" + worker).Json();
  EXPECT_TRUE(w["reservations"].empty()) << w;
  EXPECT_TRUE(w["port_allocations"].empty()) << w;
  EXPECT_EQ(w["allocated"]["cpu_cores"], 0.0);

  // Pods valid (assessment-sim refuses any other) and one per instance; results sent twice,
  // applied once.
  const json state = testing::HttpClient(platform.BaseUrl()).Get("/sim/state").Json();
  EXPECT_EQ(state["refused"], 0);
  std::set<std::string> pod_paths;
  for (const auto& p : state["pods"]) pod_paths.insert(p["path"].get<std::string>());
  EXPECT_EQ(pod_paths.size(), ids.size());
  EXPECT_TRUE(pod_paths.count("/api/v1/sessions/session-1/parts/part-1/pod"));
  // One collection per instance; a slow platform may see a request twice (a client timeout
  // after the platform took it), which ccm's dedup and stale rules absorb.
  std::set<std::string> collected;
  for (const auto& c : state["collections"]) collected.insert(c["instance_id"].get<std::string>());
  EXPECT_EQ(collected, std::set<std::string>(ids.begin(), ids.end()));
  auto received = [&](const std::string& outcome) {
    const std::string metrics = world.http->Get("/metrics").body;
    const std::string key = "ccm_events_received_total{outcome=\"" + outcome + "\"} ";
    const auto at = metrics.find(key);
    return at == std::string::npos ? -1 : std::stoi(metrics.substr(at + key.size()));
  };
  Eventually([&] { return received("duplicate") >= 8; });
  EXPECT_EQ(received("applied"), 8);  // two results per instance, each applied once
  EXPECT_GE(received("duplicate"), 8);  // every result was sent twice
}

TEST(Lifecycle, FailedImportsAreRetriedUntilTheLabRuns) {
  World world({"--fail-imports", "2"}, {{"CCM_LISTEN", "127.0.0.1:0"}});
  world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "RUNNING"); })) << world.Instance(id);
  const json i = world.Instance(id);
  EXPECT_EQ(i["cml_failures"], 0);  // cleared by the move
  EXPECT_EQ(world.Labs().size(), 1u);
}

TEST(Lifecycle, AnInstantiationThatKeepsFailingEndsTerminatedWithNothingLeft) {
  World world({"--fail-starts", "1000"}, {{"CCM_LISTEN", "127.0.0.1:0"}, {"CML_MAX_FAILURES", "2"}});
  const std::string worker = world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); })) << world.Instance(id);
  const json i = world.Instance(id);
  EXPECT_EQ(Column(i["state_history"], "to"), (std::vector<std::string>{"SCHEDULED", "INSTANTIATING", "TERMINATED"}));
  const std::string reason = i["state_history"][2]["reason"];
  EXPECT_EQ(reason.rfind("instantiation failed: CML", 0), 0u) << reason;
  EXPECT_NE(reason.find("HTTP 500"), std::string::npos) << reason;
  const json w = world.http->Get("/api/v1/workers/" + worker).Json();
  EXPECT_TRUE(w["reservations"].empty()) << w;
  EXPECT_TRUE(w["port_allocations"].empty()) << w;
  const json labs = world.Labs();
  ASSERT_EQ(labs.size(), 1u);
  EXPECT_TRUE(labs[0]["deleted"].get<bool>());  // the half-made lab is not left behind
}

TEST(Lifecycle, DeleteOfARunningInstanceRetriesAFailingStopThenWipesAndDeletes) {
  World world({"--fail-stops", "2"}, {{"CCM_LISTEN", "127.0.0.1:0"}});
  world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "RUNNING"); })) << world.Instance(id);
  auto del = world.http->Delete("/api/v1/instances/" + id);
  ASSERT_EQ(del.status, 202) << del.body;
  // The first stop fails: the error shows on the instance while it waits to try again.
  ASSERT_TRUE(Eventually([&] { return world.Instance(id)["cml_error"].get<std::string>().find("HTTP 500") != std::string::npos; }))
      << world.Instance(id);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); })) << world.Instance(id);
  const json i = world.Instance(id);
  EXPECT_EQ(Column(i["state_history"], "to"),
            (std::vector<std::string>{"SCHEDULED", "INSTANTIATING", "RUNNING", "STOPPING", "STOPPED", "ARCHIVED", "TERMINATED"}));
  const json labs = world.Labs();
  ASSERT_EQ(labs.size(), 1u);
  EXPECT_TRUE(labs[0]["deleted"].get<bool>());
  EXPECT_GE(labs[0]["wipes"].get<int>(), 1);
}

TEST(Lifecycle, DeleteWhileTheLabStartsRemovesTheLabBeforeTerminating) {
  World world({"--start-delay-ms", "600000"}, {{"CCM_LISTEN", "127.0.0.1:0"}});  // never STARTED here
  const std::string worker = world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  ASSERT_TRUE(Eventually([&] { return world.Instance(id)["cml_lab_id"].is_string(); })) << world.Instance(id);
  ASSERT_EQ(world.Instance(id)["state"], "INSTANTIATING");
  auto del = world.http->Delete("/api/v1/instances/" + id);
  ASSERT_EQ(del.status, 202) << del.body;
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); })) << world.Instance(id);
  const json i = world.Instance(id);
  EXPECT_EQ(Column(i["state_history"], "to"), (std::vector<std::string>{"SCHEDULED", "INSTANTIATING", "TERMINATED"}));
  EXPECT_NE(i["state_history"][2]["reason"].get<std::string>().find("wiped and deleted"), std::string::npos);
  const json labs = world.Labs();
  ASSERT_EQ(labs.size(), 1u);
  EXPECT_TRUE(labs[0]["deleted"].get<bool>());
  EXPECT_GE(labs[0]["wipes"].get<int>(), 1);
  const json w = world.http->Get("/api/v1/workers/" + worker).Json();
  EXPECT_TRUE(w["reservations"].empty()) << w;
  EXPECT_TRUE(w["port_allocations"].empty()) << w;
}

TEST(Lifecycle, AnArchivedInstanceIsKeptForTheRetention) {
  World world({}, {{"CCM_LISTEN", "127.0.0.1:0"}, {"ARCHIVE_RETENTION_MINUTES", "60"}});
  world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "RUNNING"); }));
  world.http->PostJson("/api/internal/instances/" + id + "/transition", {{"to", "STOPPING"}});
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "ARCHIVED"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(world.InState(id, "ARCHIVED"));
  EXPECT_FALSE(world.Labs()[0]["deleted"].get<bool>());  // kept, stopped, until the retention ends
  // DELETE ends it at once.
  world.http->Delete("/api/v1/instances/" + id);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); }));
  EXPECT_TRUE(world.Labs()[0]["deleted"].get<bool>());
}

TEST(Scaling, OneShortageAsksForOneWorkerAndAnIdleLaunchedWorkerIsReleased) {
  // No worker registered: the first one comes from the cloud provider.
  World world({"--provision-delay-ms", "300"},
              {{"CCM_LISTEN", "127.0.0.1:0"}, {"SCALE_DOWN_GRACE_MINUTES", "0"}, {"ARCHIVE_RETENTION_MINUTES", "0"}},
              /*cloud=*/true);
  const std::string definition = world.AddDefinition();
  const std::string a = world.AddInstance(definition, 1, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  const std::string b = world.AddInstance(definition, 2, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  ASSERT_TRUE(Eventually([&] { return world.InState(a, "RUNNING") && world.InState(b, "RUNNING"); }))
      << world.Instance(a) << world.Instance(b);
  const json workers = world.http->Get("/api/v1/workers").Json()["items"];
  ASSERT_EQ(workers.size(), 1u) << workers;  // one shortage, one worker, both placed on it
  const std::string worker = workers[0]["id"];
  EXPECT_TRUE(workers[0]["scaled_up"].get<bool>());
  EXPECT_EQ(world.Instance(a)["worker_id"], worker);
  EXPECT_EQ(world.Instance(b)["worker_id"], worker);

  world.http->Delete("/api/v1/instances/" + a);
  world.http->Delete("/api/v1/instances/" + b);
  // Released, then TERMINATED once the provider confirms it.
  ASSERT_TRUE(Eventually([&] { return world.http->Get("/api/v1/workers/" + worker).Json()["state"] == "TERMINATED"; }))
      << world.http->Get("/api/v1/workers/" + worker).body;
  const json w = world.http->Get("/api/v1/workers/" + worker).Json();
  EXPECT_EQ(Column(w["state_history"], "to"),
            (std::vector<std::string>{"PROVISIONING", "RUNNING", "DRAINING", "STOPPING", "STOPPED", "TERMINATED"}));
  EXPECT_EQ(w["state_history"][5]["reason"], "the provider confirms it released");
  EXPECT_EQ(Column(world.Events(worker), "type"),
            (std::vector<std::string>{"ccm.worker.pending", "ccm.scaling.up.requested",
                                      "ccm.worker.provisioning.started", "ccm.worker.running",
                                      "ccm.scaling.up.completed", "ccm.scaling.down.requested", "ccm.worker.draining",
                                      "ccm.worker.stopping", "ccm.worker.stopped", "ccm.scaling.down.completed",
                                      "ccm.worker.terminated"}));
  // The worker's 11, and 8 for each instance (pending ... running, then DELETE: stopping ... terminated).
  EXPECT_EQ(ExpectEveryEventMatchesItsSchema(*world.http, world.ccm->BaseUrl()), 11 + 2 * 8);
  // The counter moves just after the commit that the test saw: it may lag it by a moment.
  EXPECT_TRUE(Eventually(
      [&] { return world.http->Get("/metrics").body.find("ccm_workers_terminated_total 1\n") != std::string::npos; }));
  const json cloud = testing::HttpClient(world.cml->BaseUrl()).Get("/sim/workers").Json()["workers"];
  ASSERT_EQ(cloud.size(), 1u);
  EXPECT_EQ(cloud[0]["state"], "released");
  EXPECT_EQ(cloud[0]["id"], w["cloud_id"]);
}

}  // namespace
}  // namespace ccm
