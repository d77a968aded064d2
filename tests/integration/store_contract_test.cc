// The Store contract, run against every implementation: the in-memory store, SQLite, and
// etcd on a real server started by the test. What only a durable store promises (a restart
// loses nothing) is a second suite, run against SQLite and etcd alone.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "app/dispatcher.h"
#include "ports/event_sink.h"
#include "ports/outbox.h"
#include "ports/page.h"
#include "ports/store.h"
#include "store/etcd/etcd_store.h"
#include "store/memory/memory_store.h"
#include "store/sqlite/sqlite_store.h"
#include "support/etcd_cluster.h"
#include "support/fake_clock.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"
#include "wire/aggregates.h"

namespace ccm {
namespace {

using namespace ccm::domain;
using ports::Changes;
using testing::MakeDefinition;
using testing::MakeEvent;
using testing::MakeInstance;
using testing::MakeWorker;

// A store under test and, for a durable one, how to get it back after a restart.
struct StoreUnderTest {
  std::unique_ptr<ports::Store> store;
  std::function<std::unique_ptr<ports::Store>()> reopen;
};
using StoreFactory = std::function<StoreUnderTest(const std::string& dir)>;

// The implementations under test, by name.
StoreFactory FactoryFor(const std::string& name);

// Moves `i` to `to` as the domain does, without its rules: a store keeps what it is given.
void Move(LabletInstance& i, InstanceState to, std::int64_t at_ms, std::string reason = "r") {
  i.state_history.push_back({i.state, to, FromUnixMillis(at_ms), std::move(reason), "actor-" + std::to_string(at_ms)});
  i.state = to;
}

// The whole instance, history included, in its one JSON shape: equal when the two are.
nlohmann::json Whole(const LabletInstance& i) { return wire::ToJson(i); }

using testing::CommitInstance;

// `threads` threads each add `each` reservations to worker w1, one commit each: read, add,
// commit with `commit(thread, changes)`, and again while the commit is stale.
void ReserveConcurrently(ports::Store& store, int threads, int each,
                         const std::function<Status(int, Changes)>& commit) {
  std::vector<std::thread> running;
  for (int t = 0; t < threads; ++t)
    running.emplace_back([&, t] {
      for (int n = 0; n < each; ++n) {
        for (;;) {
          Worker w = *store.GetWorker({"w1"});
          w.reservations["t" + std::to_string(t) + "-" + std::to_string(n)] = Reservation{{1, 1, 0}, 1};
          Changes c;
          c.workers = {w};
          const Status s = commit(t, std::move(c));
          if (s) break;
          ASSERT_EQ(s.error().kind, ErrorKind::kStaleVersion);
        }
      }
    });
  for (auto& t : running) t.join();
}

class StoreContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto made = FactoryFor(GetParam())(dir_.path());
    store_ = std::move(made.store);
    reopen_ = made.reopen;
  }
  ports::Store& store() { return *store_; }
  // Every store implements the Outbox port beside Store, over the same state.
  ports::Outbox& outbox() { return dynamic_cast<ports::Outbox&>(*store_); }

  testing::TempDir dir_;
  std::unique_ptr<ports::Store> store_;
  std::function<std::unique_ptr<ports::Store>()> reopen_;
};

TEST_P(StoreContract, CommitsAndReadsBackEveryAggregate) {
  Changes c;
  c.new_definitions = {MakeDefinition("def-1", "lab-a", "1.0.0"), MakeDefinition("def-1", "lab-a", "1.10.0"),
                       MakeDefinition("def-1", "lab-a", "1.2.0")};
  c.workers = {MakeWorker("w1")};
  c.instances = {MakeInstance("i1")};
  c.events = {MakeEvent("e1", "i1")};
  ASSERT_TRUE(store().Commit(c));

  auto latest = store().GetDefinition({"def-1"}, std::nullopt);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->version, "1.10.0");  // semver, not string order
  EXPECT_EQ(store().GetDefinition({"def-1"}, "1.2.0")->version, "1.2.0");
  EXPECT_EQ(store().GetDefinition({"def-1"}, "9.9.9").error().code, ErrorCode::kNotFound);
  auto versions = store().ListDefinitionVersions({"def-1"});
  ASSERT_TRUE(versions);
  ASSERT_EQ(versions->size(), 3u);
  EXPECT_EQ((*versions)[1].version, "1.2.0");
  EXPECT_EQ(store().FindDefinitionByName("lab-a")->value_or(DefinitionId{}).value, "def-1");
  EXPECT_FALSE(store().FindDefinitionByName("lab-b")->has_value());

  auto i = store().GetInstance({"i1"});
  ASSERT_TRUE(i);
  EXPECT_EQ(i->version, 1);
  EXPECT_EQ(i->owner_id, "owner-1");
  EXPECT_EQ(store().GetWorker({"w1"})->version, 1);
  EXPECT_EQ(store().GetInstance({"nope"}).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store().GetWorker({"nope"}).error().code, ErrorCode::kNotFound);
}

TEST_P(StoreContract, EveryScoreTheEndingAndAPartialCollectionReadBack) {
  LabletInstance i = MakeInstance("graded");
  i.state = InstanceState::kArchived;
  i.collection = CollectionRef{"col-1", std::nullopt};  // collection.completed named no artifacts
  i.AddScore(GradingScore{6, 10, false, {{"ping", 6, 10}}}, "g-1", "event:/grading", FromUnixMillis(5000));
  i.AddScore(GradingScore{9, 10, true, {}}, "", "operator-7", FromUnixMillis(9000));
  i.ending = Ending{Outcome::kGraded, "stopping", "graded_late", "scored after the lablet ended (timed_out)"};
  Changes c;
  c.instances = {i};
  ASSERT_TRUE(store().Commit(c));
  auto back = store().GetInstance({"graded"});
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->collection, i.collection);
  ASSERT_EQ(back->scores.size(), 2u);
  EXPECT_EQ(back->scores, i.scores);
  EXPECT_EQ(back->scores[1].revision, 2);
  EXPECT_EQ(back->scores[0].event_id, "g-1");
  EXPECT_EQ(back->grading_score, i.scores[1].score);  // the latest is the instance's
  EXPECT_EQ(back->ending, i.ending);
  // An instance that never ended has no ending, and one without a score no scores.
  Changes fresh;
  fresh.instances = {MakeInstance("fresh")};
  ASSERT_TRUE(store().Commit(fresh));
  EXPECT_FALSE(store().GetInstance({"fresh"})->ending.has_value());
  EXPECT_TRUE(store().GetInstance({"fresh"})->scores.empty());
}

TEST_P(StoreContract, DeviceAccessRoundTrips) {
  LabletDefinition with = MakeDefinition("def-a", "lab-a", "1.0.0");
  with.device_access.default_access = DeviceAccess{
      DeviceAuthentication{"password", {{"username", "cisco"}, {"password", "s3cret \"quoted\" ü"}, {"enable_secret", "x"}}},
      R"({"baud_rate":9600,"line":"console","nested":{"a":[1,null,true]}})"};
  with.device_access.nodes["r1"] = DeviceAccess{DeviceAuthentication{"ssh-key", {}}, ""};
  with.device_access.nodes["r 2"] = DeviceAccess{};
  LabletDefinition without = MakeDefinition("def-b", "lab-b", "1.0.0");
  Changes c;
  c.new_definitions = {with, without};
  ASSERT_TRUE(store().Commit(c));
  auto a = store().GetDefinition({"def-a"}, std::nullopt);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->device_access, with.device_access);
  auto b = store().GetDefinition({"def-b"}, std::nullopt);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->device_access.empty());
  auto listed = store().ListDefinitions({}, {});
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->items.size(), 2u);
  for (const auto& d : listed->items) EXPECT_EQ(d.device_access, d.id.value == "def-a" ? with.device_access : DeviceAccessMap{});
}

TEST_P(StoreContract, PurgeRemovesOnlyWhatRetentionAllows) {
  auto terminated = [](const std::string& id, std::int64_t at_ms) {
    LabletInstance i = MakeInstance(id);
    i.state = InstanceState::kTerminated;
    i.terminated_at = FromUnixMillis(at_ms);
    return i;
  };
  Changes c;
  c.instances = {terminated("t1", 10'000), terminated("t2", 50'000), MakeInstance("r1")};
  c.events = {MakeEvent("e1", "t1"), MakeEvent("e2", "t1"), MakeEvent("e3", "t2"), MakeEvent("e4", "t2")};
  ASSERT_TRUE(store().Commit(c));
  auto due = outbox().DueEvents(FromUnixMillis(10), 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 4u);
  // e1 delivered long ago, e2 lately; e3 dead (e4 is then held behind it).
  Changes d;
  d.deliveries = {{(*due)[0].seq, ports::DeliveryState::kDelivered, 1, FromUnixMillis(10'000), "", "e1"},
                  {(*due)[1].seq, ports::DeliveryState::kDelivered, 1, FromUnixMillis(50'000), "", "e2"},
                  {(*due)[2].seq, ports::DeliveryState::kDead, 1, FromUnixMillis(10'000), "HTTP 400", "e3"}};
  ASSERT_TRUE(store().Commit(d));
  const auto before = outbox().GetOutboxStats().value();

  auto purged = store().Purge(FromUnixMillis(30'000), FromUnixMillis(30'000), 100);
  ASSERT_TRUE(purged) << purged.error().message;
  EXPECT_EQ(purged->instances, 1);
  EXPECT_EQ(purged->events, 1);
  EXPECT_EQ(store().GetInstance({"t1"}).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(store().GetInstance({"t2"}));  // terminated after the cut-off
  EXPECT_TRUE(store().GetInstance({"r1"}));  // not terminated
  EXPECT_EQ(outbox().GetEvent("e1").error().code, ErrorCode::kNotFound);
  for (const char* kept : {"e2", "e3", "e4"}) EXPECT_TRUE(outbox().GetEvent(kept)) << kept;  // recent, dead, held
  const auto after = outbox().GetOutboxStats().value();
  EXPECT_EQ(after.published, before.published);  // a counter: purging does not lower it
  EXPECT_EQ(after.dead, 1);
  // Nothing more is due this time; later, the rest, one at a time.
  EXPECT_EQ(store().Purge(FromUnixMillis(30'000), FromUnixMillis(30'000), 100)->instances, 0);
  auto later = store().Purge(FromUnixMillis(100'000), FromUnixMillis(100'000), 1);
  ASSERT_TRUE(later);
  EXPECT_EQ(later->instances, 1);
  EXPECT_EQ(later->events, 1);
  EXPECT_EQ(store().GetInstance({"t2"}).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(outbox().GetEvent("e2").error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(outbox().GetEvent("e3"));  // a dead letter stays until it is replayed
  EXPECT_EQ(outbox().GetOutboxStats()->published, before.published);
}

TEST_P(StoreContract, StaleVersionIsAConflictAndChangesNothing) {
  Changes create;
  create.instances = {MakeInstance("i1")};
  ASSERT_TRUE(store().Commit(create));

  LabletInstance read = *store().GetInstance({"i1"});
  LabletInstance first = read, second = read;
  first.owner_id = "first";
  second.owner_id = "second";
  Changes c1, c2;
  c1.instances = {first};
  c2.instances = {second};
  ASSERT_TRUE(store().Commit(c1));
  auto stale = store().Commit(c2);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  EXPECT_EQ(stale.error().kind, ErrorKind::kStaleVersion);
  auto now = store().GetInstance({"i1"});
  EXPECT_EQ(now->owner_id, "first");
  EXPECT_EQ(now->version, 2);

  // Creating what exists is stale too.
  auto again = store().Commit(create);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind, ErrorKind::kStaleVersion);
}

// Each move appends to the history; a read, of one or in a list, gives back the whole
// instance as last written, its history in order (a reason in any characters included).
TEST_P(StoreContract, AnInstanceReadsBackAsWrittenHistoryIncludedAfterSeveralMoves) {
  LabletInstance i = MakeInstance("i1");
  ASSERT_TRUE(CommitInstance(store(), i));
  Move(i, InstanceState::kScheduled, 2000);
  ASSERT_TRUE(CommitInstance(store(), i));
  Move(i, InstanceState::kInstantiating, 3000, "lab \"l-1\" imported ü\n\\ \t\x01");
  Move(i, InstanceState::kRunning, 4000);  // two entries in one commit
  ASSERT_TRUE(CommitInstance(store(), i));
  for (auto to : {InstanceState::kStopping, InstanceState::kStopped, InstanceState::kRunning}) {
    Move(i, to, 5000 + static_cast<std::int64_t>(i.state_history.size()));
    ASSERT_TRUE(CommitInstance(store(), i));
  }

  auto back = store().GetInstance({"i1"});
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->version, 6);
  ASSERT_EQ(back->state_history.size(), 6u);
  EXPECT_EQ(back->state_history, i.state_history);
  EXPECT_EQ(Whole(*back), Whole(i));
  auto listed = store().ListInstances({}, {});
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->items.size(), 1u);
  EXPECT_EQ(Whole(listed->items[0]), Whole(i));
}

// An instance's head, its state and version read without the rest of it, is the instance's
// as last committed.
TEST_P(StoreContract, AnInstancesHeadIsItsStateAndVersionAsLastCommitted) {
  LabletInstance i = MakeInstance("i1");
  ASSERT_TRUE(CommitInstance(store(), i));
  for (auto to : {InstanceState::kScheduled, InstanceState::kInstantiating, InstanceState::kRunning}) {
    Move(i, to, 2000 + static_cast<std::int64_t>(i.state_history.size()));
    ASSERT_TRUE(CommitInstance(store(), i));
    auto head = store().GetInstanceHead({"i1"});
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(head->state, to);
    EXPECT_EQ(head->version, store().GetInstance({"i1"})->version);
  }
  EXPECT_EQ(store().GetInstanceHead({"i1"})->version, 4);
  EXPECT_EQ(store().GetInstanceHead({"nope"}).error().code, ErrorCode::kNotFound);
}

// A worker's hostname, read alone, is the worker's as last committed, the reservations and
// history around it left out.
TEST_P(StoreContract, AWorkersHostnameIsReadAloneAsLastCommitted) {
  Worker w = MakeWorker("w1");
  w.reservations["i1"] = {{1, 4, 10}, 3};
  Changes create;
  create.workers = {w};
  ASSERT_TRUE(store().Commit(create));
  auto hostname = store().GetWorkerHostname({"w1"});
  ASSERT_TRUE(hostname) << hostname.error().message;
  EXPECT_EQ(*hostname, "w1.example");

  w = *store().GetWorker({"w1"});
  w.hostname = "cml-7.lab.example";
  Changes renamed;
  renamed.workers = {w};
  ASSERT_TRUE(store().Commit(renamed));
  EXPECT_EQ(*store().GetWorkerHostname({"w1"}), "cml-7.lab.example");
  EXPECT_EQ(store().GetWorkerHostname({"nope"}).error().code, ErrorCode::kNotFound);
}

TEST_P(StoreContract, AFailedCommitLeavesNothingBehind) {
  Changes create;
  create.workers = {MakeWorker("w1")};
  ASSERT_TRUE(store().Commit(create));

  // A new instance, an outbox event and a dedup key, with a stale worker: all or nothing.
  Changes c;
  c.instances = {MakeInstance("i-new")};
  c.workers = {MakeWorker("w1")};  // version 0: stale
  c.events = {MakeEvent("e-new", "i-new")};
  c.processed = {{"platform", "evt-1", FromUnixMillis(0), FromUnixMillis(1000)}};
  ASSERT_FALSE(store().Commit(c));
  EXPECT_EQ(store().GetInstance({"i-new"}).error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(*store().IsProcessed("platform", "evt-1", FromUnixMillis(0)));
  auto list = store().ListInstances({}, {});
  EXPECT_TRUE(list->items.empty());
}

TEST_P(StoreContract, DefinitionVersionsAndNamesAreUnique) {
  Changes c;
  c.new_definitions = {MakeDefinition("def-1", "lab-a", "1.0.0")};
  ASSERT_TRUE(store().Commit(c));
  auto dup = store().Commit(c);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::kConflict);
  EXPECT_EQ(dup.error().field, "version");
  // It names the field `version` but is no stale read: a retry would not cure it.
  EXPECT_EQ(dup.error().kind, ErrorKind::kUnspecified);
  Changes other;
  other.new_definitions = {MakeDefinition("def-2", "lab-a", "2.0.0")};
  auto name = store().Commit(other);
  ASSERT_FALSE(name);
  EXPECT_EQ(name.error().field, "name");
}

TEST_P(StoreContract, SoftDeleteHidesFromListButKeepsReadable) {
  Changes c;
  c.new_definitions = {MakeDefinition("def-1", "lab-a", "1.0.0"), MakeDefinition("def-2", "lab-b", "1.0.0")};
  ASSERT_TRUE(store().Commit(c));
  Changes del;
  del.deleted_definitions = {{"def-1"}};
  ASSERT_TRUE(store().Commit(del));
  EXPECT_TRUE(store().GetDefinition({"def-1"}, std::nullopt)->deleted);
  auto visible = store().ListDefinitions({}, {});
  ASSERT_EQ(visible->items.size(), 1u);
  EXPECT_EQ(visible->items[0].id.value, "def-2");
  ports::DefinitionFilter all;
  all.include_deleted = true;
  EXPECT_EQ(store().ListDefinitions(all, {})->items.size(), 2u);
  ports::DefinitionFilter by_name;
  by_name.name = "lab-b";
  EXPECT_EQ(store().ListDefinitions(by_name, {})->items.size(), 1u);
  Changes missing;
  missing.deleted_definitions = {{"def-9"}};
  EXPECT_EQ(store().Commit(missing).error().code, ErrorCode::kNotFound);
}

TEST_P(StoreContract, ListsFilterAndPage) {
  Changes c;
  for (int n = 0; n < 7; ++n) {
    LabletInstance i = MakeInstance("i" + std::to_string(n), n % 2 ? "odd" : "even");
    if (n < 3) {
      i.state = InstanceState::kScheduled;
      i.worker_id = WorkerId{"w1"};
    }
    c.instances.push_back(i);
  }
  ASSERT_TRUE(store().Commit(c));
  ports::Page page{3, ""};
  std::vector<std::string> seen;
  for (;;) {
    auto p = store().ListInstances({}, page);
    ASSERT_TRUE(p);
    for (auto& i : p->items) seen.push_back(i.id.value);
    if (p->next.empty()) break;
    EXPECT_EQ(p->items.size(), 3u);
    page.after = p->next;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"i0", "i1", "i2", "i3", "i4", "i5", "i6"}));
  ports::InstanceFilter f;
  f.state = InstanceState::kScheduled;
  EXPECT_EQ(store().ListInstances(f, {})->items.size(), 3u);
  f.owner_id = "odd";
  EXPECT_EQ(store().ListInstances(f, {})->items.size(), 1u);  // i1
  ports::InstanceFilter by_worker;
  by_worker.worker_id = "w1";
  EXPECT_EQ(store().ListInstances(by_worker, {})->items.size(), 3u);
}

// The ids of every instance that passes `filter`, read `limit` at a time.
std::vector<std::string> Ids(ports::Store& store, const ports::InstanceFilter& filter, int limit = 100) {
  std::vector<std::string> ids;
  ports::Page page{limit, ""};
  for (;;) {
    auto p = store.ListInstances(filter, page);
    if (!p) {
      ADD_FAILURE() << p.error().message;
      return ids;
    }
    for (auto& i : p->items) ids.push_back(i.id.value);
    if (p->next.empty()) return ids;
    page.after = p->next;
  }
}

using IdList = std::vector<std::string>;

TEST_P(StoreContract, TimeBoundsSelectTheInstancesDueByThemInclusively) {
  auto make = [](const std::string& id, InstanceState state, std::int64_t start_s, std::int64_t end_s,
                 std::optional<std::int64_t> pod_due_s) {
    LabletInstance i = MakeInstance(id);
    i.state = state;
    i.timeslot_start = FromUnixMillis(start_s * 1000);
    i.timeslot_end = FromUnixMillis(end_s * 1000);
    if (pod_due_s) i.pod_due_at = FromUnixMillis(*pod_due_s * 1000);
    return i;
  };
  Changes c;
  c.instances = {make("a", InstanceState::kRunning, 1000, 2000, 1500), make("b", InstanceState::kRunning, 1000, 3000, {}),
                 make("c", InstanceState::kRunning, 2000, 3000, 2500), make("d", InstanceState::kPending, 1000, 2000, {}),
                 make("e", InstanceState::kScheduled, 1000, 2000, {})};
  ASSERT_TRUE(store().Commit(c));
  const auto at = [](std::int64_t s) { return FromUnixMillis(s * 1000); };
  ports::InstanceFilter ended;
  ended.state = InstanceState::kRunning;
  ended.ends_by = at(2000);
  EXPECT_EQ(Ids(store(), ended), (IdList{"a"}));  // at the bound counts
  ended.ends_by = at(2000) - std::chrono::milliseconds(1);
  EXPECT_EQ(Ids(store(), ended), IdList{});
  ended.ends_by = at(3000);
  EXPECT_EQ(Ids(store(), ended, 1), (IdList{"a", "b", "c"}));  // paged, in id order
  ports::InstanceFilter pods;
  pods.state = InstanceState::kRunning;
  pods.pod_due_by = at(2500);
  EXPECT_EQ(Ids(store(), pods), (IdList{"a", "c"}));  // b has no pod due: never
  pods.pod_due_by = at(2499);
  EXPECT_EQ(Ids(store(), pods), (IdList{"a"}));
  ports::InstanceFilter started;
  started.starts_by = at(1000);
  EXPECT_EQ(Ids(store(), started), (IdList{"a", "b", "d", "e"}));  // no state: every state
  started.state = InstanceState::kPending;
  EXPECT_EQ(Ids(store(), started), (IdList{"d"}));
  started.state = InstanceState::kScheduled;
  EXPECT_EQ(Ids(store(), started), (IdList{"e"}));
  started.state = InstanceState::kPending;
  started.owner_id = "someone else";
  EXPECT_EQ(Ids(store(), started), IdList{});  // with the other fields, all of them hold
  // A bound with a state its sweep never reads selects all the same.
  started.owner_id.reset();
  started.state = InstanceState::kRunning;
  EXPECT_EQ(Ids(store(), started), (IdList{"a", "b"}));
  ports::InstanceFilter pending_ended;
  pending_ended.state = InstanceState::kPending;
  pending_ended.ends_by = at(2000);
  EXPECT_EQ(Ids(store(), pending_ended), (IdList{"d"}));

  // A write moves the instance within the bounds: the pod taken, the timeslot moved.
  LabletInstance a = *store().GetInstance({"a"});
  a.pod_due_at.reset();
  a.timeslot_end = at(5000);
  Changes update;
  update.instances = {a};
  ASSERT_TRUE(store().Commit(update));
  pods.pod_due_by = at(2500);
  EXPECT_EQ(Ids(store(), pods), (IdList{"c"}));
  ended.ends_by = at(3000);
  EXPECT_EQ(Ids(store(), ended), (IdList{"b", "c"}));
}

TEST_P(StoreContract, CountsEachLiveStateWithItsOldestEntry) {
  auto make = [](const std::string& id, InstanceState state, std::optional<std::int64_t> entered_ms) {
    LabletInstance i = MakeInstance(id);
    i.state = state;
    if (entered_ms) i.state_history.push_back({InstanceState::kPending, state, FromUnixMillis(*entered_ms), "r", "t"});
    return i;
  };
  Changes c;
  c.instances = {make("a", InstanceState::kRunning, 5000), make("b", InstanceState::kRunning, 3000),
                 make("d", InstanceState::kPending, std::nullopt), make("t", InstanceState::kTerminated, 100)};
  ASSERT_TRUE(store().Commit(c));
  auto counts = store().CountInstances();
  ASSERT_TRUE(counts);
  ASSERT_EQ(counts->size(), 2u) << "TERMINATED is not counted, and a state without instances is absent";
  EXPECT_EQ(counts->at(InstanceState::kRunning).count, 2);
  EXPECT_EQ(counts->at(InstanceState::kRunning).oldest_entered_at, FromUnixMillis(3000));
  EXPECT_EQ(counts->at(InstanceState::kPending).count, 1);
  EXPECT_EQ(counts->at(InstanceState::kPending).oldest_entered_at, FromUnixMillis(1000));  // no history: created_at

  // A move is counted in its new state, entered when it moved.
  LabletInstance b = *store().GetInstance({"b"});
  b.state = InstanceState::kStopping;
  b.state_history.push_back({InstanceState::kRunning, InstanceState::kStopping, FromUnixMillis(9000), "r", "t"});
  Changes update;
  update.instances = {b};
  ASSERT_TRUE(store().Commit(update));
  counts = store().CountInstances();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->at(InstanceState::kRunning).count, 1);
  EXPECT_EQ(counts->at(InstanceState::kRunning).oldest_entered_at, FromUnixMillis(5000));
  EXPECT_EQ(counts->at(InstanceState::kStopping).count, 1);
  EXPECT_EQ(counts->at(InstanceState::kStopping).oldest_entered_at, FromUnixMillis(9000));
}

TEST_P(StoreContract, ProcessedKeysRefuseALiveDuplicateAndExpire) {
  Changes c;
  c.processed = {{"platform", "evt-1", FromUnixMillis(0), FromUnixMillis(1000)}};
  ASSERT_TRUE(store().Commit(c));
  EXPECT_TRUE(*store().IsProcessed("platform", "evt-1", FromUnixMillis(500)));
  EXPECT_FALSE(*store().IsProcessed("other", "evt-1", FromUnixMillis(500)));  // the key is (source, id)
  auto dup = store().Commit(c);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().kind, ErrorKind::kDuplicate);
  EXPECT_FALSE(*store().IsProcessed("platform", "evt-1", FromUnixMillis(1000)));
  Changes later;
  later.processed = {{"platform", "evt-1", FromUnixMillis(1000), FromUnixMillis(2000)}};
  EXPECT_TRUE(store().Commit(later));  // an expired key is taken over
}

TEST_P(StoreContract, AProcessedKeyKeepsItsValueUntilItExpires) {
  Changes c;
  c.processed = {{"ccm:idempotency-key:alice", "k1", FromUnixMillis(0), FromUnixMillis(1000), "{\"first\":1}"},
                 {"platform", "evt-1", FromUnixMillis(0), FromUnixMillis(1000)}};
  ASSERT_TRUE(store().Commit(c));
  EXPECT_EQ(store().ProcessedValue("ccm:idempotency-key:alice", "k1", FromUnixMillis(999))->value_or("absent"),
            "{\"first\":1}");
  EXPECT_EQ(store().ProcessedValue("platform", "evt-1", FromUnixMillis(1))->value_or("absent"), "");
  EXPECT_FALSE(store().ProcessedValue("ccm:idempotency-key:bob", "k1", FromUnixMillis(1))->has_value());
  EXPECT_FALSE(store().ProcessedValue("ccm:idempotency-key:alice", "k1", FromUnixMillis(1000))->has_value());
  // Taken over once expired, with the new value.
  Changes later;
  later.processed = {{"ccm:idempotency-key:alice", "k1", FromUnixMillis(1000), FromUnixMillis(2000), "second"}};
  ASSERT_TRUE(store().Commit(later));
  EXPECT_EQ(store().ProcessedValue("ccm:idempotency-key:alice", "k1", FromUnixMillis(1500))->value_or(""), "second");
}

TEST_P(StoreContract, OneInstanceNotYetTerminatedPerReservation) {
  const auto booking = [](const std::string& id, std::optional<std::string> reservation) {
    LabletInstance i = MakeInstance(id);
    i.reservation_id = std::move(reservation);
    return i;
  };
  const auto write = [this](std::vector<LabletInstance> instances) {
    Changes c;
    c.instances = std::move(instances);
    return store().Commit(c);
  };
  // An instance as it is stored now, changed by `change`.
  const auto stored = [this](const std::string& id, const std::function<void(LabletInstance&)>& change) {
    LabletInstance i = *store().GetInstance({id});
    change(i);
    return i;
  };
  ASSERT_TRUE(write({booking("i1", "r-1")}));

  // A second instance for the reservation is refused, and nothing of its commit is written.
  Changes second;
  second.instances = {booking("i2", "r-1")};
  second.events = {MakeEvent("e-i2", "i2")};
  auto refused = store().Commit(second);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_EQ(refused.error().field, "reservation_id");
  EXPECT_NE(refused.error().message.find("i1"), std::string::npos) << refused.error().message;
  EXPECT_EQ(store().GetInstance({"i2"}).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(outbox().GetEvent("e-i2").error().code, ErrorCode::kNotFound);

  // Other reservations, and instances without one, are not affected.
  ASSERT_TRUE(write({booking("i3", "r-2"), booking("i4", std::nullopt)}));

  // A move that is not the end keeps the reservation held.
  ASSERT_TRUE(write({stored("i1", [](LabletInstance& i) { i.state = InstanceState::kScheduled; })}));
  EXPECT_FALSE(store().Commit(second));

  // Once the holder has terminated, the reservation takes a new instance.
  ASSERT_TRUE(write({stored("i1", [](LabletInstance& i) { i.state = InstanceState::kTerminated; })}));
  ASSERT_TRUE(store().Commit(second));
  EXPECT_EQ(store().GetInstance({"i2"})->reservation_id, "r-1");
  // A later write of the terminated one does not give up what the new one holds.
  ASSERT_TRUE(write({stored("i1", [](LabletInstance& i) { i.cml_error = "written again"; })}));
  auto still = write({booking("i5", "r-1")});
  ASSERT_FALSE(still);
  EXPECT_EQ(still.error().field, "reservation_id");
}

TEST_P(StoreContract, ConcurrentWritersOnOneAggregateNeverLoseAnUpdate) {
  Changes create;
  create.workers = {MakeWorker("w1")};
  ASSERT_TRUE(store().Commit(create));
  constexpr int kThreads = 8, kEach = 25;
  ReserveConcurrently(store(), kThreads, kEach, [this](int, Changes c) { return store().Commit(c); });
  auto w = store().GetWorker({"w1"});
  EXPECT_EQ(w->reservations.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(w->version, 1 + kThreads * kEach);
}

TEST_P(StoreContract, OutboxKeepsCommitOrderAndDeliveryBookkeeping) {
  Changes c;
  c.events = {MakeEvent("e1", "a"), MakeEvent("e2", "b"), MakeEvent("e3", "a")};
  ASSERT_TRUE(store().Commit(c));
  Changes more;
  more.events = {MakeEvent("e4", "b")};
  ASSERT_TRUE(store().Commit(more));
  auto due = outbox().DueEvents(FromUnixMillis(10), 10);
  ASSERT_TRUE(due);
  std::vector<std::string> ids;
  for (const auto& r : *due) ids.push_back(r.event.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"e1", "e2", "e3", "e4"}));
  for (size_t n = 1; n < due->size(); ++n) EXPECT_GT((*due)[n].seq, (*due)[n - 1].seq);  // commit order
  EXPECT_EQ((*due)[0].event.json, "{\"id\":\"e1\"}");

  // e1 delivered, e2 backing off until t=100 (which holds back e4, same subject), e3 dead.
  Changes d;
  d.deliveries = {{(*due)[0].seq, ports::DeliveryState::kDelivered, 1, FromUnixMillis(20), "", "e1"},
                  {(*due)[1].seq, ports::DeliveryState::kPending, 1, FromUnixMillis(100), "503", "e2"},
                  {(*due)[2].seq, ports::DeliveryState::kDead, 3, FromUnixMillis(30), "refused", "e3"}};
  ASSERT_TRUE(store().Commit(d));
  EXPECT_TRUE(outbox().DueEvents(FromUnixMillis(50), 10)->empty());
  auto later = outbox().DueEvents(FromUnixMillis(100), 10);
  ASSERT_EQ(later->size(), 2u);
  EXPECT_EQ((*later)[0].event.id, "e2");
  EXPECT_EQ((*later)[0].attempts, 1);
  EXPECT_EQ((*later)[0].last_error, "503");

  auto e1 = outbox().GetEvent("e1");
  ASSERT_TRUE(e1);
  EXPECT_EQ(e1->state, ports::DeliveryState::kDelivered);
  EXPECT_EQ(e1->delivered_at, FromUnixMillis(20));
  auto e3 = outbox().GetEvent("e3");
  EXPECT_EQ(e3->state, ports::DeliveryState::kDead);
  EXPECT_EQ(e3->dead_at, FromUnixMillis(30));
  EXPECT_EQ(outbox().GetEvent("e9").error().code, ErrorCode::kNotFound);
  auto stats = outbox().GetOutboxStats();
  EXPECT_EQ(stats->published, 4);
  EXPECT_EQ(stats->pending, 2);
  EXPECT_EQ(stats->dead, 1);

  ports::EventFilter by_subject;
  by_subject.subject = "b";
  auto b = outbox().ListEvents(by_subject, {1, ""});
  ASSERT_EQ(b->items.size(), 1u);
  EXPECT_EQ(b->items[0].event.id, "e2");
  auto b2 = outbox().ListEvents(by_subject, {1, b->next});
  ASSERT_EQ(b2->items.size(), 1u);
  EXPECT_EQ(b2->items[0].event.id, "e4");
  EXPECT_TRUE(b2->next.empty());
  ports::EventFilter dead;
  dead.state = ports::DeliveryState::kDead;
  EXPECT_EQ(outbox().ListEvents(dead, {})->items.size(), 1u);

  // Replaying the dead event makes it pending again; an unknown seq changes nothing.
  Changes replay;
  replay.deliveries = {{(*due)[2].seq, ports::DeliveryState::kPending, 0, FromUnixMillis(0), "", "e3"}};
  ASSERT_TRUE(store().Commit(replay));
  EXPECT_EQ(outbox().GetOutboxStats()->dead, 0);
  Changes unknown;
  unknown.deliveries = {{(*due)[3].seq + 1000, ports::DeliveryState::kDelivered, 1, FromUnixMillis(0), "", "e9"}};
  EXPECT_EQ(store().Commit(unknown).error().code, ErrorCode::kNotFound);
}

// Ids of the events in `records`, in their order.
std::vector<std::string> Ids(const std::vector<ports::OutboxRecord>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records) ids.push_back(r.event.id);
  return ids;
}

TEST_P(StoreContract, ADeadLetterHoldsItsSubjectUntilItIsReplayed) {
  Changes c;
  c.events = {MakeEvent("a1", "a"), MakeEvent("a2", "a"), MakeEvent("b1", "b")};
  ASSERT_TRUE(store().Commit(c));
  auto due = outbox().DueEvents(FromUnixMillis(10), 10);
  ASSERT_EQ(Ids(*due), (std::vector<std::string>{"a1", "a2", "b1"}));
  const std::int64_t a1 = (*due)[0].seq;

  Changes dead;
  dead.deliveries = {{a1, ports::DeliveryState::kDead, 1, FromUnixMillis(20), "HTTP 400", "a1"}};
  ASSERT_TRUE(store().Commit(dead));
  EXPECT_EQ(outbox().GetEvent("a2")->state, ports::DeliveryState::kHeld);
  Changes later;
  later.events = {MakeEvent("a3", "a"), MakeEvent("b2", "b")};
  ASSERT_TRUE(store().Commit(later));
  EXPECT_EQ(outbox().GetEvent("a3")->state, ports::DeliveryState::kHeld);
  EXPECT_EQ(Ids(*outbox().DueEvents(FromUnixMillis(30), 10)), (std::vector<std::string>{"b1", "b2"}));
  auto stats = outbox().GetOutboxStats();
  EXPECT_EQ(stats->held, 2);
  EXPECT_EQ(stats->pending, 2);
  EXPECT_EQ(stats->dead, 1);
  ports::EventFilter held;
  held.state = ports::DeliveryState::kHeld;
  EXPECT_EQ(Ids(outbox().ListEvents(held, {})->items), (std::vector<std::string>{"a2", "a3"}));

  // The replay releases the subject: the held events follow it, afresh, in their order.
  Changes replay;
  replay.deliveries = {{a1, ports::DeliveryState::kPending, 0, FromUnixMillis(40), "replayed", "a1"}};
  ASSERT_TRUE(store().Commit(replay));
  EXPECT_EQ(Ids(*outbox().DueEvents(FromUnixMillis(40), 10)), (std::vector<std::string>{"a1", "a2", "b1", "a3", "b2"}));
  EXPECT_EQ(outbox().GetEvent("a3")->next_attempt_at, FromUnixMillis(40));
  EXPECT_EQ(outbox().GetOutboxStats()->held, 0);
  Changes after;
  after.events = {MakeEvent("a4", "a")};
  ASSERT_TRUE(store().Commit(after));
  EXPECT_EQ(outbox().GetEvent("a4")->state, ports::DeliveryState::kPending);
  Changes hold;  // held is the store's to decide
  hold.deliveries = {{a1, ports::DeliveryState::kHeld, 0, FromUnixMillis(50), "", "a1"}};
  EXPECT_EQ(store().Commit(hold).error().code, ErrorCode::kInvalidArgument);
}

TEST_P(StoreContract, ReplayingALaterDeadLetterFirstLeavesItHeldBehindTheEarlierOne) {
  Changes c;
  c.events = {MakeEvent("a1", "a"), MakeEvent("a2", "a"), MakeEvent("a3", "a")};
  ASSERT_TRUE(store().Commit(c));
  auto due = outbox().DueEvents(FromUnixMillis(10), 10);
  ASSERT_EQ(due->size(), 3u);
  Changes dead;  // a batch refused as a whole: two dead letters in one subject
  dead.deliveries = {{(*due)[0].seq, ports::DeliveryState::kDead, 1, FromUnixMillis(20), "HTTP 400", "a1"},
                     {(*due)[1].seq, ports::DeliveryState::kDead, 1, FromUnixMillis(20), "HTTP 400", "a2"}};
  ASSERT_TRUE(store().Commit(dead));
  EXPECT_EQ(outbox().GetEvent("a3")->state, ports::DeliveryState::kHeld);

  Changes second;
  second.deliveries = {{(*due)[1].seq, ports::DeliveryState::kPending, 0, FromUnixMillis(30), "replayed", "a2"}};
  ASSERT_TRUE(store().Commit(second));
  EXPECT_EQ(outbox().GetEvent("a2")->state, ports::DeliveryState::kHeld);
  EXPECT_TRUE(outbox().DueEvents(FromUnixMillis(30), 10)->empty());

  Changes first;
  first.deliveries = {{(*due)[0].seq, ports::DeliveryState::kPending, 0, FromUnixMillis(40), "replayed", "a1"}};
  ASSERT_TRUE(store().Commit(first));
  EXPECT_EQ(Ids(*outbox().DueEvents(FromUnixMillis(40), 10)), (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(outbox().GetOutboxStats()->dead, 0);
  EXPECT_EQ(outbox().GetOutboxStats()->held, 0);
}

TEST_P(StoreContract, EventsWrittenWhileTheirSubjectIsDeadLetteredAreAllHeld) {
  Changes first;
  first.events = {MakeEvent("a0", "a")};
  ASSERT_TRUE(store().Commit(first));
  const std::int64_t a0 = outbox().GetEvent("a0")->seq;
  std::thread writer([&] {
    for (int n = 1; n <= 30; ++n) {
      Changes c;
      c.events = {MakeEvent("a" + std::to_string(n), "a")};
      ASSERT_TRUE(store().Commit(c));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Changes dead;
  dead.deliveries = {{a0, ports::DeliveryState::kDead, 1, FromUnixMillis(20), "HTTP 400", "a0"}};
  ASSERT_TRUE(store().Commit(dead));
  writer.join();
  // Whichever commit came first, nothing of the subject is left to go out before a0.
  EXPECT_TRUE(outbox().DueEvents(FromUnixMillis(30), 100)->empty());
  EXPECT_EQ(outbox().GetOutboxStats()->held, 30);
}

TEST_P(StoreContract, ConcurrentCommitsGetIncreasingSeqsInCommitOrder) {
  constexpr int kThreads = 6, kEach = 15;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int n = 0; n < kEach; ++n) {
        Changes c;
        c.events = {MakeEvent("e-" + std::to_string(t) + "-" + std::to_string(n), "s" + std::to_string(t))};
        ASSERT_TRUE(store().Commit(c));
      }
    });
  for (auto& t : threads) t.join();
  auto all = outbox().ListEvents({}, {ports::kMaxPageLimit, ""});
  ASSERT_EQ(all->items.size(), static_cast<size_t>(kThreads * kEach));
  std::map<std::string, int> last_of_writer;
  for (size_t n = 1; n < all->items.size(); ++n) EXPECT_GT(all->items[n].seq, all->items[n - 1].seq);
  // Each writer's events in the order it committed them.
  for (const auto& r : all->items) {
    const std::string writer = r.event.id.substr(0, r.event.id.rfind('-'));
    const int n = std::stoi(r.event.id.substr(r.event.id.rfind('-') + 1));
    EXPECT_EQ(n, last_of_writer.count(writer) ? last_of_writer[writer] + 1 : 0) << r.event.id;
    last_of_writer[writer] = n;
  }
}

TEST_P(StoreContract, LastSeqIsTheNewestEventsSeqAndNewEventsComeAfterIt) {
  EXPECT_EQ(outbox().LastSeq().value(), 0);  // an empty outbox
  Changes one;
  one.events = {MakeEvent("e1", "a"), MakeEvent("e2", "b"), MakeEvent("e3", "a")};
  ASSERT_TRUE(store().Commit(one));
  auto all = outbox().ListEvents({}, {ports::kMaxPageLimit, ""});
  ASSERT_EQ(all->items.size(), 3u);
  const std::int64_t last = outbox().LastSeq().value();
  EXPECT_EQ(last, all->items.back().seq);  // the last event of a commit of several, not its first

  // A commit without events leaves it; the next event comes after it, and only that one is
  // listed after it.
  Changes no_events;
  no_events.workers = {MakeWorker("w1")};
  ASSERT_TRUE(store().Commit(no_events));
  EXPECT_EQ(outbox().LastSeq().value(), last);
  Changes next;
  next.events = {MakeEvent("e4", "c")};
  ASSERT_TRUE(store().Commit(next));
  const std::int64_t newest = outbox().LastSeq().value();
  EXPECT_GT(newest, last);
  auto after = outbox().ListEvents({}, {ports::kMaxPageLimit, std::to_string(last)});
  ASSERT_EQ(after->items.size(), 1u);
  EXPECT_EQ(after->items[0].event.id, "e4");
  EXPECT_EQ(after->items[0].seq, newest);
  EXPECT_TRUE(outbox().ListEvents({}, {ports::kMaxPageLimit, std::to_string(newest)})->items.empty());
}

TEST_P(StoreContract, ABatchOfDeliveryUpdatesOfAnySizeIsWritten) {
  Changes c;
  for (int n = 0; n < 250; ++n) c.events.push_back(MakeEvent("e" + std::to_string(n), "s" + std::to_string(n % 7)));
  ASSERT_TRUE(store().Commit(c));
  auto due = outbox().DueEvents(FromUnixMillis(10), 500);
  ASSERT_EQ(due->size(), 250u);
  Changes delivered;
  for (const auto& r : *due)
    delivered.deliveries.push_back({r.seq, ports::DeliveryState::kDelivered, 1, FromUnixMillis(11), "", r.event.id});
  ASSERT_TRUE(store().Commit(delivered));
  EXPECT_TRUE(outbox().DueEvents(FromUnixMillis(12), 500)->empty());
  EXPECT_EQ(outbox().GetOutboxStats()->pending, 0);
  EXPECT_EQ(outbox().GetOutboxStats()->published, 250);
}

// Answers each event's first send as `first` says (delivered when it says nothing), later ones
// delivered; records what it took, by subject. Thread-safe: the dispatcher's lanes share it.
class FirstAnswers : public ports::EventSink {
 public:
  explicit FirstAnswers(std::map<std::string, ports::DeliveryOutcome> first) : first_(std::move(first)) {}
  int MaxBatch() const override { return 1; }
  ports::DeliveryOutcome Send(std::span<const ports::OutboxEvent> events) override {
    std::lock_guard lock(mu_);
    const auto& e = events.front();
    if (auto it = first_.find(e.id); it != first_.end()) {
      const auto answer = it->second;
      first_.erase(it);
      return answer;
    }
    taken_[e.subject].push_back(e.id);
    return {ports::DeliveryOutcome::kDelivered, 202, "", {}};
  }
  std::map<std::string, std::vector<std::string>> taken() {
    std::lock_guard lock(mu_);
    return taken_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, ports::DeliveryOutcome> first_;
  std::map<std::string, std::vector<std::string>> taken_;
};

// Full rounds go out back to back, each while the one before's outcomes are being committed:
// whatever the store's reads see of that commit, each subject is delivered once, in order,
// and nothing behind a dead letter goes out.
TEST_P(StoreContract, TheDispatchersRoundsBackToBackKeepEachSubjectInOrder) {
  std::map<std::string, std::vector<std::string>> published;
  Changes c;
  for (int n = 0; n < 240; ++n) {
    char id[16];
    std::snprintf(id, sizeof id, "e%05d", n);
    const std::string subject = "s" + std::to_string(n % 7);
    c.events.push_back(MakeEvent(id, subject));
    published[subject].push_back(id);
  }
  ASSERT_TRUE(store().Commit(c));
  // A retry in s1 and s2 (each delivered later), a final refusal in s3: s3 stops there.
  FirstAnswers sink({{"e00008", {ports::DeliveryOutcome::kRetry, 503, "", {}}},
                     {"e00072", {ports::DeliveryOutcome::kRetry, 500, "", {}}},
                     {"e00045", {ports::DeliveryOutcome::kFinal, 400, "", {}}}});
  testing::FakeClock clock(FromUnixMillis(1'000));
  app::DispatcherOptions o;
  o.round_size = 20;
  o.concurrency = 3;
  o.base_backoff = std::chrono::milliseconds(10);
  o.max_backoff = std::chrono::milliseconds(10);
  o.breaker_threshold = 1'000'000;
  app::DispatchMetrics metrics;
  app::Dispatcher d(store(), outbox(), sink, clock, o, metrics);
  int delivered = 0;
  for (int run = 0; run < 40 && delivered < 240 - 28; ++run) {
    const auto n = d.RunOnce();
    ASSERT_TRUE(n);
    delivered += *n;
    clock.Advance(std::chrono::milliseconds(20));  // past any backoff
  }
  EXPECT_EQ(delivered, 240 - 28);  // s3 from e00045 on: 28 events, the dead letter and 27 held
  auto expected = published;
  auto& s3 = expected["s3"];
  s3.erase(std::find(s3.begin(), s3.end(), "e00045"), s3.end());
  EXPECT_EQ(sink.taken(), expected);
  const auto stats = outbox().GetOutboxStats();
  EXPECT_EQ(stats->pending, 0);
  EXPECT_EQ(stats->dead, 1);
  EXPECT_EQ(stats->held, 27);
}

TEST_P(StoreContract, AWorkersPortsAreAllocatedOnceAndGivenBack) {
  Changes create;
  create.workers = {MakeWorker("w1")};
  ASSERT_TRUE(store().Commit(create));
  Worker w = *store().GetWorker({"w1"});
  w.port_allocations["i1"] = {{"serial", 2000}, {"vnc", 2001}};
  Changes take;
  take.workers = {w};
  ASSERT_TRUE(store().Commit(take));
  Worker again = *store().GetWorker({"w1"});
  EXPECT_EQ(again.port_allocations.at("i1").at("vnc"), 2001);
  again.port_allocations.erase("i1");
  again.port_allocations["i2"] = {{"serial", 2001}};
  Changes swap;
  swap.workers = {again};
  ASSERT_TRUE(store().Commit(swap));
  EXPECT_EQ(store().GetWorker({"w1"})->port_allocations.size(), 1u);
  // The copy read at version 1 is stale: it cannot hand out 2000 and 2001 again.
  auto stale = store().Commit(take);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().kind, ErrorKind::kStaleVersion);
}

StoreFactory FactoryFor(const std::string& name) {
  if (name == "memory")
    return [](const std::string&) { return StoreUnderTest{std::make_unique<store::MemoryStore>(), nullptr}; };
  if (name == "sqlite")
    return [](const std::string& dir) {
      const std::string path = dir + "/ccm.db";
      auto open = [path]() -> std::unique_ptr<ports::Store> {
        auto s = store::SqliteStore::Open({path});
        EXPECT_TRUE(s) << s.error().message;
        return s ? std::move(s.value()) : nullptr;
      };
      return StoreUnderTest{open(), open};
    };
  if (name == "etcd")
    return [](const std::string&) {
      // One etcd server for the whole suite; each test writes under a prefix of its own.
      static testing::TempDir etcd_dir;
      static testing::EtcdCluster cluster(etcd_dir.path());
      static int tests = 0;
      const std::string prefix = "/contract-" + std::to_string(getpid()) + "-" + std::to_string(++tests);
      auto open = [prefix]() -> std::unique_ptr<ports::Store> {
        store::EtcdStore::Options options;
        options.client.endpoints = cluster.ClientUrls();
        options.prefix = prefix;
        auto s = store::EtcdStore::Open(options);
        EXPECT_TRUE(s) << s.error().message;
        return s ? std::move(s.value()) : nullptr;
      };
      return StoreUnderTest{open(), open};
    };
  throw std::invalid_argument("no store named " + name);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreContract, ::testing::Values("memory", "sqlite", "etcd"),
                         [](const auto& info) { return info.param; });

// CommitThen commits as Commit does and tells its outcome once: a refusal writes nothing,
// commits from many threads at once, waiting and not, all land, and the version read alone
// follows each.
TEST_P(StoreContract, CommitThenTellsEachOutcomeOnceAndWritesAsCommitDoes) {
  Changes create;
  create.instances = {MakeInstance("i1")};
  std::promise<Status> created;
  store().CommitThen(create, [&created](Status s) { created.set_value(s); });
  ASSERT_TRUE(created.get_future().get());
  EXPECT_EQ(store().GetInstanceHead({"i1"})->version, 1);

  // Stale: refused, with nothing of it written (its event included).
  LabletInstance stale = *store().GetInstance({"i1"});
  stale.version = 0;
  stale.owner_id = "stale";
  Changes refused;
  refused.instances = {stale};
  refused.events = {MakeEvent("e-stale", "i1")};
  std::promise<Status> told;
  store().CommitThen(refused, [&told](Status s) { told.set_value(s); });
  const Status outcome = told.get_future().get();
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().kind, ErrorKind::kStaleVersion);
  EXPECT_EQ(store().GetInstance({"i1"})->owner_id, MakeInstance("i1").owner_id);
  EXPECT_FALSE(outbox().GetEvent("e-stale"));

  // A worker moved by threads that wait and threads that do not: no update is lost, and
  // each callback runs once.
  Changes worker;
  worker.workers = {MakeWorker("w1")};
  ASSERT_TRUE(store().Commit(worker));
  constexpr int kThreads = 6, kEach = 20;
  std::atomic<int> calls{0}, told_times{0};
  ReserveConcurrently(store(), kThreads, kEach, [&](int thread, Changes c) -> Status {
    if (thread % 2 == 0) return store().Commit(c);
    ++calls;
    std::promise<Status> done;
    store().CommitThen(std::move(c), [&](Status st) {
      ++told_times;
      done.set_value(st);
    });
    return done.get_future().get();
  });
  EXPECT_GE(calls.load(), kThreads / 2 * kEach);
  EXPECT_EQ(told_times.load(), calls.load());
  EXPECT_EQ(store().GetWorker({"w1"})->reservations.size(), static_cast<size_t>(kThreads * kEach));

  EXPECT_EQ(store().GetInstanceHead({"nope"}).error().code, ErrorCode::kNotFound);
}

// ---- durable stores only -------------------------------------------------------------------

// What a store that keeps its data on disk or in a cluster promises beyond the contract.
class DurableStoreContract : public StoreContract {};

TEST_P(DurableStoreContract, CommittedChangesSurviveARestart) {
  Changes c;
  c.instances = {MakeInstance("i1")};
  c.processed = {{"platform", "evt-1", FromUnixMillis(0), FromUnixMillis(100000)}};
  ASSERT_TRUE(store().Commit(c));
  store_.reset();
  store_ = reopen_();
  ASSERT_TRUE(store_);
  EXPECT_EQ(store().GetInstance({"i1"})->version, 1);
  EXPECT_TRUE(*store().IsProcessed("platform", "evt-1", FromUnixMillis(1)));
}

// A store destroyed with commits of CommitThen still queued commits each of them and tells
// it before it goes: none is lost or left untold.
TEST_P(DurableStoreContract, CommitsQueuedByCommitThenLandBeforeTheStoreCloses) {
  constexpr int kCommits = 200;
  std::atomic<int> committed{0}, told{0};
  for (int n = 0; n < kCommits; ++n) {
    Changes c;
    c.instances = {MakeInstance("i" + std::to_string(n))};
    store().CommitThen(std::move(c), [&](Status s) {
      ++told;
      if (s) ++committed;
    });
  }
  store_.reset();
  EXPECT_EQ(told.load(), kCommits);
  EXPECT_EQ(committed.load(), kCommits);
  store_ = reopen_();
  ASSERT_TRUE(store_);
  for (int n = 0; n < kCommits; ++n) EXPECT_EQ(store().GetInstanceHead({"i" + std::to_string(n)})->version, 1) << n;
}

// The history is kept as the instance is: after a restart, a read gives back all of it, and
// the next move appends to it.
TEST_P(DurableStoreContract, AnInstancesWholeHistorySurvivesARestart) {
  LabletInstance i = MakeInstance("i1");
  Move(i, InstanceState::kScheduled, 2000);
  ASSERT_TRUE(CommitInstance(store(), i));
  Move(i, InstanceState::kInstantiating, 3000);
  ASSERT_TRUE(CommitInstance(store(), i));
  Move(i, InstanceState::kRunning, 4000);
  ASSERT_TRUE(CommitInstance(store(), i));
  store_.reset();
  store_ = reopen_();
  ASSERT_TRUE(store_);
  auto back = store().GetInstance({"i1"});
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(Whole(*back), Whole(i));

  Move(*back, InstanceState::kStopping, 5000);
  ASSERT_TRUE(CommitInstance(store(), *back));
  auto after = store().GetInstance({"i1"});
  ASSERT_TRUE(after);
  ASSERT_EQ(after->state_history.size(), 4u);
  EXPECT_EQ(Whole(*after), Whole(*back));
}

INSTANTIATE_TEST_SUITE_P(Stores, DurableStoreContract, ::testing::Values("sqlite", "etcd"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ccm
