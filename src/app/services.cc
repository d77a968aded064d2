#include "app/services.h"

#include <openssl/evp.h>

#include "app/pods.h"
#include "app/tracing.h"
#include "wire/idempotency.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace ccm::app {

using namespace ccm::domain;

namespace {

Error Stale(std::string_view what, const std::string& id, std::int64_t expected, std::int64_t actual) {
  return Error::StaleVersion(std::string(what) + " " + id + " is at version " + std::to_string(actual) +
                             ", not the expected " + std::to_string(expected));
}

// Commits a move PrepareMove made (InstanceService::PreparedMove), and gives the instance at
// the version it was committed at.
template <typename PreparedMove>
Result<LabletInstance> CommitPrepared(ports::Store& store, PreparedMove prepared) {
  if (auto s = store.Commit(prepared.changes); !s) return s.error();
  ++prepared.instance.version;
  return std::move(prepared.instance);
}

}  // namespace

Status ConfirmCurrent(ports::Store& store, const InstanceId& id, std::int64_t version) {
  auto now = store.GetInstanceHead(id);
  if (!now) return now.error();
  if (now->version != version)
    return Error::StaleVersion("instance " + id.value + " moved on to version " + std::to_string(now->version) +
                               " while this change was decided on version " + std::to_string(version));
  return {};
}

void BackOffAfterConflict(int attempt) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  const int cap_us = 100 << std::min(attempt, 6);
  std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, cap_us)(rng)));
}

void RunConcurrently(size_t n, int max_threads, const std::function<void(size_t)>& work) {
  std::atomic<size_t> next{0};
  auto drain = [&] {
    for (size_t k = next++; k < n; k = next++) work(k);
  };
  const size_t extra = n == 0 ? 0 : std::min(n, static_cast<size_t>(std::max(1, max_threads))) - 1;
  std::vector<std::thread> threads;
  threads.reserve(extra);
  for (size_t t = 0; t < extra; ++t) threads.emplace_back(drain);
  drain();
  for (auto& t : threads) t.join();
}

void RunConcurrentlyPerKey(const std::vector<std::string>& keys, int max_threads, int per_key,
                           const std::function<void(size_t)>& work) {
  struct Key {
    std::deque<size_t> waiting;  // the calls not begun, in order
    int running = 0;
  };
  std::map<std::string_view, Key> by_key;
  for (size_t k = 0; k < keys.size(); ++k) by_key[keys[k]].waiting.push_back(k);
  const int bound = std::max(1, per_key);
  std::mutex mu;
  std::condition_variable room;  // a call ended: its key may take another
  auto drain = [&] {
    std::unique_lock lock(mu);
    for (;;) {
      // Of the keys with calls waiting and room for one more, the one with the fewest running:
      // the threads spread over the keys instead of filling the first key's bound.
      Key* next = nullptr;
      bool waiting = false;
      for (auto& [_, key] : by_key) {
        if (key.waiting.empty()) continue;
        waiting = true;
        if (key.running < bound && (!next || key.running < next->running)) next = &key;
      }
      if (!waiting) return;
      if (!next) {
        room.wait(lock);
        continue;
      }
      const size_t k = next->waiting.front();
      next->waiting.pop_front();
      ++next->running;
      lock.unlock();
      work(k);
      lock.lock();
      --next->running;
      room.notify_all();
    }
  };
  const size_t extra = keys.empty() ? 0 : std::min(keys.size(), static_cast<size_t>(std::max(1, max_threads))) - 1;
  std::vector<std::thread> threads;
  threads.reserve(extra);
  for (size_t t = 0; t < extra; ++t) threads.emplace_back(drain);
  drain();
  for (auto& t : threads) t.join();
}

std::string Sha256Tagged(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

// ---- definitions ---------------------------------------------------------------------------

Result<LabletDefinition> DefinitionService::Create(DefinitionDraft draft) {
  auto existing = d_.store.FindDefinitionByName(draft.name);
  if (!existing) return existing.error();
  DefinitionId id = existing->value_or(DefinitionId{d_.ids.NewId()});
  std::string hash = Sha256Tagged(draft.lab_yaml);
  auto def = NewDefinition(std::move(draft), std::move(id), std::move(hash), d_.clock.Now());
  if (!def) return def;
  ports::Changes changes;
  changes.new_definitions.push_back(*def);
  if (auto s = d_.store.Commit(changes); !s) return s.error();
  return def;
}

Result<LabletDefinition> DefinitionService::Get(const DefinitionId& id, const std::optional<std::string>& version) {
  return d_.store.GetDefinition(id, version);
}

Result<ports::PageOf<LabletDefinition>> DefinitionService::List(const ports::DefinitionFilter& filter, const ports::Page& page) {
  return d_.store.ListDefinitions(filter, page);
}

Result<std::vector<LabletDefinition>> DefinitionService::Versions(const DefinitionId& id) {
  return d_.store.ListDefinitionVersions(id);
}

Result<LabletDefinition> DefinitionService::Delete(const DefinitionId& id) {
  auto def = d_.store.GetDefinition(id, std::nullopt);
  if (!def || def->deleted) return def;
  ports::Changes changes;
  changes.deleted_definitions.push_back(id);
  if (auto s = d_.store.Commit(changes); !s) return s.error();
  def->deleted = true;
  return def;
}

// ---- instances -----------------------------------------------------------------------------

namespace {

// A digest of everything a draft asks for, to tell a retry from another request.
std::string DraftDigest(const InstanceDraft& d) { return Sha256Tagged(wire::CanonicalDraft(d)); }

// Where the first answer to an idempotent create is kept: one key space per caller.
constexpr const char* kIdempotencySource = "ccm:idempotency-key:";

// The first answer kept under an idempotency key, given again; conflict when `digest` differs.
Result<CreatedInstance> Replay(const std::string& kept, const std::string& digest) {
  auto answer = wire::DecodeKeptAnswer(kept);
  if (!answer) return answer.error();
  if (answer->digest != digest)
    return Error::Conflict("this Idempotency-Key was used within the last " +
                               std::to_string(kIdempotencyWindow.count()) + " h with another request body",
                           "Idempotency-Key");
  return CreatedInstance{std::move(answer->instance), true};
}

}  // namespace

Result<CreatedInstance> InstanceService::CreateIdempotent(const InstanceDraft& draft, const std::string& actor,
                                                          const std::string& key) {
  const std::string source = kIdempotencySource + actor;
  const std::string digest = DraftDigest(draft);
  const auto kept = [&]() -> Result<std::optional<std::string>> {
    return d_.store.ProcessedValue(source, key, d_.clock.Now());
  };
  if (auto first = kept(); !first) return first.error();
  else if (first->has_value()) return Replay(**first, digest);
  auto instance = Prepare(draft, actor);
  if (!instance) return instance.error();
  const Timestamp now = d_.clock.Now();
  ports::Changes changes;
  changes.instances.push_back(*instance);
  changes.events.push_back(d_.events.InstanceCreated(*instance));
  LabletInstance answered = *instance;
  answered.version = 1;
  changes.processed.push_back(
      ports::ProcessedKey{source, key, now, now + kIdempotencyWindow, wire::EncodeKeptAnswer({digest, answered})});
  if (auto s = d_.store.Commit(changes); !s) {
    // A concurrent call with the same key won the race (the store may have found its key or
    // its reservation first): its answer is this one's.
    if (s.error().code != ErrorCode::kConflict) return s.error();
    auto first = kept();
    if (!first) return first.error();
    if (!first->has_value()) return s.error();
    return Replay(**first, digest);
  }
  return CreatedInstance{std::move(answered), false};
}

Result<LabletInstance> InstanceService::Prepare(const InstanceDraft& draft, const std::string& actor) {
  if (draft.definition_id.empty()) return Error::InvalidArgument("definition_id is required", "definition_id");
  auto def = d_.store.GetDefinition(draft.definition_id, draft.definition_version);
  if (!def) {
    Error e = def.error();
    if (e.code == ErrorCode::kNotFound) e.field = draft.definition_version ? "definition_version" : "definition_id";
    return e;
  }
  auto instance = NewInstance(draft, *def, InstanceId{d_.ids.NewId()}, d_.clock.Now(), actor);
  if (!instance) return instance;
  // The lablet joins the request's trace, or begins its own; its later work joins it.
  const trace::TraceContext own = trace::Current() ? *trace::Current() : trace::NewRoot();
  instance->traceparent = own.Format();
  instance->tracestate = own.state;
  return instance;
}

Result<LabletInstance> InstanceService::Create(const InstanceDraft& draft, const std::string& actor) {
  auto instance = Prepare(draft, actor);
  if (!instance) return instance;
  ports::Changes changes;
  changes.instances.push_back(*instance);
  changes.events.push_back(d_.events.InstanceCreated(*instance));
  if (auto s = d_.store.Commit(changes); !s) return s.error();
  instance->version = 1;
  return instance;
}

Result<LabletInstance> InstanceService::Get(const InstanceId& id) { return d_.store.GetInstance(id); }

Result<ports::PageOf<LabletInstance>> InstanceService::List(const ports::InstanceFilter& filter, const ports::Page& page) {
  return d_.store.ListInstances(filter, page);
}

Result<LabletInstance> InstanceService::CommitMove(LabletInstance instance, InstanceState to,
                                                   const std::string& reason, const std::string& actor,
                                                   std::optional<Ending> ending, const MoveContext& context) {
  auto prepared = PrepareMove(std::move(instance), to, reason, actor, std::move(ending), context);
  if (!prepared) return prepared.error();
  return CommitPrepared(d_.store, std::move(prepared.value()));
}

Result<InstanceService::PreparedMove> InstanceService::PrepareMove(LabletInstance instance, InstanceState to,
                                                                   const std::string& reason, const std::string& actor,
                                                                   std::optional<Ending> ending,
                                                                   const MoveContext& context) {
  trace::Scope scope(WorkTrace(instance));
  RecordTrace(instance);
  const InstanceState from = instance.state;
  if (ending && !instance.ending && (to == InstanceState::kStopping || to == InstanceState::kTerminated))
    instance.ending = std::move(ending);
  // The worker is read only when the move gives something back to it, then written in the
  // same commit; when the event only names it (a move to RUNNING), its hostname alone is read,
  // and moves of the instances on one worker do not contend on its version for nothing.
  const bool releases = (HoldsCapacity(from) && !HoldsCapacity(to)) || (HoldsPorts(from) && !HoldsPorts(to));
  std::optional<Worker> worker;
  std::optional<std::string> hostname;
  const bool known = !releases && context.worker && instance.worker_id && context.worker->id == *instance.worker_id;
  if (known) {
    hostname = context.worker->hostname;
  } else if (instance.worker_id && releases) {
    auto w = d_.store.GetWorker(*instance.worker_id);
    if (!w) return w.error();
    worker = std::move(w.value());
    hostname = worker->hostname;
  } else if (instance.worker_id && to == InstanceState::kRunning) {
    auto h = d_.store.GetWorkerHostname(*instance.worker_id);
    if (!h) return h.error();
    hostname = std::move(h.value());
  }
  std::optional<LabletDefinition> def;
  if (to == InstanceState::kInstantiating) {
    auto got = d_.store.GetDefinition(instance.definition_id, instance.definition_version);
    if (!got) return got.error();
    def = std::move(got.value());
  }
  Worker* w = worker ? &*worker : nullptr;
  auto change = MoveInstance(instance, releases ? w : nullptr, to, d_.clock.Now(), reason, actor);
  if (!change) return change.error();
  if (to == InstanceState::kRunning && instance.assessment && pods_ && engine_) {
    // The pod goes to the Grading Engine after this commit, by the pod reconciler, never
    // inside a commit that may be tried again.
    instance.pod_due_at = change->at;
    instance.pod_failures = 0;
    instance.pod_error.clear();
  }
  if (to == InstanceState::kCollecting) {
    // However the instance got here (an operator's move included), the platform is asked.
    instance.collection_due_at = change->at;
    instance.collection_request_failures = 0;
    instance.collection_request_error.clear();
    instance.collection_refused = false;
  }
  if (context.also) context.also(instance);

  PreparedMove prepared;
  ports::Changes& changes = prepared.changes;
  changes.events.push_back(
      d_.events.InstanceMoved(instance, *change, hostname, def ? &*def : nullptr));
  changes.instances.push_back(instance);
  if (releases && w) changes.workers.push_back(*w);
  prepared.instance = std::move(instance);
  return prepared;
}

Result<LabletInstance> InstanceService::RequestPodAssignment(const InstanceId& id, const std::string& actor) {
  if (!pods_ || !engine_)
    return Error::FailedPrecondition("no Grading Engine is configured (GRADING_ENGINE_URL)", "pod");
  return Record(id, [&](LabletInstance& i) -> Status {
    if (!i.assessment)
      return Error::FailedPrecondition("instance " + id.value + " has no assessment ids: it has no pod", "assessment");
    if (i.state != InstanceState::kRunning)
      return Error::Conflict("instance " + id.value + " is " + std::string(ToString(i.state)) +
                                 "; a pod is assigned only while RUNNING",
                             "state");
    i.pod_due_at = d_.clock.Now();
    i.pod_failures = 0;
    i.pod_error = "assignment asked again by " + actor;
    return {};
  });
}

Result<bool> InstanceService::AssignDuePod(const InstanceId& id, const PodBackoff& backoff) {
  if (!pods_ || !engine_) return false;
  auto instance = d_.store.GetInstance(id);
  if (!instance) return instance.error();
  trace::Scope scope(WorkTrace(*instance));  // the engine's call and the event join the lablet's trace
  const Timestamp now = d_.clock.Now();
  if (instance->state != InstanceState::kRunning || !instance->assessment || !instance->pod_due_at ||
      *instance->pod_due_at > now)
    return false;
  std::optional<Worker> worker;
  if (instance->worker_id)
    if (auto w = d_.store.GetWorker(*instance->worker_id)) worker = std::move(w.value());
  auto pod = worker ? pods_->ForInstance(*instance, *worker) : pods_->ForInstance(instance->id);
  Status sent = pod ? engine_->AssignPod(instance->assessment->session_id, instance->assessment->part_id, *pod)
                    : Status(pod.error());
  // The engine's answer may quote the pod; what is kept (pod_error) and logged must not.
  if (!sent && pod) {
    Error scrubbed = sent.error();
    scrubbed.message = Scrub(scrubbed.message, SecretValues(*pod));
    sent = std::move(scrubbed);
  }
  // Only an unreachable or failing engine is worth another attempt; a refusal is final.
  const bool final_refusal = !sent && sent.error().code != ErrorCode::kUnavailable;
  const std::optional<Timestamp> was_due = instance->pod_due_at;
  auto recorded = RetryStale([&]() -> Status {
    auto current = d_.store.GetInstance(id);
    if (!current) return current.error();
    // The engine may take the pod while the instance moves on (its timeslot ends during a
    // slow call): that is still recorded. A failure matters only while it is RUNNING.
    if (current->state == InstanceState::kTerminated || (!sent && current->state != InstanceState::kRunning)) return {};
    // An operator who asked again during the call asked for another attempt: it stays due.
    const bool asked_again = current->pod_due_at != was_due;
    ports::Changes changes;
    const Timestamp at = d_.clock.Now();
    if (sent) {
      current->pod_assigned = true;
      current->pod_error.clear();
      if (!asked_again) current->pod_due_at.reset();
      // The event is the RUNNING instance's (its schema says so); later, the flag says it.
      if (current->state == InstanceState::kRunning)
        changes.events.push_back(d_.events.PodAssigned(*current, at));  // counts the failures before it
      current->pod_failures = 0;
    } else if (asked_again) {
      return {};
    } else {
      ++current->pod_failures;
      current->pod_error = sent.error().message;
      if (final_refusal) current->pod_due_at.reset();
      else current->pod_due_at = at + backoff(current->pod_failures);
    }
    RecordTrace(*current);
    changes.instances.push_back(*current);
    return d_.store.Commit(changes);
  });
  if (!recorded) return recorded.error();
  if (!sent) return sent.error();
  return true;
}

Result<LabletInstance> InstanceService::RequestTermination(const InstanceId& id, const std::string& actor) {
  return RetryStale([&]() -> Result<LabletInstance> {
    auto instance = d_.store.GetInstance(id);
    if (!instance || instance->state == InstanceState::kTerminated) return instance;
    trace::Scope scope(WorkTrace(*instance));
    const bool already_requested = instance->termination_requested;
    instance->termination_requested = true;
    Ending cancelled{domain::Outcome::kCancelled, StageOf(instance->state), "termination_requested",
                     "termination requested by " + actor};
    // An instance whose lab is already on CML is ended by the instantiator, which removes the
    // lab first (so nothing of it stays on the worker); only the request is recorded here.
    const bool lab_on_cml = instance->state == InstanceState::kInstantiating && instance->cml_lab_id;
    switch (lab_on_cml ? InstanceState::kStopping : instance->state) {
      case InstanceState::kPending:
      case InstanceState::kScheduled:
      case InstanceState::kInstantiating:
      case InstanceState::kRunning:
      case InstanceState::kCollecting:
      case InstanceState::kGrading:
        return CommitMove(std::move(instance.value()), *NextStepToTermination(instance->state),
                          "termination requested", actor, std::move(cancelled), {});
      default:
        break;
    }
    // STOPPING, STOPPED, ARCHIVED (and INSTANTIATING with a lab): already on the way; the
    // stopper (or the instantiator) finishes the path. Only the request is recorded (and, for
    // the lab still starting, why it ends).
    if (lab_on_cml && !instance->ending) instance->ending = std::move(cancelled);
    else if (already_requested) return instance;
    RecordTrace(*instance);
    ports::Changes changes;
    changes.instances.push_back(*instance);
    if (auto s = d_.store.Commit(changes); !s) return s.error();
    ++instance->version;
    return instance;
  });
}

Result<LabletInstance> InstanceService::Schedule(const InstanceId& id, const WorkerId& worker_id,
                                                 const std::string& actor) {
  auto batch = ScheduleBatch({id}, worker_id, actor);
  if (!batch) return batch.error();
  return std::move(batch->front());
}

Result<std::vector<Result<LabletInstance>>> InstanceService::ScheduleBatch(const std::vector<InstanceId>& ids,
                                                                           const WorkerId& worker_id,
                                                                           const std::string& actor) {
  using Outcomes = std::vector<Result<LabletInstance>>;
  if (worker_id.empty()) return Error::InvalidArgument("worker_id is required", "worker_id");
  return RetryStale([&]() -> Result<Outcomes> {
    Outcomes out;
    out.reserve(ids.size());
    bool any = false;
    for (const InstanceId& id : ids) {
      out.push_back(d_.store.GetInstance(id));
      any = any || out.back().has_value();
    }
    if (!any) return out;  // each one's own error, before any of the worker's
    auto worker = d_.store.GetWorker(worker_id);
    if (!worker) return Error{worker.error().code, worker.error().message, "worker_id"};
    std::map<std::pair<std::string, std::string>, LabletDefinition> defs;
    ports::Changes changes;
    std::vector<size_t> committed;  // the outcomes that the commit writes
    const Timestamp now = d_.clock.Now();
    for (size_t n = 0; n < out.size(); ++n) {
      if (!out[n]) continue;
      LabletInstance& instance = *out[n];
      const auto key = std::make_pair(instance.definition_id.value, instance.definition_version);
      auto def = defs.find(key);
      if (def == defs.end()) {
        auto got = d_.store.GetDefinition(instance.definition_id, instance.definition_version);
        if (!got) {
          out[n] = got.error();
          continue;
        }
        def = defs.emplace(key, std::move(got.value())).first;
      }
      trace::Scope scope(WorkTrace(instance));
      RecordTrace(instance);
      auto change = ScheduleInstance(instance, *worker, def->second, now, actor);
      if (!change) {
        out[n] = change.error();
        continue;
      }
      changes.events.push_back(d_.events.InstanceMoved(instance, *change, worker->hostname, &def->second));
      changes.instances.push_back(instance);
      committed.push_back(n);
    }
    if (committed.empty()) return out;
    changes.workers.push_back(std::move(worker.value()));
    if (auto s = d_.store.Commit(changes); !s) return s.error();
    for (size_t n : committed) ++out[n]->version;
    return out;
  });
}

Result<LabletInstance> InstanceService::Transition(const InstanceId& id, InstanceState to, const std::string& reason,
                                                   const std::string& actor,
                                                   std::optional<std::int64_t> expected_version,
                                                   std::optional<Ending> ending) {
  return Move(id, to, reason, actor, expected_version, std::move(ending), {});
}

Result<LabletInstance> InstanceService::TransitionWith(const InstanceId& id, InstanceState to, const std::string& reason,
                                                       const std::string& actor, const MoveContext& context) {
  return Move(id, to, reason, actor, std::nullopt, std::nullopt, context);
}

Result<InstanceService::PreparedMove> InstanceService::PrepareTransition(
    const InstanceId& id, InstanceState to, const std::string& reason, const std::string& actor,
    std::optional<std::int64_t> expected_version, std::optional<Ending> ending, const MoveContext& context) {
  if (to == InstanceState::kScheduled)
    return Error::InvalidArgument("moving to SCHEDULED needs a worker: use the schedule call", "to");
  // A caller's expected version is checked against the stored one, never a recalled one.
  auto instance = expected_version ? d_.store.GetInstance(id) : d_.store.GetInstanceForUpdate(id);
  if (!instance) return instance.error();
  if (expected_version && *expected_version != instance->version)
    return Stale("instance", id.value, *expected_version, instance->version);
  const std::int64_t read_at = instance->version;
  auto prepared = PrepareMove(std::move(instance.value()), to, reason, actor, std::move(ending), context);
  if (!prepared && !expected_version && !prepared.error().Is(ErrorKind::kStaleVersion))
    if (auto current = ConfirmCurrent(d_.store, id, read_at); !current) return current.error();
  return prepared;
}

Result<LabletInstance> InstanceService::Move(const InstanceId& id, InstanceState to, const std::string& reason,
                                             const std::string& actor, std::optional<std::int64_t> expected_version,
                                             std::optional<Ending> ending, const MoveContext& context) {
  auto attempt = [&]() -> Result<LabletInstance> {
    auto prepared = PrepareTransition(id, to, reason, actor, expected_version, ending, context);
    if (!prepared) return prepared.error();
    return CommitPrepared(d_.store, std::move(prepared.value()));
  };
  return expected_version ? attempt() : RetryStale(attempt);
}

void InstanceService::TransitionThen(const InstanceId& id, InstanceState to, const std::string& reason,
                                     const std::string& actor, std::optional<std::int64_t> expected_version,
                                     std::function<void(Result<LabletInstance>)> then,
                                     const std::function<void(const LabletInstance&)>& ready) {
  auto prepared = PrepareTransition(id, to, reason, actor, expected_version, std::nullopt, {});
  if (!prepared) return then(prepared.error());
  LabletInstance committed = std::move(prepared->instance);
  ++committed.version;
  if (ready) ready(committed);
  d_.store.CommitThen(std::move(prepared->changes),
                      [committed = std::move(committed), then = std::move(then)](Status s) mutable {
                        if (!s) return then(s.error());
                        then(std::move(committed));
                      });
}

Result<LabletInstance> InstanceService::Record(const InstanceId& id,
                                               const std::function<Status(LabletInstance&)>& edit) {
  return RetryStale([&]() -> Result<LabletInstance> {
    auto instance = d_.store.GetInstanceForUpdate(id);
    if (!instance) return instance;
    trace::Scope scope(WorkTrace(*instance));
    RecordTrace(*instance);
    const std::int64_t read_at = instance->version;
    if (auto s = edit(*instance); !s) {
      if (auto current = ConfirmCurrent(d_.store, id, read_at); !current) return current.error();
      return s.error();
    }
    ports::Changes changes;
    changes.instances.push_back(*instance);
    if (auto s = d_.store.Commit(changes); !s) return s.error();
    ++instance->version;
    return instance;
  });
}

// ---- workers -------------------------------------------------------------------------------

Result<Worker> WorkerService::Register(WorkerDraft draft, const std::string& actor) {
  if (auto s = allow_.Check(draft.cml_url); !s) return s.error();
  auto worker = NewWorker(std::move(draft), WorkerId{d_.ids.NewId()}, d_.clock.Now(), actor);
  if (!worker) return worker;
  ports::Changes changes;
  changes.workers.push_back(*worker);
  changes.events = d_.events.WorkerCreated(*worker);
  if (auto s = d_.store.Commit(changes); !s) return s.error();
  worker->version = 1;
  return worker;
}

Result<Worker> WorkerService::Get(const WorkerId& id) { return d_.store.GetWorker(id); }

Result<ports::PageOf<Worker>> WorkerService::List(const ports::Page& page) { return d_.store.ListWorkers(page); }

Result<std::vector<LabletInstance>> WorkerService::Instances(const WorkerId& id) {
  auto worker = d_.store.GetWorker(id);
  if (!worker) return worker.error();
  std::vector<LabletInstance> out;
  for (const auto& [instance_id, _] : worker->reservations) {
    auto i = d_.store.GetInstance(InstanceId{instance_id});
    if (i) out.push_back(std::move(i.value()));
  }
  for (const auto& [instance_id, _] : worker->port_allocations) {
    if (worker->reservations.count(instance_id)) continue;
    auto i = d_.store.GetInstance(InstanceId{instance_id});
    if (i) out.push_back(std::move(i.value()));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Result<Worker> WorkerService::Transition(const WorkerId& id, WorkerState to, const std::string& reason,
                                         const std::string& actor, std::optional<std::int64_t> expected_version) {
  auto attempt = [&]() -> Result<Worker> {
    auto worker = d_.store.GetWorker(id);
    if (!worker) return worker;
    if (expected_version && *expected_version != worker->version)
      return Stale("worker", id.value, *expected_version, worker->version);
    auto change = worker->MoveTo(to, d_.clock.Now(), reason, actor);
    if (!change) return change.error();
    std::optional<Timestamp> drained_by;
    if (to == WorkerState::kDraining) {
      auto active = Instances(id);
      if (!active) return active.error();
      std::optional<Timestamp> last_end;
      for (const auto& i : *active)
        if (!last_end || i.timeslot_end > *last_end) last_end = i.timeslot_end;
      drained_by = last_end ? *last_end : change->at;
    }
    ports::Changes changes;
    changes.workers.push_back(*worker);
    changes.events.push_back(d_.events.WorkerMoved(*worker, *change, drained_by));
    if (auto s = d_.store.Commit(changes); !s) return s.error();
    ++worker->version;
    return worker;
  };
  return expected_version ? attempt() : RetryStale(attempt);
}

}  // namespace ccm::app
