#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "ports/outbox.h"
#include "ports/page.h"
#include "ports/store.h"
#include "store/etcd/etcd_client.h"

namespace ccm::store {

// The shared Store: every replica of ccm reads and writes one etcd cluster. Keys, under
// `prefix` (default /ccm):
//   definitions/{id}/{version}, definition-names/{name}       lablet definitions
//   instances/{id}, instances-by-state/{state}/{id}           instances and their state index
//   workers/{id}, ports/{worker}/{port}                       workers and their allocated ports
//   outbox/events/{event id}, outbox/pending/{event id},       the outbox and the indexes of
//     outbox/dead/{event id}, outbox/held/{event id}          its pending, dead and held events
//   outbox/subjects/{subject}/{event id}                       each subject's events
//   outbox/blocked/{subject}                                  present while it has a dead letter
//   events/processed/{source}/{id}                            consumed events' dedup keys
//   controller/leader                                         the leader's lease-backed key
// A commit reads the keys it changes (one range transaction), checks them, then writes
// everything in one transaction guarded by the mod revision of each key read: a concurrent
// write makes the transaction fail and the commit is decided again on fresh reads. An
// instance or worker read or written here at the version being committed is not read again:
// its mod revision and indexed fields are remembered, and the guard is the same. An outbox
// event's seq is the revision of its commit (etcd's global commit order) and its place in
// the commit, so commits that touch different aggregates never conflict. Dedup keys carry a
// lease shared by every key expiring in the same hour. Delivery bookkeeping alone is written
// in transactions of at most 40 events. A dead-lettering or a replay reads its subject's
// events and holds or releases them in the same transaction, guarded against a new event
// of the subject written meanwhile. Thread-safe.
class EtcdStore final : public ports::Store, public ports::Outbox {
 public:
  struct Options {
    etcd::ClientOptions client;
    std::string prefix = "/ccm";
    std::chrono::seconds dedup_bucket{3600};  // dedup keys expiring within one bucket share a lease
    // Called after a commit that wrote outbox events; must not block (wakes the dispatcher).
    std::function<void()> on_events_committed;
    // The real time, for lease TTLs (the stored timestamps come from the app's clock).
    std::function<std::chrono::system_clock::time_point()> wall_clock = [] { return std::chrono::system_clock::now(); };
  };

  // Connects and checks that etcd answers. Errors: unavailable.
  static Result<std::unique_ptr<EtcdStore>> Open(Options options);
  ~EtcdStore() override;

  Result<domain::LabletDefinition> GetDefinition(const domain::DefinitionId& id,
                                                 const std::optional<std::string>& version) override;
  Result<ports::PageOf<domain::LabletDefinition>> ListDefinitions(const ports::DefinitionFilter& filter,
                                                                const ports::Page& page) override;
  Result<std::vector<domain::LabletDefinition>> ListDefinitionVersions(const domain::DefinitionId& id) override;
  Result<std::optional<domain::DefinitionId>> FindDefinitionByName(const std::string& name) override;
  Result<domain::LabletInstance> GetInstance(const domain::InstanceId& id) override;
  // From what this process last committed or read for a change of it (at most
  // kInstancesKept of them), else one read.
  Result<domain::LabletInstance> GetInstanceForUpdate(const domain::InstanceId& id) override;
  // One read of the whole instance, which is then kept for GetInstanceForUpdate: a decision
  // that reads the head first and then the instance reads etcd once.
  Result<ports::InstanceHead> GetInstanceHead(const domain::InstanceId& id) override;
  static constexpr size_t kInstancesKept = 8192;
  Result<ports::PageOf<domain::LabletInstance>> ListInstances(const ports::InstanceFilter& filter,
                                                            const ports::Page& page) override;
  Result<std::map<domain::InstanceState, ports::StateCount>> CountInstances() override;
  Result<domain::Worker> GetWorker(const domain::WorkerId& id) override;
  // One read of the worker's value, parsed only as far as its hostname (a move to RUNNING
  // names it; the reservations and ports after it are not built).
  Result<std::string> GetWorkerHostname(const domain::WorkerId& id) override;
  Result<ports::PageOf<domain::Worker>> ListWorkers(const ports::Page& page) override;
  Status Commit(const ports::Changes& changes) override;
  Result<std::optional<std::string>> ProcessedValue(const std::string& source, const std::string& id,
                                                    Timestamp now) override;
  Result<std::vector<ports::OutboxRecord>> DueEvents(Timestamp now, int limit) override;
  Result<ports::PageOf<ports::OutboxRecord>> ListEvents(const ports::EventFilter& filter, const ports::Page& page) override;
  Result<ports::OutboxRecord> GetEvent(const std::string& event_id) override;
  Result<ports::OutboxStats> GetOutboxStats() override;
  Result<std::int64_t> LastSeq() override;
  Status Ping() override;
  Result<ports::PurgeCounts> Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) override {
    return PurgeFenced(terminated_before, delivered_before, limit, std::nullopt);
  }

  // The key a fence names: the leader key, held by `create_revision` (its creation, i.e. one
  // term of one leader) on `lease` (the leader's lease; 0 checks no lease). A fenced commit
  // fails with unavailable once the key is gone, belongs to another term, or has lost the lease.
  struct Fence {
    std::string key;
    std::int64_t create_revision = 0;
    std::int64_t lease = 0;
  };
  Status CommitFenced(const ports::Changes& changes, const std::optional<Fence>& fence);
  // Purge, fenced like CommitFenced. Each removal is guarded by the mod revision read, so a
  // record that changed in between stays (for the next purge).
  Result<ports::PurgeCounts> PurgeFenced(Timestamp terminated_before, Timestamp delivered_before, int limit,
                                       const std::optional<Fence>& fence);

  etcd::Client& client() { return client_; }
  const std::string& prefix() const { return options_.prefix; }
  // Where a commit puts a key (with an empty value) for each new event: the pending index,
  // or the held index when the event's subject has a dead letter. What a replica watches to
  // learn that another one committed events.
  std::vector<std::string> EventIndexPrefixes() const;

  // Commits retried because a key changed between their read and their write.
  std::uint64_t retries() const { return retries_.load(); }

 private:
  explicit EtcdStore(Options options);
  // What a read saw of an instance or a worker key: enough to guard a commit on it (its mod
  // revision) and to keep its indexes (its state, its ports) without reading it again.
  struct Known {
    std::int64_t mod_revision = 0;
    std::int64_t version = 0;
    std::string state;                 // an instance's
    std::map<int, std::string> ports;  // a worker's: port -> the instance holding it
    // An instance's whole value, kept for GetInstanceForUpdate when this process committed
    // it or read it for a change; null otherwise.
    std::shared_ptr<const domain::LabletInstance> instance;
  };
  void Remember(const std::string& key, Known known);
  // Drops what is known of `key`: it was found absent (purged, possibly by another replica).
  void Forget(const std::string& key);
  // Keeps `i`, just read for a change, with what is known of its key at its version.
  void KeepForUpdate(const std::string& key, const domain::LabletInstance& i);
  // The instance or worker stored at `kv`, remembered for the next commit on it.
  Result<domain::LabletInstance> ReadInstance(const etcd::KeyValue& kv);
  Result<domain::Worker> ReadWorker(const etcd::KeyValue& kv);
  std::optional<Known> Recall(const std::string& key, std::int64_t version);

  // One commit attempt, in three steps (etcd_store.cc): read what the commit depends on, decide
  // (no I/O) the guards and operations or the refusal, write them in one guarded transaction.
  // With `optimistic`, instances and workers read recently at the commit's versions are not
  // read again, and new outbox events are assumed absent; the guards catch anything else.
  struct CommitKeys;
  struct CommitReads;
  struct CommitPlan;
  class CommitDecision;
  Result<bool> TryCommit(const ports::Changes& changes, const std::optional<Fence>& fence, bool optimistic);
  Result<CommitReads> ReadForCommit(const ports::Changes& changes, bool optimistic);
  Status KnowWhatWasRead(const ports::Changes& changes, CommitReads& reads);
  Status ReadRuleSubjects(const ports::Changes& changes, CommitReads& reads);
  Result<bool> WriteCommit(const ports::Changes& changes, CommitPlan plan, const std::optional<Fence>& fence);
  Result<std::int64_t> LeaseFor(Timestamp expires_at);
  Result<std::vector<etcd::KeyValue>> GetMany(const std::vector<std::string>& keys);
  Status SweepKeys(Timestamp expired_by);

  std::string Key(std::string_view area) const { return options_.prefix + "/" + std::string(area); }

  Options options_;
  etcd::Client client_;
  std::mutex lease_mu_;
  std::map<std::int64_t, std::int64_t> bucket_leases_;  // bucket -> lease id
  std::atomic<std::uint64_t> retries_{0};
  std::mutex known_mu_;
  std::unordered_map<std::string, Known> known_;
  size_t known_instances_ = 0;  // entries of known_ that hold an instance
};

// The store as the leader writes it: reads pass through, and every commit is fenced by the
// current leader term, so that a replica that lost the lead cannot commit what it decided
// as leader. Without a term (not leading), commits fail with unavailable. It is a Store
// only: the outbox is read from the EtcdStore itself (a read needs no fence).
class FencedStore final : public ports::Store {
 public:
  FencedStore(EtcdStore& store, std::function<std::optional<EtcdStore::Fence>()> fence)
      : store_(store), fence_(std::move(fence)) {}

  Result<domain::LabletDefinition> GetDefinition(const domain::DefinitionId& id,
                                                 const std::optional<std::string>& version) override {
    return store_.GetDefinition(id, version);
  }
  Result<ports::PageOf<domain::LabletDefinition>> ListDefinitions(const ports::DefinitionFilter& filter,
                                                                const ports::Page& page) override {
    return store_.ListDefinitions(filter, page);
  }
  Result<std::vector<domain::LabletDefinition>> ListDefinitionVersions(const domain::DefinitionId& id) override {
    return store_.ListDefinitionVersions(id);
  }
  Result<std::optional<domain::DefinitionId>> FindDefinitionByName(const std::string& name) override {
    return store_.FindDefinitionByName(name);
  }
  Result<domain::LabletInstance> GetInstance(const domain::InstanceId& id) override { return store_.GetInstance(id); }
  Result<domain::LabletInstance> GetInstanceForUpdate(const domain::InstanceId& id) override {
    return store_.GetInstanceForUpdate(id);
  }
  Result<ports::InstanceHead> GetInstanceHead(const domain::InstanceId& id) override {
    return store_.GetInstanceHead(id);
  }
  Result<ports::PageOf<domain::LabletInstance>> ListInstances(const ports::InstanceFilter& filter,
                                                            const ports::Page& page) override {
    return store_.ListInstances(filter, page);
  }
  Result<std::map<domain::InstanceState, ports::StateCount>> CountInstances() override {
    return store_.CountInstances();
  }
  Result<domain::Worker> GetWorker(const domain::WorkerId& id) override { return store_.GetWorker(id); }
  Result<std::string> GetWorkerHostname(const domain::WorkerId& id) override { return store_.GetWorkerHostname(id); }
  Result<ports::PageOf<domain::Worker>> ListWorkers(const ports::Page& page) override { return store_.ListWorkers(page); }
  Status Commit(const ports::Changes& changes) override {
    auto fence = fence_();
    if (!fence) return Error::Unavailable("store: this replica is not the leader; its background work commits nothing");
    return store_.CommitFenced(changes, fence);
  }
  Result<std::optional<std::string>> ProcessedValue(const std::string& source, const std::string& id,
                                                    Timestamp now) override {
    return store_.ProcessedValue(source, id, now);
  }
  Status Ping() override { return store_.Ping(); }
  Result<ports::PurgeCounts> Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) override {
    auto fence = fence_();
    if (!fence) return Error::Unavailable("store: this replica is not the leader; its background work commits nothing");
    return store_.PurgeFenced(terminated_before, delivered_before, limit, fence);
  }

 private:
  EtcdStore& store_;
  std::function<std::optional<EtcdStore::Fence>()> fence_;
};

}  // namespace ccm::store
