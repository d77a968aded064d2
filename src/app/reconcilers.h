#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "app/collection.h"
#include "app/services.h"
#include "ports/cloud_provider.h"
#include "ports/cml.h"
#include "ports/observers.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "runtime/background_loop.h"
#include "runtime/background_work.h"

namespace ccm::app {

struct ReconcilerOptions {
  // How often each loop sweeps when nothing wakes it.
  std::chrono::milliseconds interval{1000};
  // A PENDING instance is scheduled once its timeslot starts within this time.
  std::chrono::milliseconds schedule_ahead = std::chrono::minutes(60);
  // A SCHEDULED instance starts instantiating this long before its timeslot starts.
  std::chrono::milliseconds instantiation_lead = std::chrono::minutes(5);
  // An instance still INSTANTIATING after this long has failed.
  std::chrono::milliseconds instantiation_timeout = std::chrono::minutes(15);
  // Failed CML steps in a row before an instantiation gives up (TERMINATED). Stopping and
  // terminating never give up: they retry with backoff, the error visible on the instance.
  int cml_max_failures = 3;
  std::chrono::milliseconds cml_backoff{1000};  // doubled per failure
  std::chrono::milliseconds cml_max_backoff = std::chrono::minutes(5);
  // How often the state of a starting lab is read (one CML call per poll).
  std::chrono::milliseconds cml_poll{500};
  // A lab not STARTED yet is sent its start again once this long has passed since this
  // process last sent it (at once when it has not sent it: after a restart or a new leader).
  std::chrono::milliseconds cml_start_resend = std::chrono::seconds(30);
  // An ARCHIVED instance is terminated this long after archiving (0: at once); at once when
  // its termination was requested.
  std::chrono::milliseconds archive_retention = std::chrono::minutes(60);
  // Scaling (only with a cloud provider): the template of the workers asked for, and how long
  // a launched worker stays idle before it is drained.
  std::string scale_up_template = "cml-enterprise";
  std::chrono::milliseconds scale_down_grace = std::chrono::minutes(30);
  // The hosts a launched machine's cml_url may name (CML_URL_ALLOW); a machine whose URL is
  // refused is not taken, as any unusable machine.
  domain::CmlUrlAllowList cml_url_allow;
  // Whether collections can be asked at all (an Assessment Platform is configured): without
  // one, an instance goes from RUNNING to STOPPING at its timeslot's end, not to COLLECTING.
  bool assessment_platform = true;
  // How long an instance may stay COLLECTING, or GRADING, before it moves on to STOPPING
  // without a score.
  std::chrono::milliseconds collecting_timeout = std::chrono::minutes(30);
  std::chrono::milliseconds grading_timeout = std::chrono::minutes(60);
  // Pod assignment retries: `pod_backoff` doubling per failure up to `pod_max_backoff`, jittered.
  std::chrono::milliseconds pod_backoff{1000};
  std::chrono::milliseconds pod_max_backoff = std::chrono::minutes(5);
  // Calls to the Grading Engine made at once by one sweep.
  int max_concurrent_calls = 16;
  // Instances one instantiator sweep acts on at once (each step: its commits and its CML
  // calls), and of those at most `cml_calls_per_worker` on any one worker, so that a wave of
  // thousands of labs is imported and started side by side without one CML taking them all.
  int instantiate_concurrency = 32;
  int cml_calls_per_worker = 4;
  // The placements on one worker that the scheduler commits together: the worker (its JSON
  // with every reservation on it) is read and written once per batch. On etcd a placement is
  // about seven operations and one more per port: a batch fits --max-txn-ops=1024 up to about
  // 50 ports per lab. A batch the store refuses whole is committed placement by placement, and
  // later batches are half its size.
  size_t schedule_batch = 16;
};

// What the reconcilers saw and did, for /metrics. Thread-safe.
struct LifecycleMetrics {
  // Instances per state, and when the one longest in that state entered it, as of the
  // stopper's last sweep (the store's counts; TERMINATED is not counted). Set by the leader only.
  struct StateGauge {
    std::int64_t count = -1;  // -1: not measured yet
    std::optional<Timestamp> oldest_entered_at;
  };
  // Sets every state but TERMINATED: a state absent from `counts` has none.
  void Observe(const std::map<domain::InstanceState, ports::StateCount>& counts);
  std::map<domain::InstanceState, StateGauge> States() const;

  std::atomic<std::uint64_t> pod_assigned{0};  // pods the Grading Engine took
  std::atomic<std::uint64_t> pod_failed{0};    // attempts to be made again
  std::atomic<std::uint64_t> pod_refused{0};   // refused for good
  std::atomic<std::uint64_t> collecting_timeouts{0};
  std::atomic<std::uint64_t> grading_timeouts{0};
  std::atomic<std::uint64_t> not_assessed{0};  // RUNNING -> STOPPING at timeslot end, nothing to collect
  std::atomic<std::uint64_t> workers_terminated{0};
  // Told of each sweep of each loop ("scheduler", "instantiator", "lab-poller", "stopper",
  // "pod-assigner", "scaler"): its steps, errors and duration. Null: nobody is. Not owned.
  ports::LoopObserver* loops = nullptr;

 private:
  mutable std::mutex mu_;
  std::map<domain::InstanceState, StateGauge> states_;
};

// The background work that moves instances and workers along their lifecycles:
// - scheduler: PENDING -> SCHEDULED on the fullest RUNNING worker that fits (decided in
//   timeslot order, then committed in batches of schedule_batch per worker, the workers side
//   by side);
// - instantiator: SCHEDULED -> INSTANTIATING: the lab, with its ports, imported into the
//   worker's CML and started; failures retried, then TERMINATED;
// - lab poller: INSTANTIATING -> RUNNING once CML reports the lab started (the start sent
//   again when it seems lost; the lab removed first when termination was asked meanwhile).
//   Each of these two runs up to instantiate_concurrency instances at once, and
//   cml_calls_per_worker of them per worker, so that polls never wait behind a wave's imports;
// - stopper: RUNNING past its timeslot -> collected (or STOPPING when it is not assessed: no
//   assessment ids, or no platform); COLLECTING and GRADING past their time-outs ->
//   STOPPING; STOPPING -> STOPPED -> ARCHIVED (lab stopped); ARCHIVED -> TERMINATED after the
//   retention (lab wiped and deleted);
// - pod assigner: the pod of each RUNNING instance whose assignment is due is sent to the
//   Grading Engine, retried with jittered backoff until taken, refused, or the instance moves;
// - scaler: workers asked for when pending instances fit nowhere, idle launched workers
//   drained and released; DRAINING -> STOPPING -> STOPPED for every worker; a released
//   worker -> TERMINATED once the provider no longer runs it.
// Each loop runs on its own thread, every `interval` and whenever Wake is called (on every
// commit), but at most once per 100 ms (or per `interval`, if shorter), and under load commits
// come by the thousand per second: so each sweep reads only the instances it can act on where
// the store can select them by an index (the PENDING ones due, the SCHEDULED ones whose lead
// has come, the RUNNING ones whose timeslot ended or whose pod is due), and the gauges come from
// the store's counts. Each step re-reads what it changes and commits with the version it read, so the
// loops, the API and the events endpoint may act on one instance at once. Thread-safe.
class Reconcilers final : public runtime::BackgroundTask {
 public:
  // `cloud` may be null: then nothing is scaled (workers still drain and stop). Not owned.
  // `metrics` may be null. Not owned.
  Reconcilers(Deps deps, InstanceService& instances, CollectionService& collection, ports::CmlWorkers& cml,
              ports::CloudProvider* cloud, ReconcilerOptions options, LifecycleMetrics* metrics = nullptr);
  ~Reconcilers();

  // One sweep of each; they return how many steps they took.
  int ScheduleOnce();
  int InstantiateOnce();
  int PollLabsOnce();
  int StopOnce();
  int AssignPodsOnce();
  int ScaleOnce();
  struct Demand {
    int due = 0;          // PENDING instances due to be scheduled
    int unplaceable = 0;  // of which no RUNNING worker can take now
  };
  Demand MeasureDemand();

  std::string_view name() const override { return "reconcilers"; }
  void Start() override;
  // Each loop ends the step in progress (one instance or worker acted on and committed) and
  // stops; the rest of its sweep is left for the next start or the next leader. RequestStop
  // asks them; Stop also joins them.
  void RequestStop() override;
  void Stop() override;
  // Every loop sweeps again soon (the collection reconciler too).
  void Wake() override;

 private:
  // Each instance step: acts on CML on its worker (from `sweep.workers`, read by the sweep, or
  // else from the store), then commits.
  using WorkerCache = std::map<std::string, domain::Worker, std::less<>>;
  using DefinitionCache = std::map<std::pair<std::string, std::string>, domain::LabletDefinition>;
  // What one instantiator sweep read once for all its steps (they run side by side).
  struct InstantiatorSweep {
    Timestamp now;
    WorkerCache workers;  // read at the start of the sweep
    std::mutex mu;
    DefinitionCache definitions;  // read on first use, under mu
  };
  bool Instantiate(const domain::LabletInstance& i, InstantiatorSweep& sweep);
  // Runs `step` on each of `due` (instantiate_concurrency at once, cml_calls_per_worker per
  // worker) with the workers read once; returns the steps taken.
  int RunInstantiation(const char* loop, const std::vector<domain::LabletInstance>& due,
                       const std::function<int(const domain::LabletInstance&, InstantiatorSweep&)>& step);
  // A SCHEDULED instance whose lead has come: moved to INSTANTIATING and, when its lab can be
  // imported at once, marked as importing in the same commit, then imported and started.
  // Returns the steps taken.
  int BeginInstantiation(const domain::LabletInstance& i, InstantiatorSweep& sweep);
  // The lab of `i` to import: its definition's lab, and that lab with the instance's ports
  // (which refer to `i` and to the sweep's definitions).
  Result<ports::LabToImport> LabOf(const domain::LabletInstance& i, InstantiatorSweep& sweep);
  // Imports `lab` for `marked` (marked as importing: MarkImporting), records its lab id, and
  // sends the start. `failures_before`, `error_before`: the instance's CML failures and error
  // before the mark, which the recorded lab id puts back (the import did not fail).
  void ImportAndStart(const domain::LabletInstance& marked, int failures_before, const std::string& error_before,
                      const domain::Worker& worker, const ports::LabToImport& lab, Timestamp now);
  // An import counts as failed until its outcome is recorded: one that takes the process down
  // (whatever the cause) is not tried for ever by each restart or new leader.
  void MarkImporting(domain::LabletInstance& i, Timestamp now) const;
  bool StopInstance(const domain::LabletInstance& i, Timestamp now);
  bool TerminateArchived(const domain::LabletInstance& i, Timestamp now);
  // RUNNING past its timeslot: collected, or straight to STOPPING when it is not assessed.
  bool EndTimeslot(const domain::LabletInstance& i);
  // COLLECTING or GRADING past its time-out: STOPPING without a score.
  bool TimeOut(const domain::LabletInstance& i, Timestamp now);
  // Records a failed CML step on the instance, with the time of the next attempt; gives the
  // instantiation up after cml_max_failures (or its time-out): the lab is removed, then the
  // instance TERMINATED; a removal CML refuses leaves it INSTANTIATING with its termination
  // asked, for the next attempts. `counted`: the failure is in i.cml_failures already (an
  // import marked as failed until it finished).
  void RecordCmlFailure(const domain::LabletInstance& i, const Error& e, Timestamp now, bool counted = false);
  // Stops, wipes and deletes the instance's lab (RemoveCmlLab).
  Status RemoveLab(const domain::Worker& worker, const std::string& lab_id);
  // Commits a worker with its events.
  Status CommitWorker(const domain::Worker& w, std::vector<ports::OutboxEvent> events);
  // Takes the provider's machine for `w` (Worker::Provisioned) if its cml_url is allowed.
  // Errors: invalid_argument naming the field; `w` is unchanged then.
  Status Provision(domain::Worker& w, const ports::CloudWorker& machine) const;

  // PENDING instances whose timeslot starts within schedule_ahead, earliest first.
  std::vector<domain::LabletInstance> DuePending(Timestamp now);
  const domain::LabletDefinition* DefinitionOf(const domain::LabletInstance& i, DefinitionCache& cache);
  // The fullest worker `def` fits on, or null.
  static domain::Worker* BestFit(std::vector<domain::Worker>& workers, const domain::LabletDefinition& def);
  std::vector<domain::LabletInstance> InState(domain::InstanceState s);
  // Every instance that passes `filter`, page by page.
  std::vector<domain::LabletInstance> Listed(const ports::InstanceFilter& filter);
  // Sends the lab its start; a failure is recorded on the instance, a success in start_sent_.
  void SendStart(const domain::LabletInstance& i, const domain::Worker& worker, const std::string& lab_id,
                 Timestamp now);
  std::vector<domain::Worker> AllWorkers();
  // Counts an error met by `loop` (one of the loops' names; null or another name: nothing).
  void CountError(const char* loop);

  Deps d_;
  InstanceService& instances_;
  CollectionService& collection_;
  ports::CmlWorkers& cml_;
  ports::CloudProvider* cloud_;
  ReconcilerOptions options_;
  LifecycleMetrics* metrics_;
  std::mutex poll_mu_;
  std::map<std::string, Timestamp> next_poll_;  // instance id -> next read of its lab's state
  std::map<std::string, Timestamp> start_sent_;  // instance id -> when this process last sent its lab's start
  std::optional<Timestamp> counted_at_;  // the gauges' last count (the stopper's thread only)
  std::vector<std::unique_ptr<runtime::BackgroundLoop>> loops_;
  // Errors met per loop, for LifecycleMetrics::loops; the keys are set before the loops start.
  std::map<std::string_view, std::atomic<int>, std::less<>> errors_;
  std::atomic<size_t> schedule_batch_;  // options_.schedule_batch, halved by each batch refused whole
  std::atomic<bool> stopping_{false};  // Stop was called: sweeps end after their current step
};

}  // namespace ccm::app
