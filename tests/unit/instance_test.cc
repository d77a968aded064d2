#include <gtest/gtest.h>

#include "domain/lifecycle.h"
#include "support/fixtures.h"

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
