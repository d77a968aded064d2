#include "app/reconcilers.h"

#include <algorithm>
#include <map>
#include <spdlog/spdlog.h>

#include "app/orphan_sweep.h"
#include "app/tracing.h"
#include "domain/lab_yaml.h"
#include "log/log_context.h"
#include "ports/cloud_provider.h"
#include "ports/cml.h"
#include "ports/outbox.h"
#include "ports/page.h"
#include "ports/store.h"
#include "runtime/jitter.h"

namespace ccm::app {

using namespace ccm::domain;

namespace {

constexpr const char* kScheduler = "scheduler";
constexpr const char* kInstantiator = "instantiator";
constexpr const char* kLabPoller = "lab-poller";
constexpr const char* kStopper = "stopper";
constexpr const char* kScaler = "scaler";
constexpr const char* kPodAssigner = "pod-assigner";
// The loop this thread runs (null on other threads): errors met by the shared reads count for it.
thread_local const char* current_loop = nullptr;
// The loops, in the order the constructor starts them.
enum Loop : size_t { kScheduleLoop, kInstantiateLoop, kPollLoop, kStopLoop, kPodLoop, kScaleLoop };

// How full a worker is: the largest share of cpu, memory or nodes already reserved.
double Fullness(const Worker& w) {
  const Reservation used = w.Allocated();
  double share = w.capacity.cpu_cores > 0 ? used.resources.cpu_cores / w.capacity.cpu_cores : 1;
  share = std::max(share, w.capacity.memory_gb > 0 ? used.resources.memory_gb / w.capacity.memory_gb : 1);
  const int nodes = w.EffectiveMaxNodes();
  return std::max(share, nodes > 0 ? static_cast<double>(used.nodes) / nodes : 1);
}

WorkerDraft DraftOf(const ports::CloudWorker& c) {
  WorkerDraft d;
  d.hostname = c.hostname;
  d.public_ip = c.public_ip;
  d.private_ip = c.private_ip;
  d.cml_url = c.cml_url;
  d.license_type = c.license_type;
  d.capacity = c.capacity;
  d.max_nodes = c.max_nodes;
  return d;
}

// The log context of a step on one lablet: its id, and its worker's once placed.
log::Set About(const LabletInstance& i) {
  return {.lablet_id = i.id.value, .worker_id = i.worker_id ? std::optional(i.worker_id->value) : std::nullopt};
}

std::string Seconds(std::chrono::milliseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

}  // namespace

void LifecycleMetrics::Observe(const std::map<InstanceState, ports::StateCount>& counts) {
  std::lock_guard lock(mu_);
  for (const InstanceState state : kAllInstanceStates) {
    if (state == InstanceState::kTerminated) continue;
    StateGauge g;
    g.count = 0;
    if (auto it = counts.find(state); it != counts.end()) g = {it->second.count, it->second.oldest_entered_at};
    states_[state] = g;
  }
}

std::map<InstanceState, LifecycleMetrics::StateGauge> LifecycleMetrics::States() const {
  std::lock_guard lock(mu_);
  return states_;
}

Reconcilers::Reconcilers(Deps deps, InstanceService& instances, CollectionService& collection, ports::CmlWorkers& cml,
                         ports::CloudProvider* cloud, ReconcilerOptions options, LifecycleMetrics* metrics)
    : d_(deps),
      instances_(instances),
      collection_(collection),
      cml_(cml),
      cloud_(cloud),
      options_(options),
      metrics_(metrics),
      schedule_batch_(options.schedule_batch) {
  auto loop = [this](const char* name, int (Reconcilers::*sweep)(), std::chrono::milliseconds min_gap) {
    auto& errors = errors_[name];
    loops_.push_back(std::make_unique<runtime::BackgroundLoop>(
        [this, name, sweep, &errors] {
          current_loop = name;
          const int errors_before = errors.load();
          const auto started = std::chrono::steady_clock::now();
          const int steps = (this->*sweep)();
          if (metrics_ && metrics_->loops)
            metrics_->loops->Ran(name, steps, errors.load() - errors_before, std::chrono::steady_clock::now() - started);
          return false;
        },
        options_.interval, min_gap));
  };
  const auto min_gap = std::min(options_.interval, std::chrono::milliseconds(100));
  loop(kScheduler, &Reconcilers::ScheduleOnce, min_gap);
  loop(kInstantiator, &Reconcilers::InstantiateOnce, min_gap);
  loop(kLabPoller, &Reconcilers::PollLabsOnce, min_gap);
  loop(kStopper, &Reconcilers::StopOnce, min_gap);
  loop(kPodAssigner, &Reconcilers::AssignPodsOnce, min_gap);
  // A wave's commits wake every loop; the scaler reads every worker (each with its
  // reservations), and a commit of one instance seldom gives it work: it sweeps at most once
  // per interval, woken or not.
  loop(kScaler, &Reconcilers::ScaleOnce, options_.interval);
}

Reconcilers::~Reconcilers() { Stop(); }

void Reconcilers::Start() {
  stopping_ = false;
  {
    // Leading again: what this process sent before may not be what happened meanwhile (the
    // other leader may never have sent a start), so every starting lab is read and its start
    // sent again at its first poll.
    std::lock_guard lock(poll_mu_);
    start_sent_.clear();
    next_poll_.clear();
  }
  for (auto& l : loops_) l->Start();
}
void Reconcilers::RequestStop() {
  stopping_ = true;
  for (auto& l : loops_) l->RequestStop();
}
void Reconcilers::Stop() {
  // Every loop is asked first, so that they end their current steps side by side.
  RequestStop();
  for (auto& l : loops_) l->Stop();
  stopping_ = false;  // a sweep called directly afterwards runs whole
}
void Reconcilers::Wake() {
  for (auto& l : loops_) l->Wake();
  collection_.Wake();
}

void Reconcilers::CountError(const char* loop) {
  if (!loop) return;
  if (auto it = errors_.find(std::string_view(loop)); it != errors_.end()) ++it->second;
}

std::vector<LabletInstance> Reconcilers::InState(InstanceState s) {
  ports::InstanceFilter filter;
  filter.state = s;
  return Listed(filter);
}

std::vector<LabletInstance> Reconcilers::Listed(const ports::InstanceFilter& filter) {
  std::vector<LabletInstance> out;
  ports::Page page{ports::kMaxPageLimit, ""};
  for (;;) {
    auto got = d_.store.ListInstances(filter, page);
    if (!got) {
      CountError(current_loop);
      spdlog::warn("reconcilers: cannot list {} instances: {}", filter.state ? ToString(*filter.state) : "all",
                   got.error().message);
      break;
    }
    for (auto& i : got->items) out.push_back(std::move(i));
    if (got->next.empty()) break;
    page.after = got->next;
  }
  return out;
}

std::vector<Worker> Reconcilers::AllWorkers() {
  std::vector<Worker> out;
  ports::Page page{ports::kMaxPageLimit, ""};
  for (;;) {
    auto got = d_.store.ListWorkers(page);
    if (!got) {
      CountError(current_loop);
      spdlog::warn("reconcilers: cannot list workers: {}", got.error().message);
      break;
    }
    for (auto& w : got->items) out.push_back(std::move(w));
    if (got->next.empty()) break;
    page.after = got->next;
  }
  return out;
}

// ---- scheduler -----------------------------------------------------------------------------

std::vector<LabletInstance> Reconcilers::DuePending(Timestamp now) {
  ports::InstanceFilter due;
  due.state = InstanceState::kPending;
  due.starts_by = now + options_.schedule_ahead;
  auto pending = Listed(due);
  std::sort(pending.begin(), pending.end(), [](const auto& a, const auto& b) {
    return std::tie(a.timeslot_start, a.id) < std::tie(b.timeslot_start, b.id);
  });
  return pending;
}

const LabletDefinition* Reconcilers::DefinitionOf(const LabletInstance& i, DefinitionCache& cache) {
  auto key = std::make_pair(i.definition_id.value, i.definition_version);
  if (auto it = cache.find(key); it != cache.end()) return &it->second;
  auto def = d_.store.GetDefinition(i.definition_id, i.definition_version);
  if (!def) return nullptr;
  return &cache.emplace(key, std::move(def.value())).first->second;
}

Worker* Reconcilers::BestFit(std::vector<Worker>& workers, const LabletDefinition& def) {
  Worker* best = nullptr;
  for (auto& w : workers)
    if (w.CheckFits(def) && (!best || Fullness(w) > Fullness(*best))) best = &w;
  return best;
}

int Reconcilers::ScheduleOnce() {
  const auto pending = DuePending(d_.clock.Now());
  if (pending.empty()) return 0;
  auto workers = AllWorkers();
  DefinitionCache defs;
  // The placements are decided first, in timeslot order, each on the workers as the ones
  // before it left them (reserved here, in memory); then committed, one worker's in order and
  // the workers side by side, so that a wave's commits share the store's group commits. A
  // placement that no longer fits when committed (the API placed something meanwhile) leaves
  // its instance PENDING for the next sweep.
  std::vector<std::pair<const LabletInstance*, WorkerId>> plan;
  bool shortage = false;
  for (const auto& i : pending) {
    if (stopping_) break;
    const LabletDefinition* def = DefinitionOf(i, defs);
    if (!def) continue;
    Worker* best = BestFit(workers, *def);
    if (!best) {
      shortage = true;
      continue;
    }
    if (!best->Allocate(i.id, *def)) {  // it fits, but its ports do not: the scaler is asked too
      shortage = true;
      continue;
    }
    plan.emplace_back(&i, best->id);
  }
  // One commit per batch of one worker's placements (in timeslot order): the worker is read
  // and written once per batch rather than once per placement.
  struct Batch {
    WorkerId worker;
    std::vector<InstanceId> ids;
    std::vector<const LabletInstance*> instances;
  };
  std::vector<Batch> batches;
  std::map<std::string, size_t> open;  // each worker's batch still taking placements
  const size_t batch_size = std::max<size_t>(1, schedule_batch_.load());
  for (const auto& [i, worker] : plan) {
    auto it = open.find(worker.value);
    if (it == open.end() || batches[it->second].ids.size() >= batch_size) {
      batches.push_back(Batch{worker, {}, {}});
      it = open.insert_or_assign(worker.value, batches.size() - 1).first;
    }
    batches[it->second].ids.push_back(i->id);
    batches[it->second].instances.push_back(i);
  }
  std::vector<std::string> keys;
  keys.reserve(batches.size());
  for (const auto& b : batches) keys.push_back(b.worker.value);
  std::atomic<int> scheduled{0};
  RunConcurrentlyPerKey(keys, options_.instantiate_concurrency, 1, [&](size_t k) {
    if (stopping_) return;
    current_loop = kScheduler;
    const Batch& b = batches[k];
    log::Scope about({.worker_id = b.worker.value});
    std::vector<Result<LabletInstance>> outcomes;
    if (auto done = instances_.ScheduleBatch(b.ids, b.worker, kScheduler)) {
      outcomes = std::move(done.value());
    } else if (b.ids.size() == 1) {
      outcomes.push_back(done.error());
    } else {
      // A store may refuse a commit this large (etcd below --max-txn-ops=1024, or labs of
      // very many ports): each placement is then a commit of its own, and later batches are
      // half the size.
      const size_t halved = std::max<size_t>(1, b.ids.size() / 2);
      size_t current = schedule_batch_.load();
      while (current > halved && !schedule_batch_.compare_exchange_weak(current, halved)) {
      }
      spdlog::warn("scheduler: {} placements on worker {} not committed together ({}); batches of at most {} from now on",
                   b.ids.size(), b.worker.value, done.error().message, schedule_batch_.load());
      for (const InstanceId& id : b.ids) {
        if (stopping_) break;
        outcomes.push_back(instances_.Schedule(id, b.worker, kScheduler));
      }
    }
    for (size_t n = 0; n < outcomes.size(); ++n) {
      const auto& outcome = outcomes[n];
      if (outcome) {
        ++scheduled;
      } else if (outcome.error().code != ErrorCode::kConflict) {  // a conflict: it moved meanwhile
        log::Scope about(About(*b.instances[n]));
        spdlog::info("scheduler: instance {} not scheduled on worker {}: {}", b.ids[n].value, b.worker.value,
                     outcome.error().message);
      }
    }
  });
  if (shortage && cloud_) loops_[kScaleLoop]->Wake();
  return scheduled;
}

Reconcilers::Demand Reconcilers::MeasureDemand() {
  const auto pending = DuePending(d_.clock.Now());
  Demand demand;
  demand.due = static_cast<int>(pending.size());
  if (pending.empty()) return demand;
  auto workers = AllWorkers();
  DefinitionCache defs;
  for (const auto& i : pending)
    if (const LabletDefinition* def = DefinitionOf(i, defs); def && !BestFit(workers, *def)) ++demand.unplaceable;
  return demand;
}

// ---- instantiator --------------------------------------------------------------------------

int Reconcilers::InstantiateOnce() {
  // SCHEDULED instances whose lead has come (each moved to INSTANTIATING first), then the
  // INSTANTIATING ones whose import is still to be done; an instance read in both is acted on
  // once (next_poll_). Those with a lab on CML are the lab poller's.
  ports::InstanceFilter lead_come;
  lead_come.state = InstanceState::kScheduled;
  lead_come.starts_by = d_.clock.Now() + options_.instantiation_lead;
  std::vector<LabletInstance> due = Listed(lead_come);
  for (auto& i : InState(InstanceState::kInstantiating))
    if (!i.cml_lab_id) due.push_back(std::move(i));
  return RunInstantiation(kInstantiator, due, [&](const LabletInstance& i, InstantiatorSweep& sweep) {
    if (i.state == InstanceState::kScheduled) return BeginInstantiation(i, sweep);
    return Instantiate(i, sweep) ? 1 : 0;
  });
}

int Reconcilers::PollLabsOnce() {
  std::vector<LabletInstance> due;
  for (auto& i : InState(InstanceState::kInstantiating))
    if (i.cml_lab_id) due.push_back(std::move(i));
  return RunInstantiation(kLabPoller, due, [&](const LabletInstance& i, InstantiatorSweep& sweep) {
    return Instantiate(i, sweep) ? 1 : 0;
  });
}

int Reconcilers::RunInstantiation(const char* loop, const std::vector<LabletInstance>& due,
                                  const std::function<int(const LabletInstance&, InstantiatorSweep&)>& step) {
  InstantiatorSweep sweep;
  sweep.now = d_.clock.Now();
  const Timestamp now = sweep.now;
  std::vector<std::string> workers;
  workers.reserve(due.size());
  for (const auto& i : due) workers.push_back(i.worker_id ? i.worker_id->value : "");
  // The workers, read once for the sweep rather than once per instance and poll.
  if (!due.empty())
    for (auto& w : AllWorkers()) sweep.workers.emplace(w.id.value, std::move(w));
  std::atomic<int> steps{0};
  // One slow CML call (an import, a start) must not hold the rest of a wave behind it, and no
  // one worker's CML gets more than its share of calls at once.
  RunConcurrentlyPerKey(workers, options_.instantiate_concurrency, options_.cml_calls_per_worker, [&](size_t k) {
    if (stopping_) return;
    current_loop = loop;
    steps += step(due[k], sweep);
  });
  std::lock_guard lock(poll_mu_);
  std::erase_if(next_poll_, [&](const auto& e) { return e.second + std::chrono::minutes(10) < now; });
  std::erase_if(start_sent_, [&](const auto& e) { return e.second + options_.instantiation_timeout < now; });
  return steps;
}

Result<ports::LabToImport> Reconcilers::LabOf(const LabletInstance& i, InstantiatorSweep& sweep) {
  const LabletDefinition* def;  // kept by the sweep until it ends
  {
    std::lock_guard lock(sweep.mu);
    def = DefinitionOf(i, sweep.definitions);
  }
  if (!def) return Error::Unavailable("definition " + i.definition_id.value + " not read");
  auto yaml = RewriteLab(def->lab_yaml, i.allocated_ports);
  if (!yaml) return yaml.error();
  return ports::LabToImport{def->lab_yaml, i.allocated_ports, std::move(yaml.value())};
}

void Reconcilers::MarkImporting(LabletInstance& i, Timestamp now) const {
  ++i.cml_failures;
  i.cml_error = "an import started and did not finish";
  i.cml_retry_at = now + runtime::Jittered(CollectionBackoff(i.cml_failures, options_.cml_backoff, options_.cml_max_backoff));
}

int Reconcilers::BeginInstantiation(const LabletInstance& i, InstantiatorSweep& sweep) {
  const Timestamp now = sweep.now;
  const std::string reason = "timeslot starts at " + FormatRfc3339(i.timeslot_start);
  const auto worker = i.worker_id ? sweep.workers.find(i.worker_id->value) : sweep.workers.end();
  // The common case, in one commit: the move and the import's mark. Anything else (a
  // termination asked, a worker added since the sweep's read, a lab that cannot be written)
  // takes the path step by step, which records what went wrong.
  const bool at_once = !i.termination_requested && worker != sweep.workers.end();
  auto lab = at_once ? LabOf(i, sweep) : Result<ports::LabToImport>(Error::FailedPrecondition("not imported at once"));
  if (!lab) {
    auto moved = instances_.Transition(i.id, InstanceState::kInstantiating, reason, kInstantiator, std::nullopt);
    if (!moved) return 0;
    return Instantiate(*moved, sweep) ? 2 : 1;
  }
  log::Scope about(About(i));
  trace::Scope scope(WorkTrace(i));
  {
    std::lock_guard lock(poll_mu_);
    next_poll_[i.id.value] = now + options_.cml_poll;
  }
  InstanceService::MoveContext mark;
  mark.also = [&](LabletInstance& moved) { MarkImporting(moved, now); };
  auto marked = instances_.TransitionWith(i.id, InstanceState::kInstantiating, reason, kInstantiator, mark);
  if (!marked) return 0;
  ImportAndStart(*marked, 0, "", worker->second, *lab, now);
  return 2;
}

bool Reconcilers::Instantiate(const LabletInstance& i, InstantiatorSweep& sweep) {
  const Timestamp now = sweep.now;
  log::Scope about(About(i));
  if (i.cml_retry_at && *i.cml_retry_at > now) return false;
  trace::Scope scope(WorkTrace(i));  // its CML calls and its moves join the lablet's trace
  {
    std::lock_guard lock(poll_mu_);
    if (auto it = next_poll_.find(i.id.value); it != next_poll_.end() && it->second > now) return false;
    next_poll_[i.id.value] = now + options_.cml_poll;
  }
  if (!i.worker_id) return false;
  // A worker missing from the sweep's read was added after it: read from the store.
  std::optional<Worker> added;
  const Worker* worker = nullptr;
  if (const auto cached = sweep.workers.find(i.worker_id->value); cached != sweep.workers.end()) {
    worker = &cached->second;
  } else {
    auto read = d_.store.GetWorker(*i.worker_id);
    if (!read) return false;
    worker = &added.emplace(std::move(read.value()));
  }
  if (i.termination_requested && i.cml_lab_id) {
    // DELETE while the lab was starting: the lab goes first, then the instance.
    if (auto s = RemoveLab(*worker, *i.cml_lab_id); !s) {
      RecordCmlFailure(i, s.error(), now);
      return true;
    }
    // Asked by a DELETE, or left by a failed start whose lab could not be removed at once: the
    // reason says which, as the ending kept from the failure does.
    const bool failed = i.ending && i.ending->outcome == domain::Outcome::kInstantiationFailed;
    const std::string why = failed ? "instantiation failed: " + i.ending->message : "termination requested";
    return instances_
        .Transition(i.id, InstanceState::kTerminated, why + "; lab " + *i.cml_lab_id + " wiped and deleted",
                    kInstantiator, std::nullopt,
                    Ending{domain::Outcome::kCancelled, "instantiation", "termination_requested", "termination requested"})
        .has_value();
  }
  if (now - i.EnteredAt() > options_.instantiation_timeout) {
    RecordCmlFailure(i, Error::Unavailable("the lab did not start within the instantiation timeout"), now);
    return true;
  }
  if (!i.cml_lab_id) {
    auto lab = LabOf(i, sweep);
    if (!lab) {
      if (lab.error().code == ErrorCode::kUnavailable) return false;  // the definition was not read
      RecordCmlFailure(i, lab.error(), now);
      return true;
    }
    if (i.cml_failures >= options_.cml_max_failures) {
      RecordCmlFailure(i, Error::Unavailable(std::to_string(i.cml_failures) + " attempts to import the lab did not finish"),
                       now, /*counted=*/true);
      return true;
    }
    auto marked = instances_.Record(i.id, [&](LabletInstance& current) -> Status {
      if (current.state != InstanceState::kInstantiating || current.cml_lab_id)
        return Error::Conflict("instance moved before its lab was imported", "state");
      MarkImporting(current, now);
      return {};
    });
    if (!marked) return false;
    ImportAndStart(*marked, i.cml_failures, i.cml_error, *worker, *lab, now);
    return true;
  }
  // One call per poll: the lab's state. A lab not STARTED yet is most often one still starting
  // (CML reports it as it was until then), so the start is sent again only when this process
  // has not sent it within cml_start_resend: after a restart or a new leader, after a failed
  // start, or when a start seems lost.
  auto state = cml_.LabState(ports::CmlTargetOf(*worker), *i.cml_lab_id);
  if (!state) {
    RecordCmlFailure(i, state.error(), now);
    return true;
  }
  if (*state != ports::CmlLabState::kStarted) {
    bool resend;
    {
      std::lock_guard lock(poll_mu_);
      auto it = start_sent_.find(i.id.value);
      resend = it == start_sent_.end() || it->second + options_.cml_start_resend <= now;
    }
    if (resend) SendStart(i, *worker, *i.cml_lab_id, now);
    return false;
  }
  {
    std::lock_guard lock(poll_mu_);
    start_sent_.erase(i.id.value);
  }
  InstanceService::MoveContext read;
  read.worker = worker;  // named by the event; a move to RUNNING gives nothing back to it
  auto running = instances_.TransitionWith(i.id, InstanceState::kRunning, "lab " + *i.cml_lab_id + " started on CML",
                                           kInstantiator, read);
  if (!running && running.error().code != ErrorCode::kConflict) {
    CountError(current_loop);
    spdlog::warn("instantiator: instance {} not moved to RUNNING: {}", i.id.value, running.error().message);
  }
  return running.has_value();
}

void Reconcilers::ImportAndStart(const LabletInstance& marked, int failures_before, const std::string& error_before,
                                 const Worker& worker, const ports::LabToImport& lab, Timestamp now) {
  auto lab_id = cml_.ImportLabOf(ports::CmlTargetOf(worker), lab, "lablet " + marked.id.value);
  if (!lab_id) {
    RecordCmlFailure(marked, lab_id.error(), now, /*counted=*/true);
    return;
  }
  // The lab id is durable before anything else happens to the lab, so that no lab is lost.
  auto recorded = instances_.Record(marked.id, [&](LabletInstance& current) -> Status {
    if (current.state != InstanceState::kInstantiating || current.cml_lab_id)
      return Error::Conflict("instance moved while its lab was imported", "state");
    current.cml_lab_id = *lab_id;
    current.cml_failures = failures_before;  // the import finished: it did not fail
    current.cml_error = error_before;
    current.cml_retry_at.reset();
    return {};
  });
  if (!recorded) {
    CountError(kInstantiator);
    spdlog::warn("instantiator: instance {}: imported lab {} not recorded ({}); removing it", marked.id.value,
                 *lab_id, recorded.error().message);
    (void)RemoveLab(worker, *lab_id);
    return;
  }
  SendStart(*recorded, worker, *lab_id, now);
}

void Reconcilers::SendStart(const LabletInstance& i, const Worker& worker, const std::string& lab_id, Timestamp now) {
  if (auto s = cml_.StartLab(ports::CmlTargetOf(worker), lab_id); !s) {
    RecordCmlFailure(i, s.error(), now);
    return;
  }
  std::lock_guard lock(poll_mu_);
  start_sent_[i.id.value] = now;
}

void Reconcilers::RecordCmlFailure(const LabletInstance& i, const Error& e, Timestamp now, bool counted) {
  const bool instantiating = i.state == InstanceState::kInstantiating;
  const int failures = i.cml_failures + (counted ? 0 : 1);
  const bool timed_out = now - i.EnteredAt() > options_.instantiation_timeout;
  const bool give_up = instantiating && (failures >= options_.cml_max_failures || timed_out);
  CountError(instantiating ? current_loop : kStopper);  // the instantiator's, or the lab poller's
  spdlog::warn("{}: instance {}: {}{}", instantiating ? kInstantiator : kStopper, i.id.value, e.message,
               give_up ? "; giving up" : "");
  if (give_up) {
    const Ending failed{domain::Outcome::kInstantiationFailed, "instantiation",
                        timed_out ? "instantiation_timeout" : "cml_failed", e.message};
    // Nothing of the failed lab stays on the worker; then everything is given back. A lab that
    // cannot be removed now is removed by the next attempts, as for a termination asked while
    // it was starting, and the lablet ends then: no lab is left behind on a reachable CML.
    if (i.cml_lab_id && i.worker_id)
      if (auto w = d_.store.GetWorker(*i.worker_id))
        if (auto removed = RemoveLab(*w, *i.cml_lab_id); !removed) {
          spdlog::warn("instantiator: lab {} of instance {} not removed ({}); removing it again later",
                       *i.cml_lab_id, i.id.value, removed.error().message);
          (void)instances_.Record(i.id, [&](LabletInstance& current) -> Status {
            if (current.state != i.state) return Error::Conflict("instance moved", "state");
            current.termination_requested = true;
            if (!current.ending) current.ending = failed;
            current.cml_failures = failures;
            current.cml_error = removed.error().message;
            current.cml_retry_at =
                now + runtime::Jittered(CollectionBackoff(failures, options_.cml_backoff, options_.cml_max_backoff));
            return {};
          });
          return;
        }
    (void)instances_.Transition(i.id, InstanceState::kTerminated, "instantiation failed: " + e.message, kInstantiator,
                                std::nullopt, failed);
    return;
  }
  (void)instances_.Record(i.id, [&](LabletInstance& current) -> Status {
    if (current.state != i.state) return Error::Conflict("instance moved", "state");
    if (!counted) ++current.cml_failures;
    current.cml_error = e.message;
    current.cml_retry_at =
        now + runtime::Jittered(CollectionBackoff(current.cml_failures, options_.cml_backoff, options_.cml_max_backoff));
    return {};
  });
}

Status Reconcilers::RemoveLab(const Worker& worker, const std::string& lab_id) {
  return RemoveCmlLab(cml_, ports::CmlTargetOf(worker), lab_id);
}

// ---- stopper -------------------------------------------------------------------------------

int Reconcilers::StopOnce() {
  const Timestamp now = d_.clock.Now();
  int steps = 0;
  if (metrics_ && (!counted_at_ || now - *counted_at_ >= options_.interval)) {
    // The gauges, from the store's counts (the sweeps below read only what they act on), at
    // most once per interval: a wave's commits wake this loop up to ten times a second, and
    // on etcd a count reads the bodies of every lablet not yet TERMINATED.
    counted_at_ = now;
    if (auto counts = d_.store.CountInstances()) metrics_->Observe(*counts);
    else CountError(kStopper);
  }
  // Each step ends before a stop is noticed; the steps not taken are the next leader's.
  ports::InstanceFilter ended;
  ended.state = InstanceState::kRunning;
  ended.ends_by = now;
  for (const auto& i : Listed(ended))
    if (!stopping_ && EndTimeslot(i)) ++steps;
  for (const auto s : {InstanceState::kCollecting, InstanceState::kGrading})
    for (const auto& i : InState(s))
      if (!stopping_ && TimeOut(i, now)) ++steps;
  for (const auto& i : InState(InstanceState::kStopping))
    if (!stopping_ && StopInstance(i, now)) ++steps;
  for (const auto& i : InState(InstanceState::kStopped))
    if (!stopping_ && instances_.Transition(i.id, InstanceState::kArchived, "archived", kStopper, std::nullopt))
      ++steps;
  for (const auto& i : InState(InstanceState::kArchived))
    if (!stopping_ && TerminateArchived(i, now)) ++steps;
  return steps;
}

bool Reconcilers::EndTimeslot(const LabletInstance& i) {
  log::Scope about(About(i));
  std::string not_assessed;
  if (!i.assessment) not_assessed = "it has no assessment ids";
  else if (!options_.assessment_platform) not_assessed = "no Assessment Platform is configured";
  if (not_assessed.empty()) return collection_.Collect(i.id, kStopper, CollectionReason::kTimeslotEnd).has_value();
  const std::string reason = "timeslot ended; not assessed: " + not_assessed;
  auto moved = instances_.Transition(
      i.id, InstanceState::kStopping, reason, kStopper, std::nullopt,
      Ending{domain::Outcome::kNotAssessed, "running", i.assessment ? "no_assessment_platform" : "no_assessment_ids",
             reason});
  if (moved && metrics_) ++metrics_->not_assessed;
  return moved.has_value();
}

bool Reconcilers::TimeOut(const LabletInstance& i, Timestamp now) {
  log::Scope about(About(i));
  const bool collecting = i.state == InstanceState::kCollecting;
  const auto limit = collecting ? options_.collecting_timeout : options_.grading_timeout;
  if (now - i.EnteredAt() < limit) return false;
  std::string reason = std::string(collecting ? "collection" : "grading") + " timed out after " + Seconds(limit);
  if (collecting && i.collection_refused) reason += " (the platform refused the collection: " + i.collection_request_error + ")";
  else if (collecting && !i.collection_request_error.empty()) reason += " (last request: " + i.collection_request_error + ")";
  // A refused collection failed for good (the time-out only ends the wait); anything else timed out.
  const Ending ending = collecting && i.collection_refused
                            ? Ending{domain::Outcome::kCollectionFailed, "collection", "collection_refused", reason}
                            : Ending{domain::Outcome::kTimedOut, StageOf(i.state),
                                     collecting ? "collecting_timeout" : "grading_timeout", reason};
  auto moved = instances_.Transition(i.id, InstanceState::kStopping, reason, kStopper, std::nullopt, ending);
  if (!moved) return false;
  spdlog::warn("stopper: instance {}: {}", i.id.value, reason);
  if (metrics_) ++(collecting ? metrics_->collecting_timeouts : metrics_->grading_timeouts);
  return true;
}

bool Reconcilers::StopInstance(const LabletInstance& i, Timestamp now) {
  log::Scope about(About(i));
  if (i.cml_retry_at && *i.cml_retry_at > now) return false;
  trace::Scope scope(WorkTrace(i));
  std::string reason = "no lab to stop";
  if (i.cml_lab_id && i.worker_id) {
    auto worker = d_.store.GetWorker(*i.worker_id);
    if (!worker) return false;
    Status s = cml_.StopLab(ports::CmlTargetOf(*worker), *i.cml_lab_id);
    if (!s && s.error().code != ErrorCode::kNotFound) {
      RecordCmlFailure(i, s.error(), now);
      return false;
    }
    reason = "lab " + *i.cml_lab_id + " stopped on CML";
  }
  if (!instances_.Transition(i.id, InstanceState::kStopped, reason, kStopper, std::nullopt)) return false;
  (void)instances_.Transition(i.id, InstanceState::kArchived, "archived", kStopper, std::nullopt);
  return true;
}

bool Reconcilers::TerminateArchived(const LabletInstance& i, Timestamp now) {
  log::Scope about(About(i));
  if (!i.termination_requested && i.EnteredAt() + options_.archive_retention > now) return false;
  if (i.cml_retry_at && *i.cml_retry_at > now) return false;
  trace::Scope scope(WorkTrace(i));
  std::string reason = i.termination_requested ? "termination requested" : "archive retention over";
  if (i.cml_lab_id && i.worker_id) {
    auto worker = d_.store.GetWorker(*i.worker_id);
    if (!worker) return false;
    if (auto s = RemoveLab(*worker, *i.cml_lab_id); !s) {
      RecordCmlFailure(i, s.error(), now);
      return false;
    }
    reason += "; lab " + *i.cml_lab_id + " wiped and deleted";
  }
  return instances_.Transition(i.id, InstanceState::kTerminated, reason, kStopper, std::nullopt).has_value();
}

// ---- pod assigner --------------------------------------------------------------------------

int Reconcilers::AssignPodsOnce() {
  const Timestamp now = d_.clock.Now();
  const auto backoff = [this](int failures) {
    return runtime::Jittered(CollectionBackoff(failures, options_.pod_backoff, options_.pod_max_backoff));
  };
  ports::InstanceFilter pod_due;
  pod_due.state = InstanceState::kRunning;
  pod_due.pod_due_by = now;
  std::vector<InstanceId> due;
  for (const auto& i : Listed(pod_due)) due.push_back(i.id);
  std::atomic<int> steps{0};
  // A slow or failing engine must not hold every other pod behind one call.
  RunConcurrently(due.size(), options_.max_concurrent_calls, [&](size_t k) {
    if (stopping_) return;
    log::Scope about({.lablet_id = due[k].value});
    auto done = instances_.AssignDuePod(due[k], backoff);
    if (done && !*done) return;  // nothing was due after all
    ++steps;
    if (done) {
      if (metrics_) ++metrics_->pod_assigned;
      return;
    }
    const bool retried = done.error().code == ErrorCode::kUnavailable;
    if (metrics_) ++(retried ? metrics_->pod_failed : metrics_->pod_refused);
    CountError(kPodAssigner);
    spdlog::warn("{}: instance {}: pod not assigned{}: {}", kPodAssigner, due[k].value,
                 retried ? " (tried again later)" : " (refused for good)", done.error().message);
  });
  return steps;
}

// ---- scaler --------------------------------------------------------------------------------

Status Reconcilers::Provision(Worker& w, const ports::CloudWorker& machine) const {
  if (auto s = options_.cml_url_allow.Check(machine.cml_url); !s) return s;
  return w.Provisioned(DraftOf(machine));
}

Status Reconcilers::CommitWorker(const Worker& w, std::vector<ports::OutboxEvent> events) {
  ports::Changes changes;
  changes.workers.push_back(w);
  changes.events = std::move(events);
  return d_.store.Commit(changes);
}

int Reconcilers::ScaleOnce() {
  const Timestamp now = d_.clock.Now();
  int steps = 0;
  // Measured afresh, not taken from the scheduler's last sweep: a worker that has just become
  // RUNNING is counted, so that one shortage asks once; and no worker is drained while due
  // instances wait to be placed.
  const Demand demand = cloud_ ? MeasureDemand() : Demand{};
  const int shortage = demand.unplaceable;
  bool asked = false;  // a requested worker is on its way
  for (Worker w : AllWorkers()) {
    // Not a break: a stopped sweep must not go on to ask for a worker it has not counted.
    if (stopping_) return steps;
    log::Scope about({.worker_id = w.id.value});
    const bool launching = w.state == WorkerState::kPending || w.state == WorkerState::kProvisioning;
    if (w.scaled_up && launching) asked = true;
    Status done;
    if (cloud_ && w.scaled_up && w.state == WorkerState::kPending) {
      // Launched with the worker's id as the token: a retry after a crash finds the same machine.
      auto machine = cloud_->Launch(w.template_name, w.id.value);
      if (!machine) {
        CountError(kScaler);
        spdlog::warn("scaler: worker {} not launched: {}", w.id.value, machine.error().message);
        continue;
      }
      if (auto s = Provision(w, *machine); !s) {
        CountError(kScaler);
        spdlog::warn("scaler: worker {}: the provider's machine is unusable: {}", w.id.value, s.error().message);
        continue;
      }
      w.cloud_id = machine->id;
      auto change = w.MoveTo(WorkerState::kProvisioning, now, "launched from template " + w.template_name, kScaler);
      if (!change) continue;
      done = CommitWorker(w, {d_.events.WorkerMoved(w, *change)});
    } else if (cloud_ && w.state == WorkerState::kProvisioning && !w.cloud_id.empty()) {
      auto machine = cloud_->Describe(w.cloud_id);
      if (!machine || !machine->ready) continue;
      if (auto s = Provision(w, *machine); !s) continue;
      auto change = w.MoveTo(WorkerState::kRunning, now, "the provider reports it ready", kScaler);
      if (!change) continue;
      std::vector<ports::OutboxEvent> events{d_.events.WorkerMoved(w, *change)};
      if (w.scaled_up)
        events.push_back(
            d_.events.Scaling(wire::ScaleUpCompleted{w.id.value, w.template_name, w.hostname}, w.id.value, now));
      done = CommitWorker(w, std::move(events));
    } else if (cloud_ && w.state == WorkerState::kRunning && !w.cloud_id.empty() && w.ActiveInstances() == 0 &&
               demand.due == 0 && w.idle_since && *w.idle_since + options_.scale_down_grace <= now) {
      auto change = w.MoveTo(WorkerState::kDraining, now, "idle since " + FormatRfc3339(*w.idle_since), kScaler);
      if (!change) continue;
      w.scale_down = true;
      done = CommitWorker(
          w, {d_.events.Scaling(wire::ScaleDownRequested{w.id.value, change->reason}, w.id.value, now),
              d_.events.WorkerMoved(w, *change, now)});  // idle: drained at once
    } else if (w.state == WorkerState::kDraining && w.ActiveInstances() == 0) {
      auto change = w.MoveTo(WorkerState::kStopping, now, "drained", kScaler);
      if (!change) continue;
      done = CommitWorker(w, {d_.events.WorkerMoved(w, *change)});
    } else if (w.state == WorkerState::kStopping) {
      if (cloud_ && !w.cloud_id.empty()) {
        if (auto s = cloud_->Release(w.cloud_id); !s && s.error().code != ErrorCode::kNotFound) {
          CountError(kScaler);
          spdlog::warn("scaler: worker {} not released: {}", w.id.value, s.error().message);
          continue;
        }
      }
      auto change = w.MoveTo(WorkerState::kStopped, now, w.cloud_id.empty() ? "stopped" : "released", kScaler);
      if (!change) continue;
      std::vector<ports::OutboxEvent> events{d_.events.WorkerMoved(w, *change)};
      if (w.scale_down)
        events.push_back(d_.events.Scaling(wire::ScaleDownCompleted{w.id.value}, w.id.value, now));
      done = CommitWorker(w, std::move(events));
    } else if (cloud_ && w.state == WorkerState::kStopped && !w.cloud_id.empty()) {
      // Released: it ends once the provider no longer runs it.
      auto machine = cloud_->Describe(w.cloud_id);
      const bool gone = machine ? machine->released : machine.error().code == ErrorCode::kNotFound;
      if (!gone) continue;
      auto change = w.MoveTo(WorkerState::kTerminated, now, "the provider confirms it released", kScaler);
      if (!change) continue;
      done = CommitWorker(w, {d_.events.WorkerMoved(w, *change)});
      if (done && metrics_) ++metrics_->workers_terminated;
    } else {
      continue;
    }
    if (done) ++steps;
  }
  if (cloud_ && shortage > 0 && !asked) {
    // One request per shortage: the next one waits until this worker is RUNNING.
    Worker w = RequestedWorker(WorkerId{d_.ids.NewId()}, options_.scale_up_template, now);
    std::vector<ports::OutboxEvent> events = d_.events.WorkerCreated(w);
    events.push_back(d_.events.Scaling(
        wire::ScaleUpRequested{w.id.value, options_.scale_up_template,
                               std::to_string(shortage) + " pending instances fit no running worker", shortage},
        w.id.value, now));
    if (CommitWorker(w, std::move(events))) {
      spdlog::info("scaler: asked for a worker from template {} ({} pending instances fit nowhere)",
                   options_.scale_up_template, shortage);
      ++steps;
    }
  }
  return steps;
}

}  // namespace ccm::app
