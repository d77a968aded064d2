// The scheduler's decisions, with the real use cases and SQLite store: bin-packing onto the
// fullest worker that fits, never a DRAINING worker, instances whose timeslot is far off left
// PENDING, and no port handed out twice when two schedulers run at once.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "app/reconcilers.h"
#include "support/fixtures.h"
#include "support/scheduling.h"
#include "support/stack.h"

namespace ccm {
namespace {

using namespace ccm::domain;

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest()
      : deps_{*stack_.store, stack_.clock, stack_.ids, *stack_.events},
        reconcilers_(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, {}) {
    def_ = stack_.definitions->Create(testing::TwoPortDraft(4)).value();
  }

  WorkerId AddWorker(const std::string& name, double cpu) {
    return stack_.workers->Register(testing::MakeWorkerDraft(name, {cpu, 1000, 0}, 100), "test").value().id;
  }
  InstanceId AddInstance(std::chrono::minutes starts_in = std::chrono::minutes(0)) {
    InstanceDraft d;
    d.definition_id = def_.id;
    d.owner_id = "candidate";
    d.timeslot_start = stack_.clock.Now() + starts_in;
    d.timeslot_end = d.timeslot_start + std::chrono::minutes(60);
    return stack_.instances->Create(d, "test").value().id;
  }
  LabletInstance Get(const InstanceId& id) { return stack_.store->GetInstance(id).value(); }

  testing::Stack stack_{testing::StoreKind::kMemory};
  testing::NoCml cml_;
  app::Deps deps_;
  app::Reconcilers reconcilers_;
  LabletDefinition def_;
};

TEST_F(SchedulerTest, PacksTheFullestWorkerThatFitsAndNeverADrainingOne) {
  const WorkerId small = AddWorker("small", 8);  // room for two
  const WorkerId large = AddWorker("large", 64);
  const WorkerId draining = AddWorker("draining", 1000);
  ASSERT_TRUE(stack_.workers->Transition(draining, WorkerState::kDraining, "test", "test", std::nullopt));
  // With one instance on it, the small worker is the fullest (half its cores in use).
  const InstanceId first = AddInstance();
  ASSERT_TRUE(stack_.instances->Schedule(first, small, "test"));
  std::vector<InstanceId> ids;
  for (int n = 0; n < 3; ++n) ids.push_back(AddInstance(std::chrono::minutes(n)));  // taken in timeslot order
  EXPECT_EQ(reconcilers_.ScheduleOnce(), 3);
  // The small worker is filled first (one more fits), then the large one takes the rest.
  EXPECT_EQ(Get(ids[0]).worker_id, small);
  EXPECT_EQ(Get(ids[1]).worker_id, large);
  EXPECT_EQ(Get(ids[2]).worker_id, large);
  for (const auto& id : ids) EXPECT_EQ(Get(id).state, InstanceState::kScheduled);
  EXPECT_TRUE(stack_.store->GetWorker(draining)->reservations.empty());
}

TEST_F(SchedulerTest, LeavesFarOffTimeslotsAndWhatFitsNowherePending) {
  AddWorker("only", 4);  // room for one
  const InstanceId later = AddInstance(std::chrono::minutes(24 * 60));
  const InstanceId now = AddInstance();
  const InstanceId no_room = AddInstance(std::chrono::minutes(1));  // the earlier timeslot goes first
  EXPECT_EQ(reconcilers_.ScheduleOnce(), 1);
  EXPECT_EQ(Get(now).state, InstanceState::kScheduled);
  EXPECT_EQ(Get(later).state, InstanceState::kPending);
  EXPECT_EQ(Get(no_room).state, InstanceState::kPending);
}

TEST_F(SchedulerTest, CommitsOneWorkersPlacementsTogetherInBatchesOfTheBound) {
  const WorkerId w = AddWorker("w", 1000);
  const std::int64_t version = stack_.store->GetWorker(w)->version;
  std::vector<InstanceId> ids;
  for (int n = 0; n < 5; ++n) ids.push_back(AddInstance());
  app::ReconcilerOptions o;
  o.schedule_batch = 2;
  app::Reconcilers batched(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, o);
  EXPECT_EQ(batched.ScheduleOnce(), 5);
  // Five placements in three commits (two, two, one): the worker was written three times.
  const Worker after = stack_.store->GetWorker(w).value();
  EXPECT_EQ(after.version, version + 3);
  EXPECT_EQ(after.port_allocations.size(), 5u);
  std::set<int> ports;
  for (const auto& id : ids) {
    const LabletInstance i = Get(id);
    EXPECT_EQ(i.state, InstanceState::kScheduled);
    for (const auto& [_, port] : i.allocated_ports) EXPECT_TRUE(ports.insert(port).second) << port;
  }
}

TEST_F(SchedulerTest, ABatchSchedulesTheRestWhenOneOfItIsRefused) {
  const WorkerId w = AddWorker("w", 1000);
  const InstanceId a = AddInstance(), gone = AddInstance(), c = AddInstance();
  ASSERT_TRUE(stack_.instances->RequestTermination(gone, "test"));
  const LabletInstance gone_before = Get(gone);
  auto done = stack_.instances->ScheduleBatch({a, gone, c, InstanceId{"no-such-instance"}}, w, "test");
  ASSERT_TRUE(done) << done.error().message;
  ASSERT_EQ(done->size(), 4u);
  ASSERT_TRUE((*done)[0]);
  EXPECT_EQ((*done)[0]->version, Get(a).version);
  ASSERT_FALSE((*done)[1]);
  EXPECT_EQ((*done)[1].error().code, ErrorCode::kConflict);
  EXPECT_TRUE((*done)[2]);
  ASSERT_FALSE((*done)[3]);
  EXPECT_EQ((*done)[3].error().code, ErrorCode::kNotFound);
  EXPECT_EQ(Get(a).state, InstanceState::kScheduled);
  EXPECT_EQ(Get(c).state, InstanceState::kScheduled);
  EXPECT_EQ(Get(gone).version, gone_before.version);
  const Worker after = stack_.store->GetWorker(w).value();
  EXPECT_EQ(after.port_allocations.size(), 2u);
  EXPECT_EQ(after.port_allocations.count(gone.value), 0u);
  // A worker that does not exist refuses the whole batch, naming the field.
  auto nowhere = stack_.instances->ScheduleBatch({AddInstance()}, WorkerId{"no-such-worker"}, "test");
  ASSERT_FALSE(nowhere);
  EXPECT_EQ(nowhere.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(nowhere.error().field, "worker_id");
}

TEST_F(SchedulerTest, TwoSchedulersAtOnceNeverHandOutAPortTwice) {
  const WorkerId w = AddWorker("w", 1000);
  std::vector<InstanceId> ids;
  for (int n = 0; n < 40; ++n) ids.push_back(AddInstance());
  app::Reconcilers other(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, {});
  std::thread a([&] { reconcilers_.ScheduleOnce(); });
  std::thread b([&] { other.ScheduleOnce(); });
  a.join();
  b.join();
  std::set<int> ports;
  for (const auto& id : ids) {
    const LabletInstance i = Get(id);
    ASSERT_EQ(i.state, InstanceState::kScheduled);
    for (const auto& [_, port] : i.allocated_ports) EXPECT_TRUE(ports.insert(port).second) << port;
  }
  EXPECT_EQ(ports.size(), 80u);
  EXPECT_EQ(stack_.store->GetWorker(w)->port_allocations.size(), 40u);
}

}  // namespace
}  // namespace ccm
