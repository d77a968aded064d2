#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "domain/definition.h"
#include "domain/instance.h"
#include "domain/result.h"
#include "domain/time.h"
#include "domain/worker.h"
#include "ports/outbox.h"
#include "ports/page.h"

namespace ccm::ports {

struct DefinitionFilter {
  std::optional<std::string> name;
  bool include_deleted = false;
};

struct InstanceFilter {
  std::optional<domain::InstanceState> state;
  std::optional<std::string> worker_id;
  std::optional<std::string> owner_id;
  // Time bounds, each inclusive, for the sweeps that act only on what is due: instances whose
  // timeslot starts at or before `starts_by`, whose timeslot ends at or before `ends_by`, and
  // whose pod assignment is due at or before `pod_due_by` (one with no pod due never matches).
  // A store answers them from an index, not by reading every instance of the state.
  std::optional<Timestamp> starts_by;
  std::optional<Timestamp> ends_by;
  std::optional<Timestamp> pod_due_by;
};

// How many instances are in one state, and when the one longest in it entered it (the last
// entry of its state history; its created_at when it has none).
struct StateCount {
  std::int64_t count = 0;
  std::optional<Timestamp> oldest_entered_at;
};

// The key of a consumed event, kept until `expires_at` so that a redelivery changes nothing.
struct ProcessedKey {
  std::string source;
  std::string id;
  Timestamp processed_at;
  Timestamp expires_at;  // a key expired before `processed_at` of a new one counts as absent
  std::string value = {};  // kept with the key: an idempotent request's first answer; empty for an event
};

// An instance's state and version as stored, without the rest of it.
struct InstanceHead {
  domain::InstanceState state = domain::InstanceState::kPending;
  std::int64_t version = 0;
};

// What one Store::Purge removed.
struct PurgeCounts {
  int instances = 0;
  int events = 0;
};

// Everything one use case writes, committed together or not at all.
struct Changes {
  // New definition versions; (id, version) must not exist yet, and a name belongs to one id.
  std::vector<domain::LabletDefinition> new_definitions;
  // Definitions to soft-delete (every version).
  std::vector<domain::DefinitionId> deleted_definitions;
  // Instances and workers to write. Each one's `version` is the version it was read at
  // (0 for a new one); the stored version becomes version + 1.
  std::vector<domain::LabletInstance> instances;
  std::vector<domain::Worker> workers;
  std::vector<OutboxEvent> events;
  std::vector<ProcessedKey> processed;
  std::vector<DeliveryUpdate> deliveries;
  // Removes the processed-event keys that expired at or before this time.
  std::optional<Timestamp> sweep_keys_expired_by;

  bool empty() const {
    return new_definitions.empty() && deleted_definitions.empty() && instances.empty() && workers.empty() &&
           events.empty() && processed.empty() && deliveries.empty() && !sweep_keys_expired_by;
  }
};

// Durable state, outbox and dedup records: the aggregates, the one write (Commit) and the
// processed-event keys. The outbox's events are read through the Outbox port
// (ports/outbox.h), which every store implements beside this one. Implementations are
// thread-safe; reads see every commit that returned before they started.
class Store {
 public:
  virtual ~Store() = default;

  // The given version, or the latest one (semver precedence) when `version` is empty.
  // Errors: not_found.
  virtual Result<domain::LabletDefinition> GetDefinition(const domain::DefinitionId& id,
                                                         const std::optional<std::string>& version) = 0;
  // The latest version of each definition, ordered by id.
  virtual Result<PageOf<domain::LabletDefinition>> ListDefinitions(const DefinitionFilter& filter,
                                                                   const Page& page) = 0;
  // Every version, oldest first by semver. Errors: not_found when there is none.
  virtual Result<std::vector<domain::LabletDefinition>> ListDefinitionVersions(const domain::DefinitionId& id) = 0;
  // The id that carries `name`, if any.
  virtual Result<std::optional<domain::DefinitionId>> FindDefinitionByName(const std::string& name) = 0;

  // Errors: not_found.
  virtual Result<domain::LabletInstance> GetInstance(const domain::InstanceId& id) = 0;
  // The instance as a change builds on it: what this process last committed or read of it
  // when the store keeps that, else read. It may be behind another process's commit; a commit
  // built on it then fails with StaleVersion, as its version guards it. So a use case that
  // decides from it without committing the instance (a refusal, an event ignored) reads it
  // with GetInstance first, to confirm it is current. By default, GetInstance. Errors: not_found.
  virtual Result<domain::LabletInstance> GetInstanceForUpdate(const domain::InstanceId& id) { return GetInstance(id); }
  // Ordered by id (ids are time-ordered, so this is creation order).
  virtual Result<PageOf<domain::LabletInstance>> ListInstances(const InstanceFilter& filter, const Page& page) = 0;
  // Per state that has instances, but TERMINATED: their count and the oldest entry.
  virtual Result<std::map<domain::InstanceState, StateCount>> CountInstances() = 0;

  // Errors: not_found.
  virtual Result<domain::Worker> GetWorker(const domain::WorkerId& id) = 0;
  // The worker's hostname alone: what an instance's move to RUNNING names of its worker, read
  // without the worker's reservations, ports and history. By default, from GetWorker.
  // Errors: not_found.
  virtual Result<std::string> GetWorkerHostname(const domain::WorkerId& id) {
    auto worker = GetWorker(id);
    if (!worker) return worker.error();
    return std::move(worker->hostname);
  }
  virtual Result<PageOf<domain::Worker>> ListWorkers(const Page& page) = 0;

  // Writes `changes` atomically and durably: when it returns success the change survives a
  // crash. Errors: Error::StaleVersion when an aggregate's version is stale (or it exists and
  // version was 0); Error::Duplicate when a processed key exists;
  // conflict with field "reservation_id" when a new instance names a reservation that an
  // instance not yet TERMINATED holds (an instance gives its reservation up as it terminates);
  // conflict with field "version"/"name" for a definition version that exists or a name
  // taken by another id; not_found for a delivery update of an unknown seq; unavailable when
  // the store cannot be written. On error nothing of `changes` is written. A new outbox event
  // is pending, or held when its subject has a dead letter; delivery updates keep the held
  // rule of DeliveryState (see DeliveryUpdate), touching only the subjects they name.
  virtual Status Commit(const Changes& changes) = 0;
  // Commit without waiting: `then` is called once with what Commit would have returned, on
  // the thread that commits (this one, before CommitThen returns, for a store that commits
  // on the caller's thread). `then` must not block, nor call Commit or CommitThen: it hands
  // the outcome on. For a caller that must not hold a thread while a commit waits for its
  // fsync. By default, Commit on this thread.
  virtual void CommitThen(Changes changes, std::function<void(Status)> then) { then(Commit(changes)); }
  // The state and version of the instance `id` as stored now, without its body: what a
  // decision reads that needs no more of it (ConfirmCurrent, to check that a decision was made
  // on the current instance; an event the instance is already past). By default, read from
  // GetInstance. Errors: not_found.
  virtual Result<InstanceHead> GetInstanceHead(const domain::InstanceId& id) {
    auto instance = GetInstance(id);
    if (!instance) return instance.error();
    return InstanceHead{instance->state, instance->version};
  }

  // The value kept with (source, id), if it was processed and its key has not expired at `now`.
  virtual Result<std::optional<std::string>> ProcessedValue(const std::string& source, const std::string& id,
                                                            Timestamp now) = 0;
  // Whether (source, id) was processed and its key has not expired at `now`. Not virtual: a
  // store answers it through ProcessedValue, and one that declared its own would hide this.
  Result<bool> IsProcessed(const std::string& source, const std::string& id, Timestamp now) {
    auto value = ProcessedValue(source, id, now);
    if (!value) return value.error();
    return value->has_value();
  }

  // Succeeds when the store can be read.
  virtual Status Ping() = 0;
  // Retention: removes up to `limit` TERMINATED instances that terminated before
  // `terminated_before`, and up to `limit` delivered outbox events delivered before
  // `delivered_before` (never a pending, held or dead-lettered one), all in one write.
  // Counts of events published stay as they were. Returns how many of each went: fewer than
  // `limit` means none older is left. Errors: unavailable.
  virtual Result<PurgeCounts> Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) = 0;
};

}  // namespace ccm::ports
