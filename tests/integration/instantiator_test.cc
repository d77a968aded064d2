// The instantiator's concurrency: the labs of one worker are imported side by side up to
// cml_calls_per_worker and never more, every worker gets its share at once, and one slow or
// failing lab does not hold the others. A fake CML holds each import until as many calls as
// the test expects are in flight (or a generous safety limit passes, so that a wrong answer
// fails instead of hanging): nothing here measures time.
#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "app/reconcilers.h"
#include "support/fake_clock.h"
#include "support/fixtures.h"
#include "support/scheduling.h"
#include "support/stack.h"
#include "support/wait.h"

namespace ccm {
namespace {

using namespace ccm::domain;

// CML whose imports wait at a gate: each waits until `open_at` imports are in flight at once
// (then the gate stays open); a held import (Hold) waits until enough other labs started. It records the most
// imports ever in flight, per worker URL and in all. Labs start at once.
class GatedCml : public ports::CmlWorkers {
 public:
  int open_at = 1;
  std::set<std::string> failing;  // titles whose import fails

  Result<std::string> ImportLab(const ports::CmlTarget& cml, const std::string&, const std::string& title) override {
    std::unique_lock lock(mu_);
    ++in_flight_[cml.url];
    ++total_;
    max_[cml.url] = std::max(max_[cml.url], in_flight_[cml.url]);
    max_total_ = std::max(max_total_, total_);
    if (total_ >= open_at) open_ = true;
    changed_.notify_all();
    // A safety limit only: a gate that never opens is the failure the test reports.
    const auto passes = [&] { return held_ == title ? released_ : open_; };
    changed_.wait_for(lock, std::chrono::seconds(20), passes);
    if (!passes()) gate_timed_out_ = true;
    --in_flight_[cml.url];
    --total_;
    if (failing.count(title)) return Error::Unavailable("CML " + cml.url + " POST /api/v0/import: HTTP 500");
    return "lab-" + title.substr(title.rfind(' ') + 1);
  }
  Status StartLab(const ports::CmlTarget&, const std::string& lab_id) override {
    std::lock_guard lock(mu_);
    started_.insert(lab_id);
    if (held_ && started_.size() >= release_after_) released_ = true;
    changed_.notify_all();
    return {};
  }
  Result<ports::CmlLabState> LabState(const ports::CmlTarget&, const std::string&) override {
    return ports::CmlLabState::kStarted;
  }
  Status StopLab(const ports::CmlTarget&, const std::string&) override { return {}; }
  Status WipeLab(const ports::CmlTarget&, const std::string&) override { return {}; }
  Status DeleteLab(const ports::CmlTarget&, const std::string&) override { return {}; }
  Result<std::vector<ports::CmlLab>> ListLabs(const ports::CmlTarget&) override { return std::vector<ports::CmlLab>{}; }

  // The import titled `title` waits, whatever open_at says, until `others` labs have started.
  void Hold(const std::string& title, size_t others) {
    held_ = title;
    release_after_ = others;
    open_at = 1;  // the others pass at once
  }
  int MaxInFlight(const std::string& url) {
    std::lock_guard lock(mu_);
    return max_[url];
  }
  int MaxTotal() {
    std::lock_guard lock(mu_);
    return max_total_;
  }
  bool GateTimedOut() {
    std::lock_guard lock(mu_);
    return gate_timed_out_;
  }
  bool Released() {
    std::lock_guard lock(mu_);
    return released_;
  }
  // Lets the held import through.
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    changed_.notify_all();
  }
  int InFlight() {
    std::lock_guard lock(mu_);
    return total_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, int> in_flight_, max_;
  int total_ = 0, max_total_ = 0;
  bool open_ = false, gate_timed_out_ = false, released_ = false;
  std::optional<std::string> held_;
  size_t release_after_ = 0;
  std::set<std::string> started_;
};

// CML whose lab starts only when the test says so: until then it reports DEFINED_ON_CORE, as
// CML reports a lab still starting. Counts the calls of each kind.
class SlowStartCml : public ports::CmlWorkers {
 public:
  bool started = false;
  int imports = 0, starts = 0, reads = 0;

  Result<std::string> ImportLab(const ports::CmlTarget&, const std::string&, const std::string&) override {
    ++imports;
    return std::string("lab-1");
  }
  Status StartLab(const ports::CmlTarget&, const std::string&) override {
    ++starts;
    return {};
  }
  Result<ports::CmlLabState> LabState(const ports::CmlTarget&, const std::string&) override {
    ++reads;
    return started ? ports::CmlLabState::kStarted : ports::CmlLabState::kDefinedOnCore;
  }
  Status StopLab(const ports::CmlTarget&, const std::string&) override { return {}; }
  Status WipeLab(const ports::CmlTarget&, const std::string&) override { return {}; }
  Status DeleteLab(const ports::CmlTarget&, const std::string&) override { return {}; }
  Result<std::vector<ports::CmlLab>> ListLabs(const ports::CmlTarget&) override { return std::vector<ports::CmlLab>{}; }
};

class InstantiatorTest : public ::testing::Test {
 protected:
  InstantiatorTest() : deps_{*stack_.store, stack_.clock, stack_.ids, *stack_.events} {
    def_ = stack_.definitions->Create(testing::TwoPortDraft(1)).value();
  }

  app::ReconcilerOptions Options(int concurrency, int per_worker) {
    app::ReconcilerOptions o;
    o.instantiate_concurrency = concurrency;
    o.cml_calls_per_worker = per_worker;
    o.cml_poll = std::chrono::milliseconds(0);
    return o;
  }
  WorkerId AddWorker(const std::string& name) {
    return stack_.workers->Register(testing::MakeWorkerDraft(name, {64, 1000, 0}, 1000), "test").value().id;
  }
  // An instance scheduled on `worker`, its timeslot starting now.
  InstanceId AddScheduled(const WorkerId& worker) {
    InstanceDraft d;
    d.definition_id = def_.id;
    d.owner_id = "candidate";
    d.timeslot_start = stack_.clock.Now();
    d.timeslot_end = d.timeslot_start + std::chrono::minutes(60);
    const InstanceId id = stack_.instances->Create(d, "test").value().id;
    EXPECT_TRUE(stack_.instances->Schedule(id, worker, "test"));
    return id;
  }
  LabletInstance Get(const InstanceId& id) { return stack_.store->GetInstance(id).value(); }
  std::string UrlOf(const WorkerId& w) { return stack_.store->GetWorker(w)->cml_url; }
  static std::string Title(const InstanceId& id) { return "lablet " + id.value; }

  testing::Stack stack_{testing::StoreKind::kMemory};
  GatedCml cml_;
  app::Deps deps_;
  LabletDefinition def_;
};

TEST_F(InstantiatorTest, ImportsTheLabsOfOneWorkerSideBySideUpToTheBoundAndNeverMore) {
  const WorkerId worker = AddWorker("w1");
  std::vector<InstanceId> ids;
  for (int n = 0; n < 7; ++n) ids.push_back(AddScheduled(worker));
  cml_.open_at = 3;  // the first three imports wait for each other
  app::Reconcilers reconcilers(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, Options(16, 3));
  reconcilers.InstantiateOnce();
  EXPECT_FALSE(cml_.GateTimedOut()) << "three imports were never in flight at once";
  EXPECT_EQ(cml_.MaxInFlight(UrlOf(worker)), 3);
  for (const auto& id : ids) {
    EXPECT_EQ(Get(id).state, InstanceState::kInstantiating);
    EXPECT_EQ(Get(id).cml_lab_id, "lab-" + id.value);
  }
  // The lab poller's next sweep finds every lab started.
  reconcilers.PollLabsOnce();
  for (const auto& id : ids) EXPECT_EQ(Get(id).state, InstanceState::kRunning);
}

TEST_F(InstantiatorTest, EveryWorkerGetsItsShareAtOnceWithinTheSweepsBound) {
  const WorkerId a = AddWorker("a"), b = AddWorker("b"), c = AddWorker("c");
  for (const auto& w : {a, b, c})
    for (int n = 0; n < 4; ++n) AddScheduled(w);
  cml_.open_at = 5;  // two on each of two workers and one on the third, or the bound is broken
  app::Reconcilers reconcilers(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, Options(5, 2));
  reconcilers.InstantiateOnce();
  EXPECT_FALSE(cml_.GateTimedOut()) << "five imports were never in flight at once";
  EXPECT_EQ(cml_.MaxTotal(), 5);
  for (const auto& w : {a, b, c}) EXPECT_LE(cml_.MaxInFlight(UrlOf(w)), 2);
}

TEST_F(InstantiatorTest, ASlowImportDoesNotHoldTheOtherLabsOfItsWorker) {
  const WorkerId worker = AddWorker("w1");
  const InstanceId slow = AddScheduled(worker);
  std::vector<InstanceId> others;
  for (int n = 0; n < 5; ++n) others.push_back(AddScheduled(worker));
  cml_.Hold(Title(slow), others.size());  // released once the five others have started
  app::Reconcilers reconcilers(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, Options(4, 2));
  reconcilers.InstantiateOnce();
  EXPECT_FALSE(cml_.GateTimedOut()) << "the other labs waited for the slow import";
  EXPECT_TRUE(cml_.Released());
  for (const auto& id : others) EXPECT_TRUE(Get(id).cml_lab_id.has_value());
  EXPECT_EQ(Get(slow).cml_lab_id, "lab-" + slow.value);
}

TEST_F(InstantiatorTest, AFailedImportIsRecordedOnItsInstanceAndTheOthersGoOn) {
  const WorkerId worker = AddWorker("w1");
  const InstanceId failing = AddScheduled(worker);
  std::vector<InstanceId> others;
  for (int n = 0; n < 4; ++n) others.push_back(AddScheduled(worker));
  cml_.failing.insert(Title(failing));
  cml_.open_at = 2;
  app::Reconcilers reconcilers(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, Options(8, 2));
  reconcilers.InstantiateOnce();
  const LabletInstance f = Get(failing);
  EXPECT_EQ(f.state, InstanceState::kInstantiating);
  EXPECT_FALSE(f.cml_lab_id.has_value());
  EXPECT_EQ(f.cml_failures, 1);
  EXPECT_NE(f.cml_error.find("HTTP 500"), std::string::npos) << f.cml_error;
  EXPECT_TRUE(f.cml_retry_at.has_value());
  reconcilers.PollLabsOnce();
  for (const auto& id : others) EXPECT_EQ(Get(id).state, InstanceState::kRunning);
}

TEST_F(InstantiatorTest, APollOfAStartingLabIsOneCallAndTheStartIsSentAgainOnlyAfterTheResendTime) {
  const WorkerId worker = AddWorker("w1");
  const InstanceId id = AddScheduled(worker);
  SlowStartCml cml;
  testing::FakeClock clock(stack_.clock.Now());
  app::Deps deps{*stack_.store, clock, stack_.ids, *stack_.events};
  app::ReconcilerOptions o = Options(4, 4);  // a poll every sweep
  o.cml_start_resend = std::chrono::seconds(30);
  app::Reconcilers reconcilers(deps, *stack_.instances, *stack_.collection, cml, nullptr, o);
  reconcilers.InstantiateOnce();  // imported and started
  EXPECT_EQ(cml.imports, 1);
  EXPECT_EQ(cml.starts, 1);
  for (int n = 0; n < 5; ++n) {
    clock.Advance(std::chrono::seconds(5));
    reconcilers.PollLabsOnce();
  }
  EXPECT_EQ(cml.reads, 5) << "each poll reads the lab's state";
  EXPECT_EQ(cml.starts, 1) << "a lab still starting is not sent its start again within 30 s";
  clock.Advance(std::chrono::seconds(5));  // 30 s since the start
  reconcilers.PollLabsOnce();
  EXPECT_EQ(cml.starts, 2) << "a start that seems lost is sent again";
  cml.started = true;
  clock.Advance(std::chrono::seconds(1));
  reconcilers.PollLabsOnce();
  EXPECT_EQ(Get(id).state, InstanceState::kRunning);
  EXPECT_EQ(cml.starts, 2);
  EXPECT_EQ(cml.reads, 7);
}

TEST_F(InstantiatorTest, ANewProcessSendsTheStartOfALabItFindsNotStartedAtItsFirstPoll) {
  const WorkerId worker = AddWorker("w1");
  AddScheduled(worker);
  SlowStartCml cml;
  app::ReconcilerOptions o = Options(4, 4);
  o.cml_start_resend = std::chrono::minutes(10);
  {
    app::Reconcilers first(deps_, *stack_.instances, *stack_.collection, cml, nullptr, o);
    first.InstantiateOnce();
  }
  EXPECT_EQ(cml.starts, 1);
  // Another process (a restart, a new leader) does not know whether the start was sent.
  app::Reconcilers second(deps_, *stack_.instances, *stack_.collection, cml, nullptr, o);
  second.PollLabsOnce();
  EXPECT_EQ(cml.reads, 1);
  EXPECT_EQ(cml.starts, 2);
  second.PollLabsOnce();
  EXPECT_EQ(cml.reads, 2);
  EXPECT_EQ(cml.starts, 2);
}

TEST_F(InstantiatorTest, ALabStartedOnCmlIsMovedToRunningWhileAnImportIsHeld) {
  const WorkerId worker = AddWorker("w1");
  const InstanceId started = AddScheduled(worker);
  app::Reconcilers reconcilers(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, Options(4, 4));
  reconcilers.InstantiateOnce();  // imported and started
  ASSERT_TRUE(Get(started).cml_lab_id.has_value());
  const InstanceId slow = AddScheduled(worker);
  cml_.Hold(Title(slow), 1000);  // until Release
  std::thread importing([&] { reconcilers.InstantiateOnce(); });
  ASSERT_TRUE(testing::Eventually([&] { return cml_.InFlight() == 1; }));
  // The lab poller does not wait for the instantiator's sweep to end.
  EXPECT_EQ(reconcilers.PollLabsOnce(), 1);
  EXPECT_EQ(Get(started).state, InstanceState::kRunning);
  EXPECT_EQ(cml_.InFlight(), 1) << "the import was let through before the poll";
  cml_.Release();
  importing.join();
  EXPECT_FALSE(cml_.GateTimedOut());
  EXPECT_EQ(Get(slow).cml_lab_id, "lab-" + slow.value);
}

// CML whose first `start_failures` starts and `stop_failures` stops fail; labs never start.
class FailingCml : public SlowStartCml {
 public:
  int start_failures = 0, stop_failures = 0;
  std::set<std::string> deleted;
  Status StartLab(const ports::CmlTarget& cml, const std::string& lab_id) override {
    if (start_failures > 0) {
      --start_failures;
      return Error::Unavailable("CML: start failed");
    }
    return SlowStartCml::StartLab(cml, lab_id);
  }
  Status StopLab(const ports::CmlTarget&, const std::string&) override {
    if (stop_failures > 0) {
      --stop_failures;
      return Error::Unavailable("CML: stop failed");
    }
    return {};
  }
  Status DeleteLab(const ports::CmlTarget&, const std::string& lab_id) override {
    deleted.insert(lab_id);
    return {};
  }
};

TEST_F(InstantiatorTest, ALabletGivenUpWhoseLabCannotBeRemovedEndsOnlyOnceItsLabIsGone) {
  const WorkerId worker = AddWorker("w1");
  const InstanceId id = AddScheduled(worker);
  FailingCml cml;
  cml.start_failures = 2;
  cml.stop_failures = 1;
  testing::FakeClock clock(stack_.clock.Now());
  app::Deps deps{*stack_.store, clock, stack_.ids, *stack_.events};
  app::ReconcilerOptions o = Options(4, 4);
  o.cml_max_failures = 2;
  o.cml_backoff = std::chrono::seconds(1);
  o.cml_max_backoff = std::chrono::seconds(1);
  app::Reconcilers reconcilers(deps, *stack_.instances, *stack_.collection, cml, nullptr, o);
  reconcilers.InstantiateOnce();  // imported; its start fails
  EXPECT_EQ(Get(id).cml_failures, 1);
  clock.Advance(std::chrono::seconds(5));
  reconcilers.PollLabsOnce();  // the start fails again: given up; the lab's stop fails
  LabletInstance given_up = Get(id);
  EXPECT_EQ(given_up.state, InstanceState::kInstantiating) << "ended with its lab still on CML";
  EXPECT_TRUE(given_up.termination_requested);
  ASSERT_TRUE(given_up.ending.has_value());
  EXPECT_EQ(given_up.ending->outcome, domain::Outcome::kInstantiationFailed);
  EXPECT_EQ(given_up.ending->code, "cml_failed");
  EXPECT_NE(given_up.cml_error.find("stop failed"), std::string::npos) << given_up.cml_error;
  EXPECT_TRUE(cml.deleted.empty());
  EXPECT_EQ(stack_.store->GetWorker(worker)->port_allocations.count(id.value), 1u) << "the lab still holds its ports";
  clock.Advance(std::chrono::seconds(5));
  reconcilers.PollLabsOnce();  // CML answers: the lab goes, then the lablet
  const LabletInstance ended = Get(id);
  EXPECT_EQ(ended.state, InstanceState::kTerminated);
  ASSERT_TRUE(ended.ending.has_value());
  EXPECT_EQ(ended.ending->outcome, domain::Outcome::kInstantiationFailed) << "why it ended is kept";
  EXPECT_EQ(cml.deleted, std::set<std::string>{"lab-1"});
  EXPECT_EQ(stack_.store->GetWorker(worker)->port_allocations.count(id.value), 0u);
}

// CML that, at each import, reads what the store holds of the lablet being imported.
class PeekingCml : public SlowStartCml {
 public:
  std::function<void(const std::string& title)> on_import;
  Result<std::string> ImportLab(const ports::CmlTarget& cml, const std::string& lab, const std::string& title) override {
    if (on_import) on_import(title);
    return SlowStartCml::ImportLab(cml, lab, title);
  }
};

TEST_F(InstantiatorTest, ALabletWhoseLeadHasComeIsMovedAndMarkedAsImportingInOneCommitBeforeCmlIsCalled) {
  const WorkerId worker = AddWorker("w1");
  const InstanceId id = AddScheduled(worker);
  const std::int64_t scheduled_at = Get(id).version;
  PeekingCml cml;
  std::optional<LabletInstance> during;
  cml.on_import = [&](const std::string&) { during = Get(id); };
  app::Reconcilers reconcilers(deps_, *stack_.instances, *stack_.collection, cml, nullptr, Options(4, 4));
  EXPECT_EQ(reconcilers.InstantiateOnce(), 2);
  // What a crash during the import would leave: INSTANTIATING, the import counted as failed
  // until its outcome is recorded, in the one commit of the move.
  ASSERT_TRUE(during.has_value());
  EXPECT_EQ(during->state, InstanceState::kInstantiating);
  EXPECT_EQ(during->version, scheduled_at + 1);
  EXPECT_EQ(during->cml_failures, 1);
  EXPECT_EQ(during->cml_error, "an import started and did not finish");
  EXPECT_TRUE(during->cml_retry_at.has_value());
  EXPECT_FALSE(during->cml_lab_id.has_value());
  // Then the lab id, with the mark taken back: two commits in all.
  const LabletInstance after = Get(id);
  EXPECT_EQ(after.version, scheduled_at + 2);
  EXPECT_EQ(after.cml_lab_id, "lab-1");
  EXPECT_EQ(after.cml_failures, 0);
  EXPECT_EQ(after.cml_error, "");
  EXPECT_FALSE(after.cml_retry_at.has_value());
  EXPECT_EQ(cml.starts, 1);
  ASSERT_FALSE(after.state_history.empty());
  EXPECT_EQ(after.state_history.back().to, InstanceState::kInstantiating);
}

// The stopper's sweep reads only the RUNNING instances whose timeslot ended; the gauges still
// count every live instance, the ones no sweep reads too (the store counts them).
TEST_F(InstantiatorTest, TheGaugesCountTheInstancesNoSweepReads) {
  const WorkerId worker = AddWorker("w1");
  AddScheduled(worker);
  InstanceDraft later;
  later.definition_id = def_.id;
  later.owner_id = "candidate";
  later.timeslot_start = stack_.clock.Now() + std::chrono::hours(48);  // not due for days
  later.timeslot_end = later.timeslot_start + std::chrono::minutes(60);
  ASSERT_TRUE(stack_.instances->Create(later, "test"));
  ASSERT_TRUE(stack_.instances->Create(later, "test"));
  app::LifecycleMetrics metrics;
  app::Reconcilers reconcilers(deps_, *stack_.instances, *stack_.collection, cml_, nullptr, Options(4, 4), &metrics);
  EXPECT_EQ(reconcilers.ScheduleOnce(), 0);  // nothing due
  EXPECT_EQ(reconcilers.StopOnce(), 0);
  const auto states = metrics.States();
  EXPECT_EQ(states.at(InstanceState::kPending).count, 2);
  EXPECT_EQ(states.at(InstanceState::kScheduled).count, 1);
  EXPECT_EQ(states.at(InstanceState::kRunning).count, 0);
  EXPECT_EQ(states.count(InstanceState::kTerminated), 0u);
}

}  // namespace
}  // namespace ccm
