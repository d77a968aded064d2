#include <gtest/gtest.h>

#include "domain/lifecycle.h"
#include "support/fixtures.h"
#include "wire/aggregates.h"

namespace ccm::domain {
namespace {

using I = InstanceState;
using std::chrono::minutes;

struct Fixture {
  LabletDefinition def;
  Worker worker;
  LabletInstance instance;
};

Fixture Make() {
  Fixture f;
  f.def.id = {"def"};
  f.def.version = "1.0.0";
  f.def.resource_requirements = {4, 8, 10};
  f.def.license_affinity = {LicenseType::kEnterprise};
  f.def.node_count = 2;
  f.def.port_template = {{"serial_1", "serial"}, {"vnc_1", "vnc"}};
  f.def.max_duration_minutes = 120;
  f.worker = *NewWorker(ccm::testing::MakeWorkerDraft("w1", {16, 64, 100}, 50), {"w1"}, FromUnixMillis(0), "t");
  InstanceDraft d;
  d.definition_id = f.def.id;
  d.owner_id = "candidate-7";
  d.timeslot_start = FromUnixMillis(0) + minutes(10);
  d.timeslot_end = d.timeslot_start + minutes(60);
  f.instance = *NewInstance(d, f.def, {"i1"}, FromUnixMillis(1), "api");
  return f;
}

TEST(Instance, MovesRecordHistoryAndTimestamps) {
  Fixture f = Make();
  EXPECT_EQ(f.instance.state, I::kPending);
  EXPECT_EQ(f.instance.definition_version, "1.0.0");
  ASSERT_TRUE(ScheduleInstance(f.instance, f.worker, f.def, FromUnixMillis(5), "scheduler"));
  EXPECT_EQ(f.instance.scheduled_at, FromUnixMillis(5));
  EXPECT_EQ(f.instance.allocated_ports, (PortMap{{"serial_1", 2000}, {"vnc_1", 2001}}));
  EXPECT_EQ(f.worker.port_allocations.at("i1"), f.instance.allocated_ports);
  ASSERT_TRUE(f.instance.MoveTo(I::kInstantiating, FromUnixMillis(6), "import", "instantiator"));
  ASSERT_TRUE(f.instance.MoveTo(I::kRunning, FromUnixMillis(7), "started", "instantiator"));
  EXPECT_EQ(f.instance.started_at, FromUnixMillis(7));
  ASSERT_EQ(f.instance.state_history.size(), 3u);
  EXPECT_EQ(f.instance.state_history[2], (InstanceChange{I::kInstantiating, I::kRunning, FromUnixMillis(7), "started",
                                                         "instantiator"}));
}

TEST(Instance, IllegalMoveChangesNothingAndNamesTheAllowedMoves) {
  Fixture f = Make();
  auto bad = f.instance.MoveTo(I::kRunning, FromUnixMillis(2), "", "t");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kConflict);
  EXPECT_EQ(bad.error().message, "instance is PENDING and cannot move to RUNNING; allowed: SCHEDULED, TERMINATED");
  EXPECT_EQ(f.instance.state, I::kPending);
  EXPECT_TRUE(f.instance.state_history.empty());
}

TEST(Instance, ScheduleFailureLeavesInstanceAndWorkerUntouched) {
  Fixture f = Make();
  f.worker.capacity.cpu_cores = 2;
  const Worker before = f.worker;
  auto r = ScheduleInstance(f.instance, f.worker, f.def, FromUnixMillis(5), "t");
  ASSERT_FALSE(r);
  EXPECT_EQ(f.instance.state, I::kPending);
  EXPECT_FALSE(f.instance.worker_id);
  EXPECT_TRUE(f.instance.allocated_ports.empty());
  EXPECT_EQ(f.worker.reservations, before.reservations);
  EXPECT_EQ(f.worker.port_allocations, before.port_allocations);
}

TEST(Instance, CapacityIsReleasedOnArchivedAndPortsOnTerminated) {
  Fixture f = Make();
  ASSERT_TRUE(ScheduleInstance(f.instance, f.worker, f.def, FromUnixMillis(5), "t"));
  for (I s : {I::kInstantiating, I::kRunning, I::kStopping, I::kStopped}) {
    ASSERT_TRUE(MoveInstance(f.instance, &f.worker, s, FromUnixMillis(6), "", "t"));
    EXPECT_EQ(f.worker.reservations.count("i1"), 1u) << ToString(s);
  }
  ASSERT_TRUE(MoveInstance(f.instance, &f.worker, I::kArchived, FromUnixMillis(7), "", "t"));
  EXPECT_EQ(f.worker.reservations.count("i1"), 0u);
  EXPECT_EQ(f.worker.port_allocations.count("i1"), 1u);
  ASSERT_TRUE(MoveInstance(f.instance, &f.worker, I::kTerminated, FromUnixMillis(8), "", "t"));
  EXPECT_EQ(f.worker.port_allocations.count("i1"), 0u);
  EXPECT_EQ(f.instance.terminated_at, FromUnixMillis(8));
}

TEST(Instance, TerminationPathFromEveryState) {
  // Following NextStepToTermination from any state reaches TERMINATED by legal moves only.
  for (I start : kAllInstanceStates) {
    I s = start;
    int steps = 0;
    while (auto next = NextStepToTermination(s)) {
      ASSERT_TRUE(IsLegalMove(s, *next)) << ToString(s) << " -> " << ToString(*next);
      s = *next;
      ASSERT_LT(++steps, 10);
    }
    EXPECT_EQ(s, I::kTerminated) << "from " << ToString(start);
  }
  EXPECT_EQ(NextStepToTermination(I::kInstantiating), I::kTerminated);
  EXPECT_EQ(NextStepToTermination(I::kGrading), I::kStopping);
}

TEST(Instance, EveryScoreIsKeptAsARevisionAndTheLatestIsTheInstances) {
  Fixture f = Make();
  const auto& first = f.instance.AddScore(GradingScore{6, 10, false, {}}, "g-1", "event:/grading", FromUnixMillis(10));
  EXPECT_EQ(first.revision, 1);
  const auto& second = f.instance.AddScore(GradingScore{9, 10, true, {}}, "", "operator", FromUnixMillis(20));
  EXPECT_EQ(second.revision, 2);
  ASSERT_EQ(f.instance.scores.size(), 2u);
  EXPECT_EQ(f.instance.scores[0].score.total, 6);
  EXPECT_EQ(f.instance.scores[0].event_id, "g-1");
  EXPECT_EQ(f.instance.grading_score->total, 9);
}

TEST(Instance, AnEndingNobodyRecordedIsAnOperatorsAndARecordedOneStays) {
  // Moved to STOPPING by an operator with no cause given: cancelled, at the stage it was at.
  Fixture f = Make();
  ASSERT_TRUE(ScheduleInstance(f.instance, f.worker, f.def, FromUnixMillis(5), "t"));
  for (I s : {I::kInstantiating, I::kRunning, I::kStopping})
    ASSERT_TRUE(MoveInstance(f.instance, &f.worker, s, FromUnixMillis(6), "operator says so", "op"));
  ASSERT_TRUE(f.instance.ending);
  EXPECT_EQ(*f.instance.ending, (Ending{Outcome::kCancelled, "running", "operator_move", "operator says so"}));
  // The cause decided at STOPPING is what TERMINATED reports too.
  for (I s : {I::kStopped, I::kArchived, I::kTerminated})
    ASSERT_TRUE(MoveInstance(f.instance, &f.worker, s, FromUnixMillis(7), "", "stopper"));
  EXPECT_EQ(f.instance.ending->code, "operator_move");

  // A cause recorded before the move is kept.
  Fixture g = Make();
  g.instance.ending = Ending{Outcome::kNotAssessed, "running", "no_assessment_ids", "no ids"};
  ASSERT_TRUE(MoveInstance(g.instance, nullptr, I::kTerminated, FromUnixMillis(6), "", "t"));
  EXPECT_EQ(g.instance.ending->outcome, Outcome::kNotAssessed);

  // An illegal move records nothing.
  Fixture h = Make();
  EXPECT_FALSE(MoveInstance(h.instance, nullptr, I::kStopping, FromUnixMillis(6), "", "t"));
  EXPECT_FALSE(h.instance.ending);
}

TEST(Instance, DefaultEndingOfAScoredOrFailedInstance) {
  Fixture f = Make();
  f.instance.AddScore(GradingScore{1, 2, {}, {}}, "g", "a", FromUnixMillis(1));
  EXPECT_EQ(DefaultEnding(f.instance, I::kArchived, "").outcome, Outcome::kGraded);
  // Stopped before causes were recorded, after the platform reported a failure.
  Fixture g = Make();
  g.instance.last_failure = FailureRecord{"collection", "NO_ARTIFACTS", "none", false, FromUnixMillis(1)};
  EXPECT_EQ(DefaultEnding(g.instance, I::kArchived, "archive retention over"),
            (Ending{Outcome::kCollectionFailed, "collection", "NO_ARTIFACTS", "none"}));
  // Before STOPPING the same failure does not decide: the operator's move does.
  EXPECT_EQ(DefaultEnding(g.instance, I::kCollecting, "stop").outcome, Outcome::kCancelled);
  Fixture h = Make();
  EXPECT_EQ(DefaultEnding(h.instance, I::kArchived, "r").code, "not_recorded");
}

TEST(Outcome, NamesReadBack) {
  for (Outcome o : {Outcome::kGraded, Outcome::kNotAssessed, Outcome::kCollectionFailed, Outcome::kGradingFailed,
                    Outcome::kTimedOut, Outcome::kInstantiationFailed, Outcome::kCancelled})
    EXPECT_EQ(ParseOutcome(ToString(o)), o) << ToString(o);
  EXPECT_EQ(ToString(Outcome::kInstantiationFailed), "instantiation_failed");
  EXPECT_FALSE(ParseOutcome("GRADED"));
  EXPECT_EQ(StageOf(I::kPending), "scheduling");
  EXPECT_EQ(StageOf(I::kCollecting), "collection");
}

TEST(InstanceJson, ScoresEndingAndAPartialCollectionRoundTrip) {
  Fixture f = Make();
  f.instance.collection = CollectionRef{std::nullopt, "s3://b/c"};
  f.instance.AddScore(GradingScore{6, 10, false, {{"a", 6, 10}}}, "g-1", "event:/grading", FromUnixMillis(10));
  f.instance.AddScore(GradingScore{8, 10, true, {}}, "", "operator", FromUnixMillis(20));
  f.instance.ending = Ending{Outcome::kTimedOut, "grading", "grading_timeout", "grading timed out after 1 s"};
  const auto j = wire::ToJson(f.instance);
  EXPECT_TRUE(j["collection"]["collection_id"].is_null());
  EXPECT_TRUE(j["scores"][1]["event_id"].is_null());  // an operator's
  EXPECT_EQ(j["ending"]["outcome"], "timed_out");
  auto back = wire::InstanceFromJson(j);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->collection, f.instance.collection);
  EXPECT_EQ(back->scores, f.instance.scores);
  EXPECT_EQ(back->ending, f.instance.ending);
  auto bad = j;
  bad["ending"]["outcome"] = "fine";
  EXPECT_FALSE(wire::InstanceFromJson(bad));
}

TEST(InstanceJson, AScoreStoredBeforeScoresWereKeptIsTheFirstRevision) {
  Fixture f = Make();
  ASSERT_TRUE(ScheduleInstance(f.instance, f.worker, f.def, FromUnixMillis(5), "t"));
  for (I s : {I::kInstantiating, I::kRunning, I::kCollecting, I::kGrading})
    ASSERT_TRUE(MoveInstance(f.instance, &f.worker, s, FromUnixMillis(6), "", "t"));
  f.instance.grading_score = GradingScore{7, 10, true, {}};
  ASSERT_TRUE(MoveInstance(f.instance, &f.worker, I::kStopping, FromUnixMillis(30), "graded", "t"));
  auto j = wire::ToJson(f.instance);
  j.erase("scores");  // as an older ccm wrote it
  j.erase("ending");
  auto back = wire::InstanceFromJson(j);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->scores.size(), 1u);
  EXPECT_EQ(back->scores[0].revision, 1);
  EXPECT_EQ(back->scores[0].score, *f.instance.grading_score);
  EXPECT_EQ(back->scores[0].at, FromUnixMillis(30));  // when it left GRADING
  EXPECT_FALSE(back->ending);
  // A re-grade of it is the second revision.
  EXPECT_EQ(back->AddScore(GradingScore{9, 10, true, {}}, "g-2", "a", FromUnixMillis(40)).revision, 2);
}

TEST(NewInstance, ValidatesTheDraft) {
  Fixture f = Make();
  InstanceDraft d;
  d.definition_id = f.def.id;
  d.owner_id = "o";
  d.timeslot_start = FromUnixMillis(0);
  d.timeslot_end = FromUnixMillis(0) + minutes(121);
  EXPECT_EQ(NewInstance(d, f.def, {"x"}, FromUnixMillis(0), "t").error().field, "timeslot_end");
  d.timeslot_end = d.timeslot_start;
  EXPECT_EQ(NewInstance(d, f.def, {"x"}, FromUnixMillis(0), "t").error().field, "timeslot_end");
  d.timeslot_end = d.timeslot_start + minutes(30);
  d.owner_id = "";
  EXPECT_EQ(NewInstance(d, f.def, {"x"}, FromUnixMillis(0), "t").error().field, "owner_id");
  d.owner_id = "o";
  d.assessment = AssessmentRef{"s", ""};
  EXPECT_EQ(NewInstance(d, f.def, {"x"}, FromUnixMillis(0), "t").error().field, "assessment.part_id");
  d.assessment.reset();
  f.def.deleted = true;
  auto deleted = NewInstance(d, f.def, {"x"}, FromUnixMillis(0), "t");
  ASSERT_FALSE(deleted);
  EXPECT_EQ(deleted.error().code, ErrorCode::kFailedPrecondition);
}

TEST(NewInstance, RefusesATimeslotInAnotherEra) {
  Fixture f = Make();
  const Timestamp now = *ParseRfc3339("2026-11-29T12:00:00Z");
  InstanceDraft d;
  d.definition_id = f.def.id;
  d.owner_id = "o";
  auto at = [&](const char* start, const char* end) {
    d.timeslot_start = *ParseRfc3339(start);
    d.timeslot_end = *ParseRfc3339(end);
    return NewInstance(d, f.def, {"x"}, now, "t");
  };
  EXPECT_EQ(at("0000-01-01T09:00:00Z", "0000-01-01T10:00:00Z").error().field, "timeslot_start");
  EXPECT_EQ(at("9999-12-31T09:00:00Z", "9999-12-31T10:00:00Z").error().field, "timeslot_start");
  EXPECT_EQ(at("2036-11-28T21:00:00Z", "2036-11-28T22:30:00Z").error().field, "timeslot_end");
  // Ten years either way are bookings: one made long ahead, or a fixed date in a test.
  EXPECT_TRUE(at("2016-12-01T09:00:00Z", "2016-12-01T10:00:00Z"));
  EXPECT_TRUE(at("2036-11-28T09:00:00Z", "2036-11-28T10:00:00Z"));
}

TEST(GradingScore, Validation) {
  EXPECT_TRUE(Validate(GradingScore{8, 10, true, {{"a", 3, 5}, {"b", 5, 5}}}));
  EXPECT_EQ(Validate(GradingScore{1, 0, {}, {}}).error().field, "score.max");
  EXPECT_EQ(Validate(GradingScore{11, 10, {}, {}}).error().field, "score.total");
  EXPECT_EQ(Validate(GradingScore{-1, 10, {}, {}}).error().field, "score.total");
  EXPECT_EQ(Validate(GradingScore{5, 10, {}, {{"a", 6, 5}}}).error().field, "score.breakdown[0].points");
}

}  // namespace
}  // namespace ccm::domain
