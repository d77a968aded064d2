// Every lablet ends: ccm against cml-sim and assessment-sim over real HTTP, with the platform
// absent, silent, refusing or without a grade, and the Grading Engine failing. Each instance
// reaches TERMINATED with its lab wiped and deleted, its ports released, a reason for the way
// it took, and a metric.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <thread>

#include "app/retention.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "support/fixtures.h"
#include "support/stack.h"
#include "support/test_sink.h"
#include "support/wait.h"
#include "support/world.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::Column;
using testing::Eventually;
using testing::ReasonOf;
using testing::World;

// assessment-sim with `args` sending its events to `ccm_address`.
std::unique_ptr<testing::ChildProcess> Platform(testing::TempDir& dir, const std::string& ccm_address,
                                                std::vector<std::string> args) {
  std::vector<std::string> argv = {ASSESSMENT_SIM_BINARY, "--ready-file", dir.File("sim.ready"), "--events-url",
                                   "http://" + ccm_address + "/api/v1/events", "--grading-schema",
                                   std::string(CCM_TEST_DATA) + "/grading-engine.openapi.json", "--delay-ms", "50"};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<testing::ChildProcess>(argv, std::map<std::string, std::string>{}, dir.File("sim.ready"));
}

// The value of a metric line `name` (with its labels) in /metrics, or -1.
double Metric(World& world, const std::string& name) {
  const std::string text = world.http->Get("/metrics").body;
  const auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

// The data of the last event of `type` about `id`, or null.
json LastEvent(World& world, const std::string& id, const std::string& type) {
  json found;
  for (const auto& record : world.Events(id))
    if (record["type"] == type) found = record["event"]["data"];
  return found;
}

// The stopping and terminated events of `id` both say `outcome`, and a failure with `stage`
// and `code` (none when `code` is empty); with `schemas`, every event of ccm's matches its
// schema (not after a restart on another port: the dataschema URIs name the address).
void ExpectEnding(World& world, const std::string& id, const std::string& outcome, const std::string& stage,
                  const std::string& code, bool schemas = true) {
  for (const char* type : {"ccm.lablet.instance.stopping", "ccm.lablet.instance.terminated"}) {
    const json data = LastEvent(world, id, type);
    if (data.is_null() && std::string(type) == "ccm.lablet.instance.stopping" &&
        ReasonOf(world.Instance(id), "STOPPING").empty())
      continue;  // ended straight from INSTANTIATING: no stopping event
    ASSERT_FALSE(data.is_null()) << type;
    EXPECT_EQ(data["outcome"], outcome) << type << " " << data;
    if (code.empty()) {
      EXPECT_TRUE(data["failure"].is_null()) << type << " " << data;
    } else {
      EXPECT_EQ(data["failure"]["stage"], stage) << type << " " << data;
      EXPECT_EQ(data["failure"]["code"], code) << type << " " << data;
      EXPECT_FALSE(data["failure"]["message"].get<std::string>().empty()) << type;
    }
  }
  if (schemas) {
    EXPECT_GT(testing::ExpectEveryEventMatchesItsSchema(*world.http, world.ccm->BaseUrl()), 0);
  }
}

// Everything the instance held is given back and its lab is gone.
void ExpectNothingLeft(World& world, const std::string& worker) {
  const json w = world.http->Get("/api/v1/workers/" + worker).Json();
  EXPECT_TRUE(w["reservations"].empty()) << w;
  EXPECT_TRUE(w["port_allocations"].empty()) << w;
  for (const auto& lab : world.Labs()) EXPECT_TRUE(lab["deleted"].get<bool>()) << lab;
}

TEST(EveryLabletEnds, WithoutAssessmentIdsOrWithoutAPlatformAnInstanceStopsAtItsTimeslotsEnd) {
  // No ASSESSMENT_PLATFORM_URL: nothing can be collected.
  World world({}, {{"CCM_LISTEN", "127.0.0.1:0"}, {"ARCHIVE_RETENTION_MINUTES", "0"}});
  const std::string worker = world.AddWorker("w1", 32);
  const std::string definition = world.AddDefinition();
  const std::string without_ids =
      world.AddInstance(definition, 1, std::chrono::seconds(-60), std::chrono::seconds(2), /*assessment=*/false);
  const std::string with_ids = world.AddInstance(definition, 2, std::chrono::seconds(-60), std::chrono::seconds(2));
  for (const auto& id : {without_ids, with_ids})
    ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); }, std::chrono::seconds(30)))
        << world.Instance(id);
  for (const auto& id : {without_ids, with_ids})
    EXPECT_EQ(Column(world.Instance(id)["state_history"], "to"),
              (std::vector<std::string>{"SCHEDULED", "INSTANTIATING", "RUNNING", "STOPPING", "STOPPED", "ARCHIVED",
                                        "TERMINATED"}));
  EXPECT_EQ(ReasonOf(world.Instance(without_ids), "STOPPING"), "timeslot ended; not assessed: it has no assessment ids");
  EXPECT_EQ(ReasonOf(world.Instance(with_ids), "STOPPING"),
            "timeslot ended; not assessed: no Assessment Platform is configured");
  // The reason is in the event too.
  const json events = world.Events(without_ids);
  const auto stopping = std::find_if(events.begin(), events.end(),
                                     [](const json& e) { return e["type"] == "ccm.lablet.instance.stopping"; });
  ASSERT_NE(stopping, events.end());
  EXPECT_EQ((*stopping)["event"]["data"]["reason"], "timeslot ended; not assessed: it has no assessment ids");
  EXPECT_EQ(Metric(world, "ccm_instances_not_assessed_total"), 2);
  ExpectEnding(world, without_ids, "not_assessed", "running", "no_assessment_ids");
  ExpectEnding(world, with_ids, "not_assessed", "running", "no_assessment_platform");
  ExpectNothingLeft(world, worker);
}

TEST(EveryLabletEnds, ACollectionNeverAnsweredTimesOut) {
  testing::TempDir side;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  auto platform = Platform(side, address, {"--silent"});
  World world({}, {{"CCM_LISTEN", address},
                   {"ASSESSMENT_PLATFORM_URL", platform->BaseUrl()},
                   {"COLLECTING_TIMEOUT_SECONDS", "1"},
                   {"ARCHIVE_RETENTION_MINUTES", "0"}});
  const std::string worker = world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(-60), std::chrono::seconds(1));
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); }, std::chrono::seconds(30)))
      << world.Instance(id);
  const json i = world.Instance(id);
  EXPECT_EQ(Column(i["state_history"], "to"),
            (std::vector<std::string>{"SCHEDULED", "INSTANTIATING", "RUNNING", "COLLECTING", "STOPPING", "STOPPED",
                                      "ARCHIVED", "TERMINATED"}));
  EXPECT_EQ(ReasonOf(i, "STOPPING"), "collection timed out after 1 s");
  EXPECT_TRUE(i["collection_requested_at"].is_string());  // the platform took it, and said nothing
  EXPECT_TRUE(i["grading_score"].is_null());
  EXPECT_EQ(Metric(world, "ccm_lifecycle_timeouts_total{stage=\"collecting\"}"), 1);
  EXPECT_EQ(Metric(world, "ccm_collection_requests_total{outcome=\"accepted\"}"), 1);
  ExpectEnding(world, id, "timed_out", "collection", "collecting_timeout");
  ExpectNothingLeft(world, worker);
}

TEST(EveryLabletEnds, ACollectionRefusedForGoodIsNotAskedAgainAndTimesOut) {
  testing::TempDir side;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  auto platform = Platform(side, address, {"--refuse-collections"});
  World world({}, {{"CCM_LISTEN", address},
                   {"ASSESSMENT_PLATFORM_URL", platform->BaseUrl()},
                   {"COLLECTING_TIMEOUT_SECONDS", "2"},
                   {"ARCHIVE_RETENTION_MINUTES", "0"}});
  const std::string worker = world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(-60), std::chrono::seconds(1));
  ASSERT_TRUE(Eventually([&] { return world.Instance(id)["collection_refused"] == true; })) << world.Instance(id);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); }, std::chrono::seconds(30)))
      << world.Instance(id);
  const std::string reason = ReasonOf(world.Instance(id), "STOPPING");
  EXPECT_EQ(reason.rfind("collection timed out after 2 s (the platform refused the collection: ", 0), 0u) << reason;
  EXPECT_NE(reason.find("HTTP 422"), std::string::npos) << reason;
  EXPECT_EQ(Metric(world, "ccm_collection_requests_total{outcome=\"refused\"}"), 1);  // asked once only
  ExpectEnding(world, id, "collection_failed", "collection", "collection_refused");
  EXPECT_NE(LastEvent(world, id, "ccm.lablet.instance.stopping")["failure"]["message"].get<std::string>().find("HTTP 422"),
            std::string::npos);
  ExpectNothingLeft(world, worker);
}

TEST(EveryLabletEnds, AGradeNeverGivenTimesOutAndALateScoreIsStillKept) {
  testing::TempDir side;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  auto platform = Platform(side, address, {"--no-grading"});
  World world({}, {{"CCM_LISTEN", address},
                   {"ASSESSMENT_PLATFORM_URL", platform->BaseUrl()},
                   {"GRADING_TIMEOUT_SECONDS", "1"},
                   {"ARCHIVE_RETENTION_MINUTES", "60"}});
  world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(-60), std::chrono::seconds(1));
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "ARCHIVED"); }, std::chrono::seconds(30))) << world.Instance(id);
  const json i = world.Instance(id);
  EXPECT_EQ(ReasonOf(i, "GRADING"), "collection completed");
  EXPECT_EQ(ReasonOf(i, "STOPPING"), "grading timed out after 1 s");
  EXPECT_EQ(Metric(world, "ccm_lifecycle_timeouts_total{stage=\"grading\"}"), 1);
  // The grade comes after all: it is kept, not refused.
  const json graded = {{"specversion", "1.0"}, {"id", "late-1"}, {"source", "/grading"},
                       {"type", "assessment.grading.completed"},
                       {"data", {{"instance_id", id}, {"score", {{"total", 7}, {"max", 10}}}}}};
  EXPECT_EQ(LastEvent(world, id, "ccm.lablet.instance.stopping")["outcome"], "timed_out");
  EXPECT_EQ(LastEvent(world, id, "ccm.lablet.instance.stopping")["failure"]["code"], "grading_timeout");
  auto r = world.http->Post("/api/v1/events", graded.dump(), "application/cloudevents+json");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "applied");
  EXPECT_EQ(world.Instance(id)["grading_score"]["total"], 7.0);
  EXPECT_EQ(world.Instance(id)["state"], "ARCHIVED");
  // ... and published, as the first revision, in the state the instance is in.
  const json published = LastEvent(world, id, "ccm.lablet.instance.grading.completed");
  EXPECT_EQ(published["revision"], 1);
  EXPECT_EQ(published["score_event_id"], "late-1");
  EXPECT_EQ(published["new_state"], "ARCHIVED");
  EXPECT_EQ(world.Instance(id)["ending"]["code"], "graded_late");
  // The lablet has a score now: it ends graded.
  ASSERT_EQ(world.http->Delete("/api/v1/instances/" + id).status / 100, 2);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); }, std::chrono::seconds(30))) << world.Instance(id);
  const json terminated = LastEvent(world, id, "ccm.lablet.instance.terminated");
  EXPECT_EQ(terminated["outcome"], "graded");
  EXPECT_TRUE(terminated["failure"].is_null());
  EXPECT_EQ(terminated["grading_score"]["total"], 7.0);
  EXPECT_GT(testing::ExpectEveryEventMatchesItsSchema(*world.http, world.ccm->BaseUrl()), 0);
}

TEST(EveryLabletEnds, APodTheEngineCannotTakeIsAssignedOnceItCan) {
  testing::TempDir side;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  // Five 503s: more than one call's own retries (three attempts) absorb.
  auto engine = Platform(side, address, {"--fail-pods", "5"});
  World world({}, {{"CCM_LISTEN", address}, {"GRADING_ENGINE_URL", engine->BaseUrl()}});
  world.AddWorker("w1", 32);
  const std::string id =
      world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(0), std::chrono::seconds(3600));
  // The engine client's breaker opens after five failures (10 s); the jittered backoff follows.
  ASSERT_TRUE(Eventually([&] { return world.Instance(id)["pod_assigned"] == true; }, std::chrono::seconds(60)))
      << world.Instance(id);
  EXPECT_EQ(world.Instance(id)["pod_error"], "");
  // Each failed call counts once (its own retries, and the breaker that then opened, inside it).
  EXPECT_GE(Metric(world, "ccm_pod_assignments_total{outcome=\"failed\"}"), 1);
  EXPECT_EQ(Metric(world, "ccm_pod_assignments_total{outcome=\"assigned\"}"), 1);
  const json pods = testing::HttpClient(engine->BaseUrl()).Get("/sim/state").Json()["pods"];
  EXPECT_EQ(pods.size(), 1u);
  EXPECT_EQ(Metric(world, "ccm_instances{state=\"RUNNING\"}"), 1);
}

TEST(EveryLabletEnds, AnImportThatTakesCcmDownIsNotTriedForEver) {
  // Each import takes long enough for ccm to be killed in the middle of it, as a crash in the
  // import would: the attempt was counted before it started, so restarts give up after
  // CML_MAX_FAILURES instead of crash-looping.
  World world({"--import-delay-ms", "3000"}, {{"CCM_LISTEN", "127.0.0.1:0"}, {"CML_MAX_FAILURES", "2"}});
  world.AddWorker("w1", 32);
  const std::string id = world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  for (int crash = 1; crash <= 2; ++crash) {
    ASSERT_TRUE(Eventually([&] { return world.Instance(id)["cml_failures"] == crash; })) << world.Instance(id);
    EXPECT_EQ(world.Instance(id)["cml_error"], "an import started and did not finish");
    world.ccm->Kill(SIGKILL);
    world.Start();
  }
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); })) << world.Instance(id);
  const json i = world.Instance(id);
  EXPECT_EQ(Column(i["state_history"], "to"), (std::vector<std::string>{"SCHEDULED", "INSTANTIATING", "TERMINATED"}));
  EXPECT_EQ(ReasonOf(i, "TERMINATED"), "instantiation failed: 2 attempts to import the lab did not finish");
  EXPECT_TRUE(i["cml_lab_id"].is_null());
  ExpectEnding(world, id, "instantiation_failed", "instantiation", "cml_failed", /*schemas=*/false);
}

TEST(Retention, TerminatedInstancesAndDeliveredEventsGoInBatchesDeadLettersStay) {
  testing::Stack stack(testing::StoreKind::kMemory);
  ports::Changes c;
  for (int n = 0; n < 5; ++n) {
    domain::LabletInstance i = testing::MakeInstance("t" + std::to_string(n));
    i.state = domain::InstanceState::kTerminated;
    i.terminated_at = stack.clock.Now() - std::chrono::hours(24 * 40);
    c.instances.push_back(i);
  }
  domain::LabletInstance recent = testing::MakeInstance("recent");
  recent.state = domain::InstanceState::kTerminated;
  recent.terminated_at = stack.clock.Now() - std::chrono::hours(24);
  c.instances.push_back(recent);
  for (int n = 0; n < 3; ++n)
    c.events.push_back({"e" + std::to_string(n), "t0", "ccm.test", stack.clock.Now(), "{}"});
  ASSERT_TRUE(stack.store->Commit(c));
  auto due = stack.outbox->DueEvents(stack.clock.Now(), 10).value();
  ASSERT_EQ(due.size(), 3u);
  ports::Changes d;
  const Timestamp long_ago = stack.clock.Now() - std::chrono::hours(24 * 10);
  d.deliveries = {{due[0].seq, ports::DeliveryState::kDelivered, 1, long_ago, "", "e0"},
                  {due[1].seq, ports::DeliveryState::kDelivered, 1, long_ago, "", "e1"},
                  {due[2].seq, ports::DeliveryState::kDead, 1, long_ago, "HTTP 400", "e2"}};
  ASSERT_TRUE(stack.store->Commit(d));

  app::RetentionMetrics metrics;
  app::RetentionOptions options;  // 30 days for instances, 7 for events
  options.batch = 2;              // three batches for the five old instances
  app::RetentionSweeper sweeper(*stack.store, stack.clock, options, metrics);
  auto swept = sweeper.SweepOnce();
  ASSERT_TRUE(swept) << swept.error().message;
  EXPECT_EQ(swept->instances, 5);
  EXPECT_EQ(swept->events, 2);
  EXPECT_EQ(metrics.instances.load(), 5u);
  EXPECT_EQ(metrics.events.load(), 2u);
  EXPECT_TRUE(stack.store->GetInstance({"recent"}));  // within its retention
  EXPECT_TRUE(stack.outbox->GetEvent("e2"));            // a dead letter waits for its replay
  EXPECT_EQ(stack.outbox->GetOutboxStats()->published, 3);
  EXPECT_EQ(sweeper.SweepOnce()->instances, 0);  // nothing more is due
}

}  // namespace
}  // namespace ccm
