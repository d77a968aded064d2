#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "app/events.h"
#include "domain/lifecycle.h"
#include "ports/clock.h"
#include "ports/grading_engine.h"
#include "ports/page.h"
#include "ports/store.h"

namespace ccm::app {

// What every use case needs. Not owned; each must outlive the services.
struct Deps {
  ports::Store& store;
  ports::Clock& clock;
  ports::IdGenerator& ids;
  EventFactory& events;
};

// Waits a random time below 100 us * 2^min(attempt, 6) (full jitter), so that writers
// that lost a race on one aggregate do not meet again at once.
void BackOffAfterConflict(int attempt);

// Whether the instance `id` is still at `version`, as read by Store::GetInstanceForUpdate: a
// use case that answers from such a read without committing the instance (a refusal, an event
// ignored) confirms it first. Errors: StaleVersion when it has moved on (RetryStale then
// decides again, on a fresh read); not_found when it is gone; the read's own error otherwise
// (a decision on a copy that could not be confirmed is not given as an answer).
Status ConfirmCurrent(ports::Store& store, const domain::InstanceId& id, std::int64_t version);

// Calls `work(k)` for every k in [0, n), on up to `max_threads` threads at once (this one
// among them), and returns when all are done: for calls to a remote that may be slow, so that
// one slow call does not hold the others behind it.
void RunConcurrently(size_t n, int max_threads, const std::function<void(size_t)>& work);

// Calls `work(k)` for every k in [0, keys.size()), on up to `max_threads` threads at once
// (this one among them), with at most `per_key` of the calls for any one key (keys[k]) at
// once, and returns when all are done: for calls to many remotes, each of which should take
// only so many at a time. While one key is at its bound the threads go on with the others';
// each key's calls begin in their order. `max_threads` and `per_key` below 1 count as 1.
void RunConcurrentlyPerKey(const std::vector<std::string>& keys, int max_threads, int per_key,
                           const std::function<void(size_t)>& work);

// Runs `attempt` again while it fails with a stale-version conflict (up to 64 times, with
// jittered backoff), so that writers racing on one aggregate (a worker being scheduled
// onto) all succeed in turn instead of failing. Every other result is returned at once. A
// writer that still lost after every attempt gets unavailable (503, try again), not a
// conflict: nothing is wrong with its request, the aggregate was only busy.
template <typename F>
auto RetryStale(F&& attempt) -> decltype(attempt()) {
  constexpr int kAttempts = 64;
  for (int i = 1;; ++i) {
    auto r = attempt();
    if (r || !r.error().Is(ErrorKind::kStaleVersion)) return r;
    if (i == kAttempts)
      return Error::Unavailable("the change kept racing other writers of the same record (" + r.error().message +
                                "); try again");
    BackOffAfterConflict(i);
  }
}

// Use cases of lablet definitions.
class DefinitionService {
 public:
  explicit DefinitionService(Deps deps) : d_(deps) {}
  // Creates a version. A name that exists gets the existing id. Errors: invalid_argument
  // (field named), conflict when the version exists.
  Result<domain::LabletDefinition> Create(domain::DefinitionDraft draft);
  Result<domain::LabletDefinition> Get(const domain::DefinitionId& id, const std::optional<std::string>& version);
  Result<ports::PageOf<domain::LabletDefinition>> List(const ports::DefinitionFilter& filter, const ports::Page& page);
  Result<std::vector<domain::LabletDefinition>> Versions(const domain::DefinitionId& id);
  // Soft delete: every version stays readable, none takes new instances. Idempotent.
  // Errors: not_found.
  Result<domain::LabletDefinition> Delete(const domain::DefinitionId& id);

 private:
  Deps d_;
};

class PodService;

// How long an idempotency key keeps the first answer to a create.
inline constexpr std::chrono::hours kIdempotencyWindow{24};

// What a create with an idempotency key answered: the instance, and whether this is the first
// call's answer given again rather than a new instance.
struct CreatedInstance {
  domain::LabletInstance instance;
  bool replayed = false;
};

// Use cases of lablet instances.
class InstanceService {
 public:
  explicit InstanceService(Deps deps) : d_(deps) {}
  // From now on, an instance with assessment ids that moves to RUNNING has its pod assigned
  // on the Grading Engine after the move (AssignDuePod). Not owned.
  void EnablePodAssignment(PodService& pods, ports::GradingEngine& engine) {
    pods_ = &pods;
    engine_ = &engine;
  }
  // -> PENDING, with its event. Errors: not_found (definition, field definition_id),
  // invalid_argument, failed_precondition (deleted definition).
  Result<domain::LabletInstance> Create(const domain::InstanceDraft& draft, const std::string& actor);
  // Create, safe to retry: within kIdempotencyWindow, the same `key` from the same `actor`
  // with the same draft answers with the instance the first call created, as it was then
  // (replayed), even when two calls race. Errors: those of Create; conflict (field
  // Idempotency-Key) when the key came with another draft.
  Result<CreatedInstance> CreateIdempotent(const domain::InstanceDraft& draft, const std::string& actor,
                                           const std::string& key);
  Result<domain::LabletInstance> Get(const domain::InstanceId& id);
  Result<ports::PageOf<domain::LabletInstance>> List(const ports::InstanceFilter& filter, const ports::Page& page);
  // Starts termination by the legal path: PENDING, SCHEDULED, INSTANTIATING -> TERMINATED
  // now (releasing what they hold); RUNNING, COLLECTING, GRADING -> STOPPING now; the rest
  // is left to the stopper, and an INSTANTIATING instance whose lab is on CML already to the
  // instantiator (which removes the lab, then terminates it). Idempotent on a TERMINATED
  // instance. Errors: not_found.
  Result<domain::LabletInstance> RequestTermination(const domain::InstanceId& id, const std::string& actor);
  // PENDING -> SCHEDULED on `worker_id`, allocating ports and capacity atomically.
  // Errors: not_found (instance, or worker with field worker_id), conflict (not PENDING),
  // failed_precondition (worker not RUNNING, licence, capacity, nodes or ports short).
  Result<domain::LabletInstance> Schedule(const domain::InstanceId& id, const domain::WorkerId& worker_id,
                                          const std::string& actor);
  // Schedule for each of `ids` on one worker, in order, in one commit: each placement is
  // decided on the worker as the ones before it left it. Each id has its own outcome (the
  // errors of Schedule); the refused ones are not in the commit. The whole is decided again
  // on fresh reads when anything it read has moved meanwhile. Errors of the whole: not_found
  // (worker, field worker_id; read only when one of the instances was found),
  // invalid_argument (no worker id), those of the store (a commit too large for it included).
  Result<std::vector<Result<domain::LabletInstance>>> ScheduleBatch(const std::vector<domain::InstanceId>& ids,
                                                                    const domain::WorkerId& worker_id,
                                                                    const std::string& actor);
  // Any legal move but to SCHEDULED (which needs a worker: Schedule). With
  // `expected_version`, a stale read is a conflict instead of a retry. `ending` is why the
  // lablet ends, for a move to STOPPING or TERMINATED of an instance that has none recorded
  // yet (without it, domain::DefaultEnding: an operator's move); an ending already recorded
  // stays. Errors: not_found, conflict (illegal move or stale version), invalid_argument.
  Result<domain::LabletInstance> Transition(const domain::InstanceId& id, domain::InstanceState to,
                                            const std::string& reason, const std::string& actor,
                                            std::optional<std::int64_t> expected_version,
                                            std::optional<domain::Ending> ending = std::nullopt);
  // What a caller of TransitionWith brings to the move.
  struct MoveContext {
    // Applied to the moved instance in the same commit (again on each fresh read): bookkeeping
    // that must be durable with the move.
    std::function<void(domain::LabletInstance&)> also;
    // The instance's worker as the caller read it: named by the move's event without reading
    // it again, when the move gives nothing back to it (a move that does is read and written).
    const domain::Worker* worker = nullptr;
  };
  // Transition (without an ending), without holding this thread while the move commits:
  // `then` gets Transition's result on the thread that commits (Store::CommitThen), and must
  // not block. One difference: without `expected_version`, a commit that lost a race with
  // another writer gives `then` StaleVersion, where Transition decides again; the caller then
  // calls Transition, on a thread that may block. `ready`, when given, gets the instance as
  // it will be once committed, on this thread before the commit is queued: for work that
  // should not hold the commit's thread (what to answer).
  void TransitionThen(const domain::InstanceId& id, domain::InstanceState to, const std::string& reason,
                      const std::string& actor, std::optional<std::int64_t> expected_version,
                      std::function<void(Result<domain::LabletInstance>)> then,
                      const std::function<void(const domain::LabletInstance&)>& ready = nullptr);
  // Transition without an expected version, with `context`.
  Result<domain::LabletInstance> TransitionWith(const domain::InstanceId& id, domain::InstanceState to,
                                                const std::string& reason, const std::string& actor,
                                                const MoveContext& context);
  // Asks for the pod of a RUNNING instance to be assigned again on the Grading Engine (the
  // pod reconciler does it, at once): after a refusal, or when the engine lost it. Errors:
  // not_found, conflict (not RUNNING), failed_precondition (no assessment ids, or no engine).
  Result<domain::LabletInstance> RequestPodAssignment(const domain::InstanceId& id, const std::string& actor);
  // The wait before the next attempt after `failures` failed ones.
  using PodBackoff = std::function<std::chrono::milliseconds(int failures)>;
  // Assigns the pod of a RUNNING instance whose assignment is due, then records the outcome
  // on it (no commit is open during the call): assigned (with a pod.assigned event); failed
  // and due again after `backoff` when the engine cannot be reached or fails; refused for
  // good otherwise (pod_error says why; no more attempts until an operator asks). Returns
  // true when the engine took the pod, false when nothing was due; the engine's error when it
  // did not take it. Errors also: those of the store.
  Result<bool> AssignDuePod(const domain::InstanceId& id, const PodBackoff& backoff);
  // Writes what `edit` changes on the instance (bookkeeping, not a state change: no event),
  // re-reading and re-editing after a stale version. `edit` may refuse with an error, which
  // is returned and writes nothing. Errors: not_found, those of `edit`.
  Result<domain::LabletInstance> Record(const domain::InstanceId& id,
                                        const std::function<Status(domain::LabletInstance&)>& edit);

 private:
  // A new PENDING instance from `draft`, checked against its definition; not yet stored.
  Result<domain::LabletInstance> Prepare(const domain::InstanceDraft& draft, const std::string& actor);
  // A move decided and not yet committed: the instance as it will be, and what to commit.
  struct PreparedMove {
    domain::LabletInstance instance;  // at the version it was read at
    ports::Changes changes;
  };
  // Moves `instance` (read at its version) to `to`, with its worker and event, ready to
  // commit; `ending` as for Transition, `context` as for TransitionWith.
  Result<PreparedMove> PrepareMove(domain::LabletInstance instance, domain::InstanceState to, const std::string& reason,
                                   const std::string& actor, std::optional<domain::Ending> ending,
                                   const MoveContext& context);
  // PrepareMove, then its commit.
  Result<domain::LabletInstance> CommitMove(domain::LabletInstance instance, domain::InstanceState to,
                                            const std::string& reason, const std::string& actor,
                                            std::optional<domain::Ending> ending, const MoveContext& context);
  // Reads the instance `id` and prepares its move (Move's one attempt, up to the commit). A
  // move refused on a read its commit would not have guarded is confirmed current first.
  Result<PreparedMove> PrepareTransition(const domain::InstanceId& id, domain::InstanceState to,
                                         const std::string& reason, const std::string& actor,
                                         std::optional<std::int64_t> expected_version,
                                         std::optional<domain::Ending> ending, const MoveContext& context);
  Result<domain::LabletInstance> Move(const domain::InstanceId& id, domain::InstanceState to,
                                      const std::string& reason, const std::string& actor,
                                      std::optional<std::int64_t> expected_version,
                                      std::optional<domain::Ending> ending, const MoveContext& context);
  Deps d_;
  PodService* pods_ = nullptr;
  ports::GradingEngine* engine_ = nullptr;
};

// Use cases of workers.
class WorkerService {
 public:
  // `allow`: the hosts a registered worker's cml_url may name (CML_URL_ALLOW); empty: any.
  explicit WorkerService(Deps deps, domain::CmlUrlAllowList allow = {}) : d_(deps), allow_(std::move(allow)) {}
  // Validates the draft (domain::NewWorker) and its cml_url against the allow-list, then
  // stores the worker and its created event. Errors: invalid_argument naming the field
  // (nothing is written); those of Store::Commit.
  Result<domain::Worker> Register(domain::WorkerDraft draft, const std::string& actor);
  Result<domain::Worker> Get(const domain::WorkerId& id);
  Result<ports::PageOf<domain::Worker>> List(const ports::Page& page);
  // The instances that hold capacity or ports on the worker. Errors: not_found.
  Result<std::vector<domain::LabletInstance>> Instances(const domain::WorkerId& id);
  // Errors: not_found, conflict (illegal move, stale version), failed_precondition (stopping
  // a worker that still has instances).
  Result<domain::Worker> Transition(const domain::WorkerId& id, domain::WorkerState to, const std::string& reason,
                                    const std::string& actor, std::optional<std::int64_t> expected_version);

 private:
  Deps d_;
  domain::CmlUrlAllowList allow_;
};

// "sha256:<64 hex digits>" of `text`.
std::string Sha256Tagged(std::string_view text);

}  // namespace ccm::app
