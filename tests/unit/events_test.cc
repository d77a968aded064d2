// The data of every event type, as SYSTEM.md lists it, built by the one event factory; and
// which errors refuse an event the receiver consumes.
#include "app/events.h"
#include "app/receiver.h"

#include <gtest/gtest.h>

#include "cloudevents/json_format.h"
#include "support/fixtures.h"

namespace ccm::app {
namespace {

using namespace ccm::domain;
using nlohmann::json;

class CountingIds : public ports::IdGenerator {
 public:
  std::string NewId() override { return "evt-" + std::to_string(++n_); }

 private:
  int n_ = 0;
};

class Events : public ::testing::Test {
 protected:
  Events() {
    def_ = ccm::testing::MakeDefinition("def-1", "lab", "1.0.0");
    worker_ = ccm::testing::MakeWorker("w1");
    instance_ = ccm::testing::MakeInstance("i1");
    instance_.reservation_id = "r-9";
  }

  // The event, checked as a valid CloudEvent with the common fields.
  json Check(const ports::OutboxEvent& e, const std::string& type) {
    auto ce = cloudevents::ParseEvent(e.json);
    EXPECT_TRUE(ce) << e.json;
    EXPECT_EQ(ce->type, type);
    EXPECT_EQ(e.type, type);
    EXPECT_EQ(ce->source, "ccm-test");
    EXPECT_EQ(ce->datacontenttype, "application/json");
    EXPECT_EQ(*ce->subject, e.subject);
    return *ce->data;
  }

  json Move(InstanceState to, std::string_view collection_reason = "manual") {
    auto change = MoveInstance(instance_, &worker_, to, FromUnixMillis(5000), "because", "tester");
    EXPECT_TRUE(change) << ToString(to);
    json data = Check(factory_.InstanceMoved(instance_, *change, worker_.hostname, &def_, collection_reason),
                      std::string(EventTypeOnEntering(to)));
    for (const char* key : {"instance_id", "definition_id", "definition_version", "previous_state", "new_state",
                            "worker_id", "timestamp"})
      EXPECT_TRUE(data.contains(key)) << ToString(to) << " lacks " << key;
    EXPECT_EQ(data["previous_state"], ToString(change->from));
    EXPECT_EQ(data["new_state"], ToString(to));
    return data;
  }

  CountingIds ids_;
  EventFactory factory_{ids_, "ccm-test"};
  LabletDefinition def_;
  Worker worker_;
  LabletInstance instance_;
};

TEST_F(Events, EveryInstanceStateHasItsTypeAndData) {
  json pending = Check(factory_.InstanceCreated(instance_), "ccm.lablet.instance.pending");
  EXPECT_TRUE(pending["previous_state"].is_null());
  for (const char* key : {"owner_id", "reservation_id", "timeslot_start", "timeslot_end", "created_at"})
    EXPECT_TRUE(pending.contains(key)) << key;
  EXPECT_EQ(pending["reservation_id"], "r-9");

  ASSERT_TRUE(ScheduleInstance(instance_, worker_, def_, FromUnixMillis(4000), "scheduler"));
  json scheduled = Check(factory_.InstanceMoved(instance_, instance_.state_history.back(), worker_.hostname, &def_),
                         "ccm.lablet.instance.scheduled");
  EXPECT_EQ(scheduled["allocated_ports"], json({{"serial_1", 2000}, {"serial_2", 2001}}));
  EXPECT_EQ(scheduled["worker_id"], "w1");

  json provisioning = Move(InstanceState::kInstantiating);
  EXPECT_EQ(provisioning["lab_yaml_hash"], "sha256:00");
  EXPECT_EQ(provisioning["allocated_ports"].size(), 2u);

  instance_.cml_lab_id = "lab-77";
  json running = Move(InstanceState::kRunning);
  EXPECT_EQ(running["worker_hostname"], "w1.example");
  EXPECT_EQ(running["cml_lab_id"], "lab-77");
  EXPECT_EQ(running["pod_assigned"], false);
  EXPECT_TRUE(running["started_at"].is_string());

  json collecting = Move(InstanceState::kCollecting, "timeslot_end");
  EXPECT_EQ(collecting["triggered_by"], "tester");
  EXPECT_EQ(collecting["collection_reason"], "timeslot_end");

  instance_.collection = CollectionRef{"col-1", "s3://bucket/col-1"};
  EXPECT_EQ(Move(InstanceState::kGrading)["collection_id"], "col-1");

  instance_.AddScore(GradingScore{8, 10, true, {{"ping", 8, 10}}}, "g-1", "event:platform", FromUnixMillis(6000));
  json graded = Check(factory_.GradingCompleted(instance_, instance_.scores.back(), 12.5),
                      "ccm.lablet.instance.grading.completed");
  EXPECT_EQ(graded["score"]["total"], 8.0);
  EXPECT_EQ(graded["grading_duration_seconds"], 12.5);
  EXPECT_EQ(graded["revision"], 1);
  EXPECT_EQ(graded["score_event_id"], "g-1");

  json stopping = Move(InstanceState::kStopping);
  EXPECT_EQ(stopping["outcome"], "graded");
  EXPECT_TRUE(stopping["failure"].is_null());
  Move(InstanceState::kStopped);
  Move(InstanceState::kArchived);
  json terminated = Move(InstanceState::kTerminated);
  EXPECT_EQ(terminated["final_state"], "ARCHIVED");
  EXPECT_EQ(terminated["outcome"], "graded");
  EXPECT_TRUE(terminated["failure"].is_null());
  EXPECT_EQ(terminated["grading_score"]["max"], 10.0);
  EXPECT_EQ(terminated["duration_minutes"], 0);
}

TEST_F(Events, AnInstanceThatEndsWithoutAScoreSaysHowAndWhy) {
  instance_.state = InstanceState::kCollecting;
  instance_.ending = Ending{Outcome::kCollectionFailed, "collection", "NO_ARTIFACTS", "nothing to collect"};
  json stopping = Move(InstanceState::kStopping);
  EXPECT_EQ(stopping["outcome"], "collection_failed");
  EXPECT_EQ(stopping["failure"], json({{"stage", "collection"}, {"code", "NO_ARTIFACTS"}, {"message", "nothing to collect"}}));
  Move(InstanceState::kStopped);
  Move(InstanceState::kArchived);
  json terminated = Move(InstanceState::kTerminated);
  EXPECT_EQ(terminated["outcome"], "collection_failed");
  EXPECT_EQ(terminated["failure"]["code"], "NO_ARTIFACTS");
  EXPECT_TRUE(terminated["grading_score"].is_null());
}

TEST_F(Events, AReGradeIsPublishedWithItsRevisionInTheStateTheInstanceIsIn) {
  instance_.state = InstanceState::kArchived;
  instance_.AddScore(GradingScore{6, 10, false, {}}, "g-1", "event:/grading", FromUnixMillis(6000));
  instance_.AddScore(GradingScore{9, 10, true, {}}, "", "operator", FromUnixMillis(7000));
  json regraded = Check(factory_.GradingCompleted(instance_, instance_.scores.back(), 30),
                        "ccm.lablet.instance.grading.completed");
  EXPECT_EQ(regraded["revision"], 2);
  EXPECT_TRUE(regraded["score_event_id"].is_null());
  EXPECT_EQ(regraded["score"]["total"], 9.0);
  EXPECT_EQ(regraded["new_state"], "ARCHIVED");
  EXPECT_EQ(regraded["timestamp"], "1970-01-01T00:00:07.000Z");
}

TEST_F(Events, DataschemaNamesTheVersionOfEachTypesData) {
  EXPECT_EQ(DataSchemaVersion("ccm.lablet.instance.stopping"), 2);
  EXPECT_EQ(DataSchemaVersion("ccm.lablet.instance.terminated"), 2);
  EXPECT_EQ(DataSchemaVersion("ccm.lablet.instance.grading.completed"), 2);
  EXPECT_EQ(DataSchemaVersion("ccm.lablet.instance.running"), 1);
  EventFactory with_base(ids_, "ccm-test", "https://ccm.example");
  auto ce = cloudevents::ParseEvent(with_base.InstanceCreated(instance_).json);
  ASSERT_TRUE(ce);
  EXPECT_EQ(ce->dataschema, "https://ccm.example/schemas/ccm.lablet.instance.pending.v1.json");
  instance_.state = InstanceState::kRunning;
  auto change = MoveInstance(instance_, nullptr, InstanceState::kStopping, FromUnixMillis(5000), "stop", "op");
  ASSERT_TRUE(change);
  ce = cloudevents::ParseEvent(with_base.InstanceMoved(instance_, *change, std::nullopt, nullptr).json);
  ASSERT_TRUE(ce);
  EXPECT_EQ(ce->dataschema, "https://ccm.example/schemas/ccm.lablet.instance.stopping.v2.json");
}

TEST_F(Events, WorkerStatesAndDrainingData) {
  WorkerDraft d = ccm::testing::MakeWorkerDraft("w2");
  auto w = NewWorker(d, {"w2"}, FromUnixMillis(0), "api");
  ASSERT_TRUE(w);
  auto created = factory_.WorkerCreated(*w);
  ASSERT_EQ(created.size(), 3u);
  Check(created[0], "ccm.worker.pending");
  Check(created[1], "ccm.worker.provisioning.started");
  Check(created[2], "ccm.worker.running");
  for (WorkerState to : {WorkerState::kDraining, WorkerState::kStopping, WorkerState::kStopped, WorkerState::kTerminated}) {
    auto change = w->MoveTo(to, FromUnixMillis(10), "scale down", "scaler");
    ASSERT_TRUE(change) << ToString(to);
    std::optional<Timestamp> drained_by;
    if (to == WorkerState::kDraining) drained_by = ParseRfc3339("2026-12-01T10:00:00.000Z");
    json data = Check(factory_.WorkerMoved(*w, *change, drained_by), std::string(EventTypeOnEntering(to)));
    EXPECT_EQ(data["worker_id"], "w2");
    EXPECT_EQ(data["reason"], "scale down");
    if (to == WorkerState::kDraining) {
      EXPECT_EQ(data["running_instances_count"], 0);
      EXPECT_EQ(data["estimated_drain_completion"], "2026-12-01T10:00:00.000Z");
    } else {
      EXPECT_FALSE(data.contains("estimated_drain_completion")) << ToString(to);
    }
  }
}

TEST_F(Events, ScalingDecisions) {
  const std::pair<wire::ScalingData, const char*> all[] = {
      {wire::ScaleUpRequested{"w9", "cml-template-m5", "3 pending instances fit no running worker", 3},
       "ccm.scaling.up.requested"},
      {wire::ScaleUpCompleted{"w9", "cml-template-m5", "w9.example"}, "ccm.scaling.up.completed"},
      {wire::ScaleDownRequested{"w9", "idle since then"}, "ccm.scaling.down.requested"},
      {wire::ScaleDownCompleted{"w9"}, "ccm.scaling.down.completed"}};
  for (const auto& [data, type] : all) {
    EXPECT_EQ(EventType(DecisionOf(data)), type);
    json sent = Check(factory_.Scaling(data, "w9", FromUnixMillis(0)), type);
    EXPECT_EQ(sent["worker_id"], "w9");
    EXPECT_EQ(sent["timestamp"], "1970-01-01T00:00:00.000Z");
  }
}

TEST_F(Events, EachEventHasItsOwnId) {
  auto a = factory_.InstanceCreated(instance_);
  auto b = factory_.InstanceCreated(instance_);
  EXPECT_NE(a.id, b.id);
}

// The receiver's refusals: an event is refused for what it says (its data, its instance, the
// move it reports), never for a race another writer won, a key taken before or a store that
// failed: those are answered otherwise.
TEST(EventRefusals, AreItsDataOrItsMoveNeverARaceOrAFailure) {
  using Refusal = EventReceiver::Refusal;
  EXPECT_EQ(EventReceiver::RefusalOf(Error::InvalidArgument("bad", "data.score")), Refusal::kUnprocessable);
  EXPECT_EQ(EventReceiver::RefusalOf(Error::UnsupportedMediaType("text/plain")), Refusal::kUnprocessable);
  EXPECT_EQ(EventReceiver::RefusalOf(Error::NotFound("no such instance")), Refusal::kUnprocessable);
  EXPECT_EQ(EventReceiver::RefusalOf(Error::Conflict("not in COLLECTING")), Refusal::kIllegalMove);
  EXPECT_EQ(EventReceiver::RefusalOf(Error::FailedPrecondition("not yet")), Refusal::kIllegalMove);
  EXPECT_EQ(EventReceiver::RefusalOf(Error::StaleVersion("changed since read")), std::nullopt);
  EXPECT_EQ(EventReceiver::RefusalOf(Error::Duplicate("taken before")), std::nullopt);
  EXPECT_EQ(EventReceiver::RefusalOf(Error::Unavailable("store down")), std::nullopt);
  EXPECT_EQ(EventReceiver::RefusalOf(Error::Internal("bug")), std::nullopt);
}

}  // namespace
}  // namespace ccm::app
