#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/definition.h"
#include "domain/instance.h"
#include "domain/pod.h"
#include "domain/result.h"
#include "domain/worker.h"

namespace ccm::app {

// The current time. Production reads the system clock; tests advance a fake one.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp Now() = 0;
};

// New ids for aggregates and events. Thread-safe.
class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  virtual std::string NewId() = 0;
};

// Keyset paging: `after` is the last id of the previous page ("" for the first page).
struct Page {
  int limit = 50;  // 1 to kMaxPageLimit: the API refuses any other (stores do not check it again)
  std::string after;
};
inline constexpr int kMaxPageLimit = 500;

template <typename T>
struct PageOf {
  std::vector<T> items;
  std::string next;  // pass as Page::after for the next page; empty on the last page
};

struct DefinitionFilter {
  std::optional<std::string> name;
  bool include_deleted = false;
};

struct InstanceFilter {
  std::optional<domain::InstanceState> state;
  std::optional<std::string> worker_id;
  std::optional<std::string> owner_id;
};

// One CloudEvent waiting in the outbox, already encoded in the JSON event format.
struct OutboxEvent {
  std::string id;
  std::string subject;
  std::string type;
  Timestamp time;
  std::string json;  // the whole structured-mode CloudEvent
};

// The key of a consumed event, kept until `expires_at` so that a redelivery changes nothing.
struct ProcessedKey {
  std::string source;
  std::string id;
  Timestamp processed_at;
  Timestamp expires_at;  // a key expired before `processed_at` of a new one counts as absent
  std::string value = {};  // kept with the key: an idempotent request's first answer; empty for an event
};

// Where an outbox event is in its delivery. Per subject, delivery follows seq, and a dead
// letter holds back what comes after it: an event that is not delivered is held exactly when
// an earlier event of its subject is dead. The store keeps that rule on every commit.
enum class DeliveryState {
  kPending,    // waiting to be sent (or to be retried)
  kDelivered,  // the sink accepted it
  kDead,       // given up on: a final refusal, too many attempts, or too old; an operator may replay it
  kHeld,       // behind a dead letter of its subject; released, in seq order, when that one is replayed
};
std::string_view ToString(DeliveryState s);
std::optional<DeliveryState> ParseDeliveryState(std::string_view name);

// An outbox event with its delivery bookkeeping.
struct OutboxRecord {
  std::int64_t seq = 0;  // commit order (increasing, not dense); per subject, delivery follows it
  OutboxEvent event;
  DeliveryState state = DeliveryState::kPending;
  int attempts = 0;
  Timestamp next_attempt_at;
  std::optional<Timestamp> delivered_at;
  std::optional<Timestamp> dead_at;
  std::string last_error;
};

// A change to one outbox event's delivery bookkeeping: `state` is kPending, kDelivered or kDead
// (kHeld is the store's to decide; writing it is invalid_argument). A dead letter holds its
// subject's later events. kPending with attempts 0 replays a dead event: pending again (held
// behind an earlier dead letter of its subject), and the held events after it, up to the
// subject's next dead letter, become pending with attempts 0 and keep their order.
struct DeliveryUpdate {
  std::int64_t seq = 0;
  DeliveryState state = DeliveryState::kPending;
  int attempts = 0;
  Timestamp at;               // delivered_at, dead_at, or the next attempt when pending
  std::string error;          // why the last attempt failed
  std::string event_id;       // the event's id: the etcd store finds the record by it
};

struct EventFilter {
  std::optional<std::string> subject;
  std::optional<std::string> type;
  std::optional<Timestamp> since;  // event time, inclusive
  std::optional<Timestamp> until;  // event time, exclusive
  std::optional<DeliveryState> state;
};

// Counts over the whole outbox.
struct OutboxStats {
  std::int64_t published = 0;  // events ever written
  std::int64_t pending = 0;
  std::int64_t dead = 0;
  std::int64_t held = 0;  // waiting behind a dead letter of their subject
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

// What the Assessment Platform needs to collect an instance's work.
struct CollectionRequest {
  std::string instance_id;
  std::string cml_lab_id;
  std::string worker_hostname;
};

// The Assessment Platform (ASSESSMENT_PLATFORM_URL). Thread-safe.
class AssessmentPlatform {
 public:
  virtual ~AssessmentPlatform() = default;
  // POST /api/v1/collections. Errors: unavailable when the platform cannot be reached or
  // keeps failing (the message names the remote, the call and the status); invalid_argument
  // when it refuses the request for good.
  virtual Status TriggerCollection(const CollectionRequest& request) = 0;
};

// The Grading Engine (GRADING_ENGINE_URL). Thread-safe.
class GradingEngine {
 public:
  virtual ~GradingEngine() = default;
  // POST /api/v1/sessions/{session_id}/parts/{part_id}/pod with `pod` as the body, secrets
  // shown (the Grading Engine's Pod schema). Errors: unavailable, invalid_argument (refused,
  // e.g. a pod that does not validate).
  virtual Status AssignPod(const std::string& session_id, const std::string& part_id, const domain::Pod& pod) = 0;
};

// The overall state of a lab on a CML worker (CML's `States`).
enum class CmlLabState {
  kDefinedOnCore,  // imported, or wiped: nothing runs, nothing persists
  kStopped,        // stopped, node disks kept
  kStarted,        // running
};

// A lab on a CML worker, as GET /labs/{id} describes it.
struct CmlLab {
  std::string id;
  std::string title;        // lab_title
  std::string description;  // lab_description ("" when CML gives none)
  std::optional<Timestamp> created;  // absent when CML does not give it (or not as RFC 3339)
};

// The mark ImportLab writes as the first line of the description of every lab it creates:
// "ccm " and the lab's title ("ccm lablet <instance id>"). Only a lab whose description
// starts with a mark was created by ccm; ccm removes no other lab on its own initiative.
inline std::string LabMark(std::string_view title) { return "ccm " + std::string(title); }

// A CML worker as its client reaches it: where, and which certificates verify it over https.
struct CmlTarget {
  // A URL alone is verified with the client's own trust (CML_CA_FILE or the system's store).
  CmlTarget(std::string cml_url, std::string cml_ca_pem = "") : url(std::move(cml_url)), ca_pem(std::move(cml_ca_pem)) {}
  std::string url;     // the worker's cml_url
  std::string ca_pem;  // the worker's cml_ca_pem; empty: the client's own trust
};

// The target of `w`: its cml_url and cml_ca_pem.
inline CmlTarget CmlTargetOf(const domain::Worker& w) { return {w.cml_url, w.cml_ca_pem}; }

// The REST API of the CML workers (CML 2.9, base path /api/v0 under the worker's cml_url).
// Every call names the worker by its target. Certificates are always verified over https:
// a worker whose certificate the target's trust does not verify is unavailable. Thread-safe.
// Errors of every call: unavailable when the worker cannot be reached or fails (5xx, 408,
// 429); not_found when the lab does not exist; invalid_argument when CML refuses the request.
class CmlWorkers {
 public:
  virtual ~CmlWorkers() = default;
  // POST /import with the lab (CML YAML, converted to CML's JSON topology); the new lab id.
  // The lab is titled `title`, and its description starts with the line LabMark(title) (the
  // topology's own description, if any, follows on the next lines).
  virtual Result<std::string> ImportLab(const CmlTarget& cml, const std::string& lab_yaml,
                                        const std::string& title) = 0;
  // GET /labs?show_all=true, then GET /labs/{id} for each: every lab of every user, in the
  // order CML lists them. A lab deleted between the two calls is left out; any other failure
  // of either call fails the whole listing.
  virtual Result<std::vector<CmlLab>> ListLabs(const CmlTarget& cml) = 0;
  // PUT /labs/{id}/start.
  virtual Status StartLab(const CmlTarget& cml, const std::string& lab_id) = 0;
  // GET /labs/{id}/state.
  virtual Result<CmlLabState> LabState(const CmlTarget& cml, const std::string& lab_id) = 0;
  // PUT /labs/{id}/stop.
  virtual Status StopLab(const CmlTarget& cml, const std::string& lab_id) = 0;
  // PUT /labs/{id}/wipe: the node disks are erased (the lab must be stopped).
  virtual Status WipeLab(const CmlTarget& cml, const std::string& lab_id) = 0;
  // DELETE /labs/{id}.
  virtual Status DeleteLab(const CmlTarget& cml, const std::string& lab_id) = 0;
};

// What a cloud provider reports about a worker it runs for ccm.
struct CloudWorker {
  std::string id;     // the provider's id
  bool ready = false;  // up, with CML answering
  bool released = false;  // given back: the machine is gone or going
  std::string hostname;
  std::string public_ip;
  std::string private_ip;
  std::string cml_url;
  domain::LicenseType license_type = domain::LicenseType::kEnterprise;
  domain::Resources capacity;
  int max_nodes = 0;
};

// Where new workers come from and where idle ones go. Thread-safe.
// Errors of every call: unavailable when the provider cannot be reached or fails;
// invalid_argument when it refuses (an unknown template); not_found for an unknown id.
class CloudProvider {
 public:
  virtual ~CloudProvider() = default;
  // Starts a worker from `template_name`; it is not ready yet. The same `client_token` gives
  // the same worker, so that a launch retried after a crash starts no second machine.
  virtual Result<CloudWorker> Launch(const std::string& template_name, const std::string& client_token) = 0;
  virtual Result<CloudWorker> Describe(const std::string& id) = 0;
  // Stops the worker and gives its machine back.
  virtual Status Release(const std::string& id) = 0;
};

// Durable state, outbox and dedup records. Implementations are thread-safe; reads see every
// commit that returned before they started.
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
  // Ordered by id (ids are time-ordered, so this is creation order).
  virtual Result<PageOf<domain::LabletInstance>> ListInstances(const InstanceFilter& filter, const Page& page) = 0;

  // Errors: not_found.
  virtual Result<domain::Worker> GetWorker(const domain::WorkerId& id) = 0;
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

  // Pending events due at `now`, in seq order, at most `limit`. For each subject only the
  // events before its first one still waiting out a backoff are returned, so that a subject
  // is never delivered out of order; held events are never returned. One indexed read.
  virtual Result<std::vector<OutboxRecord>> DueEvents(Timestamp now, int limit) = 0;
  // Outbox events matching `filter`, in seq order; Page::after is a seq.
  virtual Result<PageOf<OutboxRecord>> ListEvents(const EventFilter& filter, const Page& page) = 0;
  // Errors: not_found.
  virtual Result<OutboxRecord> GetEvent(const std::string& event_id) = 0;
  virtual Result<OutboxStats> GetOutboxStats() = 0;

  // Succeeds when the store can be read.
  virtual Status Ping() = 0;
  // Retention: removes up to `limit` TERMINATED instances that terminated before
  // `terminated_before`, and up to `limit` delivered outbox events delivered before
  // `delivered_before` (never a pending, held or dead-lettered one), all in one write.
  // Counts of events published stay as they were. Returns how many of each went: fewer than
  // `limit` means none older is left. Errors: unavailable.
  virtual Result<PurgeCounts> Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) = 0;
};

}  // namespace ccm::app
