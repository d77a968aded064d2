// What only the etcd store promises, against a real etcd: dedup keys on hourly leases, commits
// fenced by the leader's term, one leader at a time with failover, watches, and two replicas'
// schedulers racing for ports. (The Store contract runs in sqlite_store_test.cc for both.)
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "app/collection.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "app/receiver.h"
#include "app/reconcilers.h"
#include "app/services.h"
#include "os/clock.h"
#include "ports/store.h"
#include "store/etcd/etcd_store.h"
#include "store/etcd/leader_election.h"
#include "support/etcd_cluster.h"
#include "support/fixtures.h"
#include "support/scheduling.h"
#include "support/stack.h"
#include "support/temp_dir.h"

namespace ccm {
namespace {

using namespace ccm::domain;
using namespace std::chrono_literals;

namespace pb = etcdserverpb;

// A member in front of a real one (KV and Lease, through to it) that applies the first write
// transaction it is given and then answers UNAVAILABLE, as a member dying mid-request might.
class LosingMember {
 public:
  explicit LosingMember(const std::string& real_url) {
    auto channel = grpc::CreateChannel(real_url.substr(real_url.find("//") + 2), grpc::InsecureChannelCredentials());
    kv_.real = pb::KV::NewStub(channel);
    lease_.real = pb::Lease::NewStub(channel);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&kv_);
    builder.RegisterService(&lease_);
    server_ = builder.BuildAndStart();
  }
  ~LosingMember() { server_->Shutdown(); }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int lost() const { return kv_.lost.load(); }

 private:
  struct Kv final : pb::KV::Service {
    grpc::Status Range(grpc::ServerContext*, const pb::RangeRequest* in, pb::RangeResponse* out) override {
      grpc::ClientContext context;
      return real->Range(&context, *in, out);
    }
    grpc::Status Txn(grpc::ServerContext*, const pb::TxnRequest* in, pb::TxnResponse* out) override {
      grpc::ClientContext context;
      grpc::Status s = real->Txn(&context, *in, out);
      const bool writes = std::any_of(in->success().begin(), in->success().end(),
                                      [](const pb::RequestOp& op) { return op.has_request_put(); });
      if (s.ok() && writes && lost++ == 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the answer was lost");
      return s;
    }
    std::unique_ptr<pb::KV::Stub> real;
    std::atomic<int> lost{0};
  };
  struct Lease final : pb::Lease::Service {
    grpc::Status LeaseGrant(grpc::ServerContext*, const pb::LeaseGrantRequest* in, pb::LeaseGrantResponse* out) override {
      grpc::ClientContext context;
      return real->LeaseGrant(&context, *in, out);
    }
    std::unique_ptr<pb::Lease::Stub> real;
  };
  Kv kv_;
  Lease lease_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

class EtcdStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    cluster_ = new testing::EtcdCluster(dir_->path());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    delete dir_;
  }

  // A store on a prefix of this test's own, as one replica would open it.
  std::unique_ptr<store::EtcdStore> Open(std::function<void()> on_events = nullptr) {
    store::EtcdStore::Options options;
    options.client.endpoints = cluster_->ClientUrls();
    options.prefix = prefix_;
    options.on_events_committed = std::move(on_events);
    auto s = store::EtcdStore::Open(options);
    EXPECT_TRUE(s) << s.error().message;
    return std::move(s.value());
  }

  const std::string prefix_ = "/" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
  static testing::TempDir* dir_;
  static testing::EtcdCluster* cluster_;
};
testing::TempDir* EtcdStoreTest::dir_ = nullptr;
testing::EtcdCluster* EtcdStoreTest::cluster_ = nullptr;

TEST_F(EtcdStoreTest, TheClientRoundTripsAnyBytesAndMovesPastADeadMember) {
  // A member that is not there comes first: every call moves on to the live one.
  const std::string dead = "http://127.0.0.1:" + std::to_string(testing::UnusedPort());
  std::vector<std::string> endpoints = {dead};
  for (const auto& url : cluster_->ClientUrls()) endpoints.push_back(url);
  store::etcd::Client client({endpoints, 300ms, 2s});
  // Values of every length modulo 3 (base64 padding) and every byte.
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b);
  const std::vector<std::string> values = {"", "a", "ab", "abc", "abcd", all_bytes, std::string("\0\xff\0", 3)};
  for (size_t n = 0; n < values.size(); ++n) {
    const std::string key = prefix_ + "/bytes/" + std::to_string(n);
    ASSERT_TRUE(client.Txn({}, {store::etcd::PutOp(key, values[n])}));
    auto got = client.Range(key);
    ASSERT_TRUE(got) << got.error().message;
    ASSERT_EQ(got->kvs.size(), 1u);
    EXPECT_EQ(got->kvs.front().value, values[n]) << n;
  }
  auto listed = client.Range(prefix_ + "/bytes/", store::etcd::PrefixEnd(prefix_ + "/bytes/"));
  EXPECT_EQ(listed->kvs.size(), values.size());
  EXPECT_EQ(store::etcd::PrefixEnd("a/"), "a0");
  EXPECT_EQ(store::etcd::PrefixEnd(std::string("a\xff", 2)), "b");
  // A lease renewal is a stream of its own: a dead member first, it moves on as well.
  auto lease = client.GrantLease(10s);
  ASSERT_TRUE(lease) << lease.error().message;
  store::etcd::Client renewer({endpoints, 300ms, 2s});
  auto ttl = renewer.KeepAlive(*lease);
  ASSERT_TRUE(ttl) << ttl.error().message;
  EXPECT_GT(*ttl, 0);
  // No member at all: unavailable, naming the last one tried.
  store::etcd::Client nobody({{dead}, 300ms, 1s});
  auto refused = nobody.Range("/x");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(refused.error().message.find(dead), std::string::npos) << refused.error().message;
}

TEST_F(EtcdStoreTest, ACommitWrittenWhoseAnswerWasLostIsReportedAsWritten) {
  // The first member applies the first write it is given and loses its answer: the client
  // asks the next member, whose guards now fail.
  const std::string real = cluster_->ClientUrls().front();
  LosingMember flaky(real);
  store::EtcdStore::Options options;
  options.client.endpoints = {flaky.Url(), real};
  options.prefix = prefix_;
  auto store = std::move(store::EtcdStore::Open(options).value());
  ports::Changes c;
  c.instances = {testing::MakeInstance("i1")};
  c.events = {{"e1", "i1", "ccm.test", FromUnixMillis(1), "{}"}};
  c.processed = {{"platform", "evt-1", FromUnixMillis(0), FromUnixMillis(1000)}};
  auto s = store->Commit(c);
  EXPECT_TRUE(s) << s.error().message;
  EXPECT_EQ(flaky.lost(), 1);        // written there, answer lost
  EXPECT_GE(store->retries(), 1u);   // sent again elsewhere, refused by its guards, read again
  EXPECT_EQ(store->GetInstance({"i1"})->version, 1);
  EXPECT_EQ(store->GetOutboxStats()->published, 1);
}

TEST_F(EtcdStoreTest, DedupKeysShareOneLeasePerHourOfExpiry) {
  auto store = Open();
  const Timestamp hour = FromUnixMillis(1'900'000'000'000 / 3'600'000 * 3'600'000);  // an hour's start, in the future
  ports::Changes c;
  for (int n = 0; n < 20; ++n) c.processed.push_back({"platform", "a" + std::to_string(n), hour, hour + 10min + n * 1min});
  c.processed.push_back({"platform", "b", hour, hour + 90min});  // the next hour
  ASSERT_TRUE(store->Commit(c));
  auto keys = store->client().Range(prefix_ + "/events/processed/", store::etcd::PrefixEnd(prefix_ + "/events/processed/"));
  ASSERT_TRUE(keys);
  ASSERT_EQ(keys->kvs.size(), 21u);
  std::set<std::int64_t> leases;
  std::int64_t lease_of_b = 0;
  for (const auto& kv : keys->kvs) {
    EXPECT_NE(kv.lease, 0) << kv.key << " has no lease";
    if (kv.key.ends_with("/b")) lease_of_b = kv.lease;
    else leases.insert(kv.lease);
  }
  EXPECT_EQ(leases.size(), 1u) << "twenty keys of one hour, one lease";
  EXPECT_FALSE(leases.count(lease_of_b)) << "another hour, another lease";
  // The lease lives until its hour is over, not for ever.
  auto ttl = store->client().TimeToLive(*leases.begin());
  ASSERT_TRUE(ttl) << ttl.error().message;
  const auto until_hour_end =
      std::chrono::duration_cast<std::chrono::seconds>(hour + 60min - std::chrono::system_clock::now()).count();
  EXPECT_GE(*ttl, until_hour_end - 5);
  EXPECT_LE(*ttl, until_hour_end + 120);
}

TEST_F(EtcdStoreTest, AKeyWhoseLeaseEndedIsGoneAndTheEventIsNewAgain) {
  store::EtcdStore::Options options;
  options.client.endpoints = cluster_->ClientUrls();
  options.prefix = prefix_;
  options.dedup_bucket = 1s;
  auto store = std::move(store::EtcdStore::Open(options).value());
  ports::Changes c;
  c.processed = {{"platform", "evt", FromUnixMillis(0), FromUnixMillis(1000)}};
  ASSERT_TRUE(store->Commit(c));
  auto key = store->client().Range(prefix_ + "/events/processed/platform/evt");
  ASSERT_EQ(key->kvs.size(), 1u);
  // Revoking the lease is what its expiry does: the key goes with it.
  ASSERT_TRUE(store->client().Revoke(key->kvs.front().lease));
  EXPECT_FALSE(*store->IsProcessed("platform", "evt", FromUnixMillis(0)));
  // The store notices the lease is gone and takes a new one.
  EXPECT_TRUE(store->Commit(c));
  EXPECT_TRUE(*store->IsProcessed("platform", "evt", FromUnixMillis(0)));
}

TEST_F(EtcdStoreTest, AFencedCommitFailsOnceTheTermIsOverAndWritesNothing) {
  auto store = Open();
  auto& client = store->client();
  const std::string leader = prefix_ + "/controller/leader";
  auto lease = client.GrantLease(5s);
  ASSERT_TRUE(lease);
  auto won = client.Txn({store::etcd::CreateRevisionIs(leader, 0)},
                        {store::etcd::PutOp(leader, "me", *lease), store::etcd::GetOp(leader)});
  ASSERT_TRUE(won && won->succeeded);
  const store::EtcdStore::Fence term{leader, won->ranges[1].kvs.front().create_revision, *lease};

  ports::Changes first;
  first.instances = {testing::MakeInstance("i1")};
  first.events = {{"e1", "i1", "ccm.test", FromUnixMillis(1), "{}"}};
  ASSERT_TRUE(store->CommitFenced(first, term));

  // The key moved to another lease (same term): the fence holds the lease too.
  auto other_lease = client.GrantLease(5s);
  ASSERT_TRUE(client.Txn({}, {store::etcd::PutOp(leader, "me", *other_lease)}));
  ports::Changes moved;
  moved.instances = {testing::MakeInstance("i-moved")};
  EXPECT_EQ(store->CommitFenced(moved, term).error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(store->GetInstance({"i-moved"}).error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(client.Txn({}, {store::etcd::PutOp(leader, "me", *lease)}));

  // The lease ends (as when the leader stops renewing it); another replica takes the key.
  ASSERT_TRUE(client.Revoke(*lease));
  ASSERT_TRUE(client.Txn({store::etcd::CreateRevisionIs(leader, 0)},
                         {store::etcd::PutOp(leader, "other")})->succeeded);
  ports::Changes late;
  late.instances = {testing::MakeInstance("i2")};
  late.events = {{"e2", "i2", "ccm.test", FromUnixMillis(2), "{}"}};
  auto refused = store->CommitFenced(late, term);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(store->GetInstance({"i2"}).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store->GetOutboxStats()->published, 1);
  // Unfenced commits (the API of every replica) go on.
  EXPECT_TRUE(store->Commit(late));
}

TEST_F(EtcdStoreTest, OneLeaderAtATimeAndTheOtherTakesOverWithinTwiceTheTtl) {
  auto store = Open();
  const std::string key = prefix_ + "/controller/leader";
  std::atomic<int> working{0}, max_working{0};
  auto elected = [&] { max_working = std::max(max_working.load(), ++working); };
  auto deposed = [&] { --working; };
  store::LeaderElection a(store->client(), {key, "a", 2s}, elected, deposed);
  store::LeaderElection b(store->client(), {key, "b", 2s}, elected, deposed);
  a.Start();
  b.Start();
  const auto until = [](auto done, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return done();
  };
  ASSERT_TRUE(until([&] { return a.IsLeader() || b.IsLeader(); }, 3s));
  std::this_thread::sleep_for(1500ms);  // several renewals and tries
  EXPECT_NE(a.IsLeader(), b.IsLeader());
  EXPECT_EQ(max_working.load(), 1);
  store::LeaderElection& leader = a.IsLeader() ? a : b;
  store::LeaderElection& follower = a.IsLeader() ? b : a;
  const auto old_term = leader.Fence();
  ASSERT_TRUE(old_term);

  // The leader's lease is revoked as if it had died: the follower takes over within 2 x TTL.
  auto held = store->client().Range(key);
  ASSERT_EQ(held->kvs.size(), 1u);
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(store->client().Revoke(held->kvs.front().lease));
  ASSERT_TRUE(until([&] { return follower.IsLeader(); }, 4s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
  // The old leader notices at its next renewal and stops.
  EXPECT_TRUE(until([&] { return !leader.IsLeader(); }, 2s));
  // IsLeader turns true just before the elected callback runs: wait for the callback too.
  // A lease revoked from outside lets the follower in before the old leader's next renewal, so
  // both may work for a moment here; the fence below is what keeps the old term's writes out.
  EXPECT_TRUE(until([&] { return working.load() == 1; }, 1s)) << "working: " << working.load();
  ports::Changes c;
  c.instances = {testing::MakeInstance("late")};
  EXPECT_FALSE(store->CommitFenced(c, old_term));
  EXPECT_TRUE(store->CommitFenced(c, follower.Fence()));

  // A leader that stops resigns: the other takes over at once, not after the TTL.
  const auto resign = std::chrono::steady_clock::now();
  follower.Stop();
  ASSERT_TRUE(until([&] { return leader.IsLeader(); }, 3s));
  EXPECT_LT(std::chrono::steady_clock::now() - resign, 2s);
  leader.Stop();
  EXPECT_EQ(working.load(), 0);
}

TEST_F(EtcdStoreTest, ACampaignWhoseAnswerWasLostFindsItsOwnKeyAndLeads) {
  // The campaign's write is applied by the first member, which loses the answer; sent again
  // to the next member, it finds the key taken, by this replica's own name and lease.
  const std::string real = cluster_->ClientUrls().front();
  LosingMember flaky(real);
  store::etcd::Client client({{flaky.Url(), real}, 300ms, 2s});
  std::atomic<int> elected{0};
  store::LeaderElection election(client, {prefix_ + "/lost-campaign", "a", 3s}, [&] { ++elected; }, [] {});
  election.Start();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!election.IsLeader() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(election.IsLeader()) << "its own key, kept alive by its own lease, locked it out";
  EXPECT_EQ(flaky.lost(), 1);
  EXPECT_EQ(elected.load(), 1);
  election.Stop();
}

TEST_F(EtcdStoreTest, ALeaderCutOffFromEtcdStopsBeforeItsLeaseCouldPassToAnother) {
  testing::TempDir own_dir;
  auto own = std::make_unique<testing::EtcdCluster>(own_dir.path());
  store::etcd::Client client({own->ClientUrls(), 200ms, 500ms});
  std::atomic<bool> working{false};
  store::LeaderElection leader(client, {"/leader", "a", 3s}, [&] { working = true; }, [&] { working = false; });
  leader.Start();
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (!working && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(working);
  // etcd goes away: the lease can no longer be renewed. The term ends after two thirds of
  // the TTL at the latest (2 s), before the lease could expire and another replica win.
  const auto cut = std::chrono::steady_clock::now();
  own.reset();
  while (leader.IsLeader() && std::chrono::steady_clock::now() - cut < 5s) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(leader.IsLeader());
  EXPECT_LE(std::chrono::steady_clock::now() - cut, 2100ms);
  EXPECT_FALSE(leader.Fence());
  // The work stops at the next round that fails to renew (half the TTL after the last one).
  while (working && std::chrono::steady_clock::now() - cut < 5s) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(working);
  leader.Stop();
}

TEST_F(EtcdStoreTest, WhatOneReplicaRemembersNeverLetsAStaleWriteThrough) {
  auto a = Open();
  auto b = Open();
  ports::Changes create;
  create.instances = {testing::MakeInstance("i1")};
  ASSERT_TRUE(a->Commit(create));
  LabletInstance seen_by_a = a->GetInstance({"i1"}).value();  // a remembers version 1
  LabletInstance by_b = b->GetInstance({"i1"}).value();
  by_b.state = InstanceState::kScheduled;
  ports::Changes moved;
  moved.instances = {by_b};
  ASSERT_TRUE(b->Commit(moved));  // version 2, SCHEDULED, written by the other replica

  seen_by_a.owner_id = "stale";
  ports::Changes stale;
  stale.instances = {seen_by_a};
  auto refused = a->Commit(stale);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::kStaleVersion);
  EXPECT_EQ(b->GetInstance({"i1"})->owner_id, "owner-1");

  // Read again, a's next write keeps the state index right (SCHEDULED -> RUNNING).
  LabletInstance fresh = a->GetInstance({"i1"}).value();
  fresh.state = InstanceState::kRunning;
  ports::Changes run;
  run.instances = {fresh};
  ASSERT_TRUE(a->Commit(run));
  ports::InstanceFilter scheduled, running;
  scheduled.state = InstanceState::kScheduled;
  running.state = InstanceState::kRunning;
  EXPECT_TRUE(b->ListInstances(scheduled, {})->items.empty());
  EXPECT_EQ(b->ListInstances(running, {})->items.size(), 1u);
  auto index = b->client().Range(prefix_ + "/instances-by-state/", store::etcd::PrefixEnd(prefix_ + "/instances-by-state/"));
  ASSERT_EQ(index->kvs.size(), 1u);
  EXPECT_EQ(index->kvs.front().key, prefix_ + "/instances-by-state/RUNNING/i1");
}

TEST_F(EtcdStoreTest, AWatchSeesWhatAnotherReplicaCommits) {
  auto mine = Open();
  auto theirs = Open();
  std::atomic<int> woken{0};
  store::etcd::Watch watch(mine->client().options(), prefix_ + "/", [&] { ++woken; });
  watch.Start();
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (watch.batches() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  const int before = woken.load();
  ports::Changes c;
  c.instances = {testing::MakeInstance("from-the-other-replica")};
  ASSERT_TRUE(theirs->Commit(c));
  while (woken.load() == before && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_GT(woken.load(), before);
  watch.Stop();
}

// What a replica watches: the pending and held indexes, puts only. A commit with events from
// another replica wakes it, an event held behind a dead letter included; a commit without
// events, a delivery (which deletes the event's pending key) and a dead letter do not.
TEST_F(EtcdStoreTest, WatchesOnTheEventIndexesWakeForAnotherReplicasEventsOnly) {
  auto mine = Open();
  auto theirs = Open();
  std::vector<std::unique_ptr<store::etcd::Watch>> watches;
  for (const auto& prefix : mine->EventIndexPrefixes())
    watches.push_back(std::make_unique<store::etcd::Watch>(mine->client().options(), prefix, [] {},
                                                           store::etcd::WatchFor::kPuts));
  const auto batches = [&] {
    std::uint64_t n = 0;
    for (const auto& w : watches) n += w->batches();
    return n;
  };
  // Waits for `n` batches, then a little longer, so that one too many shows.
  const auto settled_at = [&](std::uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (batches() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    std::this_thread::sleep_for(300ms);
    return batches();
  };
  for (auto& w : watches) w->Start();
  ASSERT_EQ(settled_at(2), 2u) << "each watch reports its creation once";

  ports::Changes quiet;
  quiet.instances = {testing::MakeInstance("no-events")};
  ASSERT_TRUE(theirs->Commit(quiet));
  EXPECT_EQ(settled_at(2), 2u) << "a commit without events";

  ports::Changes loud;
  loud.instances = {testing::MakeInstance("with-an-event")};
  loud.events = {{"e1", "with-an-event", "ccm.test", FromUnixMillis(1), "{}"}};
  ASSERT_TRUE(theirs->Commit(loud));
  EXPECT_EQ(settled_at(3), 3u) << "a commit with an event";

  const auto deliver = [&](const std::string& id, ports::DeliveryState state) {
    auto due = theirs->DueEvents(FromUnixMillis(10), 10);
    ASSERT_TRUE(due);
    ASSERT_EQ(due->size(), 1u);
    ASSERT_EQ(due->front().event.id, id);
    ports::Changes c;
    c.deliveries = {{due->front().seq, state, 1, FromUnixMillis(3), state == ports::DeliveryState::kDead ? "refused" : "", id}};
    ASSERT_TRUE(theirs->Commit(c));
  };
  deliver("e1", ports::DeliveryState::kDelivered);
  EXPECT_EQ(settled_at(3), 3u) << "a delivery";

  ports::Changes doomed;
  doomed.events = {{"e2", "with-an-event", "ccm.test", FromUnixMillis(2), "{}"}};
  ASSERT_TRUE(theirs->Commit(doomed));
  EXPECT_EQ(settled_at(4), 4u) << "a second event";
  deliver("e2", ports::DeliveryState::kDead);
  EXPECT_EQ(settled_at(4), 4u) << "a dead letter";

  ports::Changes behind;
  behind.events = {{"e3", "with-an-event", "ccm.test", FromUnixMillis(3), "{}"}};
  ASSERT_TRUE(theirs->Commit(behind));
  ASSERT_EQ(theirs->GetOutboxStats()->pending, 0) << "e3 is held behind e2's dead letter";
  EXPECT_EQ(settled_at(5), 5u) << "an event held behind a dead letter";
  for (auto& w : watches) w->Stop();
}

// One replica's use cases and reconcilers over its own connection to the shared store.
struct Replica {
  explicit Replica(std::unique_ptr<store::EtcdStore> s)
      : store(std::move(s)),
        events(ids, "ccm-test"),
        deps{*store, clock, ids, events},
        definitions(deps),
        instances(deps),
        workers(deps),
        collection(deps, platform, {}),
        reconcilers(deps, instances, collection, cml, nullptr, {}),
        receiver(deps, {}, received) {}
  std::unique_ptr<store::EtcdStore> store;
  os::SystemClock clock;
  os::UuidV7Generator ids;
  app::EventFactory events;
  app::Deps deps;
  app::DefinitionService definitions;
  app::InstanceService instances;
  app::WorkerService workers;
  testing::Unreachable platform;
  app::CollectionService collection;
  testing::NoCml cml;
  app::Reconcilers reconcilers;
  app::ReceiveMetrics received;
  app::EventReceiver receiver;
};

// A PENDING lablet of `def` for `owner`, its hour starting now, created by `r`.
InstanceId Booked(Replica& r, const DefinitionId& def, const std::string& owner = "candidate") {
  InstanceDraft d;
  d.definition_id = def;
  d.owner_id = owner;
  d.timeslot_start = r.clock.Now();
  d.timeslot_end = d.timeslot_start + 60min;
  return r.instances.Create(d, "test").value().id;
}

// A lablet of `def` on `worker`, created by `r` and moved by it to `state` (at most RUNNING).
InstanceId LabletIn(Replica& r, const DefinitionId& def, const WorkerId& worker, InstanceState state) {
  const InstanceId id = Booked(r, def);
  EXPECT_TRUE(r.instances.Schedule(id, worker, "test"));
  for (InstanceState to : {InstanceState::kInstantiating, InstanceState::kRunning}) {
    if (r.store->GetInstance(id)->state == state) break;
    EXPECT_TRUE(r.instances.Transition(id, to, "test", "test", std::nullopt, std::nullopt));
  }
  EXPECT_EQ(r.store->GetInstance(id)->state, state);
  return id;
}

// The platform's report that grading `id` failed, as event `event_id`.
cloudevents::CloudEvent GradingFailed(const std::string& event_id, const InstanceId& id) {
  cloudevents::CloudEvent event;
  event.id = event_id;
  event.source = "/platform";
  event.type = "assessment.grading.failed";
  event.data = nlohmann::json{{"instance_id", id.value}, {"error_code", "ENGINE_DOWN"}};
  return event;
}

TEST_F(EtcdStoreTest, AMoveBuildsOnWhatThisReplicaWroteInOneRequestAndNeverOnAStaleRecall) {
  Replica a(Open()), b(Open());
  const auto def = a.definitions.Create(testing::TwoPortDraft(1)).value().id;
  const auto w = a.workers.Register(testing::MakeWorkerDraft("w1", {1000, 1000, 0}, 1000), "test").value().id;
  const InstanceId id = LabletIn(a, def, w, InstanceState::kRunning);

  // What a wrote last is what its next move builds on: the move is its one guarded write.
  for (InstanceState to : {InstanceState::kStopping, InstanceState::kStopped}) {
    const auto calls = a.store->client().calls();
    auto moved = a.instances.Transition(id, to, "test", "test", std::nullopt, std::nullopt);
    ASSERT_TRUE(moved) << moved.error().message;
    EXPECT_EQ(a.store->client().calls() - calls, 1u) << ToString(to);
  }

  // b moves it on (STOPPED -> RUNNING). From what a remembers (STOPPED), STOPPING would be
  // refused; the refusal is checked against the store, and the move is decided again on it.
  ASSERT_TRUE(b.instances.Transition(id, InstanceState::kRunning, "test", "test", std::nullopt, std::nullopt));
  auto moved = a.instances.Transition(id, InstanceState::kStopping, "test", "test", std::nullopt, std::nullopt);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(moved->state, InstanceState::kStopping);
  EXPECT_EQ(b.store->GetInstance(id)->version, moved->version);

  // b moves it on again (STOPPING -> STOPPED). From what a remembers (STOPPING), STOPPED is
  // allowed, but the write is guarded by the version a read: it is refused, and decided
  // again on the stored STOPPED, where it is a conflict. Nothing is written.
  ASSERT_TRUE(b.instances.Transition(id, InstanceState::kStopped, "test", "test", std::nullopt, std::nullopt));
  const std::int64_t stored = b.store->GetInstance(id)->version;
  auto again = a.instances.Transition(id, InstanceState::kStopped, "test", "test", std::nullopt, std::nullopt);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict) << again.error().message;
  EXPECT_EQ(b.store->GetInstance(id)->version, stored);
}

TEST_F(EtcdStoreTest, ALabletPurgedByAnotherReplicaIsNotFoundThoughThisOneRemembersIt) {
  Replica a(Open()), b(Open());
  const auto def = a.definitions.Create(testing::TwoPortDraft(1)).value().id;
  const auto w = a.workers.Register(testing::MakeWorkerDraft("w1", {1000, 1000, 0}, 1000), "test").value().id;
  const InstanceId moved_id = LabletIn(a, def, w, InstanceState::kRunning);  // a remembers both RUNNING
  const InstanceId event_id = LabletIn(a, def, w, InstanceState::kRunning);
  // b ends both and purges them.
  for (const auto& id : {moved_id, event_id}) {
    LabletInstance ended = b.store->GetInstance(id).value();
    ended.state = InstanceState::kTerminated;
    ended.terminated_at = b.clock.Now() - 2h;
    ports::Changes end;
    end.instances = {ended};
    ASSERT_TRUE(b.store->Commit(end));
  }
  auto purged = b.store->Purge(b.clock.Now() - 1h, b.clock.Now() - 1h, 10);
  ASSERT_TRUE(purged) << purged.error().message;
  ASSERT_EQ(purged->instances, 2);

  // A move that what a remembers allows: its guarded write finds the key gone.
  auto moved = a.instances.Transition(moved_id, InstanceState::kStopping, "test", "test", std::nullopt, std::nullopt);
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, ErrorCode::kNotFound) << moved.error().message;
  // An event refused on what a remembers: the confirmation finds the lablet gone.
  const cloudevents::CloudEvent event = GradingFailed("e1", event_id);
  auto outcome = a.receiver.Receive(event);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, ErrorCode::kNotFound) << outcome.error().message;
  EXPECT_EQ(outcome.error().field, "data.instance_id");
  EXPECT_FALSE(*a.store->IsProcessed("/platform", "e1", a.clock.Now()));
}

TEST_F(EtcdStoreTest, AnEventRefusedOnWhatThisReplicaRemembersIsDecidedAgainOnTheStoredLablet) {
  Replica a(Open()), b(Open());
  const auto def = a.definitions.Create(testing::TwoPortDraft(1)).value().id;
  const auto w = a.workers.Register(testing::MakeWorkerDraft("w1", {1000, 1000, 0}, 1000), "test").value().id;
  const InstanceId id = LabletIn(a, def, w, InstanceState::kRunning);  // a remembers RUNNING
  ASSERT_TRUE(b.instances.Transition(id, InstanceState::kCollecting, "test", "test", std::nullopt, std::nullopt));

  // From RUNNING a grading failure is refused; the stored lablet is COLLECTING, where it applies.
  const cloudevents::CloudEvent event = GradingFailed("e1", id);
  auto outcome = a.receiver.Receive(event);
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(*outcome, app::EventReceiver::Outcome::kApplied);
  EXPECT_EQ(b.store->GetInstance(id)->state, InstanceState::kStopping);
  EXPECT_EQ(a.received.rejected.load(), 0u);
}

TEST_F(EtcdStoreTest, TwoReplicasSchedulingAtOnceNeverHandOutAPortTwice) {
  Replica a(Open()), b(Open());
  const auto def = a.definitions.Create(testing::TwoPortDraft(1)).value();
  const auto w1 = a.workers.Register(testing::MakeWorkerDraft("w1", {1000, 1000, 0}, 1000), "test").value().id;
  const auto w2 = b.workers.Register(testing::MakeWorkerDraft("w2", {1000, 1000, 0}, 1000), "test").value().id;
  std::vector<InstanceId> ids;
  for (int n = 0; n < 30; ++n) ids.push_back(Booked(n % 2 ? a : b, def.id, "candidate-" + std::to_string(n)));
  std::thread ta([&] { a.reconcilers.ScheduleOnce(); });
  std::thread tb([&] { b.reconcilers.ScheduleOnce(); });
  ta.join();
  tb.join();
  std::map<std::string, std::set<int>> ports;  // worker -> ports handed out
  size_t handed_out = 0;
  for (const auto& id : ids) {
    const LabletInstance i = a.store->GetInstance(id).value();
    ASSERT_EQ(i.state, InstanceState::kScheduled);
    for (const auto& [_, port] : i.allocated_ports) {
      EXPECT_TRUE(ports[i.worker_id->value].insert(port).second) << "port " << port << " twice on " << i.worker_id->value;
      ++handed_out;
    }
  }
  EXPECT_EQ(handed_out, 60u);
  // The port keys say the same as the workers.
  size_t keys = 0;
  for (const auto& w : {w1, w2}) {
    const std::string at = prefix_ + "/ports/" + w.value + "/";
    auto r = a.store->client().Range(at, store::etcd::PrefixEnd(at));
    keys += r->kvs.size();
    EXPECT_EQ(r->kvs.size(), a.store->GetWorker(w)->port_allocations.size() * 2);
  }
  EXPECT_EQ(keys, 60u);
}

// etcd's default bound on a transaction's operations (128) is below what 16 placements of a
// lab with six ports take: such a batch is refused whole, and the scheduler then commits the
// placements one by one.
TEST_F(EtcdStoreTest, PlacementsTooManyForOneTransactionAreCommittedOneByOne) {
  testing::TempDir dir;
  testing::EtcdCluster bounded(dir.path(), testing::EtcdClusterOptions{1, std::nullopt, {"--max-txn-ops=128"}});
  store::EtcdStore::Options options;
  options.client.endpoints = bounded.ClientUrls();
  options.prefix = prefix_;
  auto opened = store::EtcdStore::Open(options);
  ASSERT_TRUE(opened) << opened.error().message;
  Replica r(std::move(opened.value()));
  DefinitionDraft draft = testing::TwoPortDraft(1);
  draft.lab_yaml = "nodes:\n  - id: n0\n    label: r1\n    tags: ['serial:${PORT_A}', 'serial:${PORT_B}', 'serial:${PORT_C}',"
                   " 'vnc:${PORT_D}', 'vnc:${PORT_E}', 'vnc:${PORT_F}']\n";
  const auto def = r.definitions.Create(draft).value();
  const auto w = r.workers.Register(testing::MakeWorkerDraft("w", {1000, 1000, 0}, 1000), "test").value().id;
  std::vector<InstanceId> ids;
  for (int n = 0; n < 16; ++n) ids.push_back(Booked(r, def.id, "candidate-" + std::to_string(n)));
  const std::int64_t worker_version = r.store->GetWorker(w)->version;
  auto together = r.instances.ScheduleBatch(ids, w, "test");
  ASSERT_FALSE(together) << "this etcd took 16 placements of six ports in one transaction";
  // Nothing of the refused batch was written.
  EXPECT_EQ(r.store->GetWorker(w)->version, worker_version);
  for (const auto& id : ids) EXPECT_EQ(r.store->GetInstance(id)->state, InstanceState::kPending);
  EXPECT_EQ(r.reconcilers.ScheduleOnce(), 16);
  std::set<int> ports;
  for (const auto& id : ids) {
    const LabletInstance i = r.store->GetInstance(id).value();
    EXPECT_EQ(i.state, InstanceState::kScheduled);
    for (const auto& [_, port] : i.allocated_ports) EXPECT_TRUE(ports.insert(port).second) << port;
  }
  EXPECT_EQ(ports.size(), 96u);
}

}  // namespace
}  // namespace ccm
