#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "app/background_loop.h"
#include "app/collection.h"
#include "app/services.h"

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
  // How often the state of a starting lab is read.
  std::chrono::milliseconds cml_poll{500};
  // An ARCHIVED instance is terminated this long after archiving (0: at once); at once when
  // its termination was requested.
  std::chrono::milliseconds archive_retention = std::chrono::minutes(60);
  // Scaling (only with a cloud provider): the template of the workers asked for, and how long
  // a launched worker stays idle before it is drained.
  std::string scale_up_template = "cml-enterprise";
  std::chrono::milliseconds scale_down_grace = std::chrono::minutes(30);
};

// The background work that moves instances and workers along their lifecycles:
// - scheduler: PENDING -> SCHEDULED on the fullest RUNNING worker that fits;
// - instantiator: SCHEDULED -> INSTANTIATING -> RUNNING: the lab, with its ports, imported
//   into the worker's CML and started; failures retried, then TERMINATED;
// - stopper: RUNNING past its timeslot -> collected; STOPPING -> STOPPED -> ARCHIVED (lab
//   stopped); ARCHIVED -> TERMINATED after the retention (lab wiped and deleted);
// - scaler: workers asked for when pending instances fit nowhere, idle launched workers
//   drained and released; DRAINING -> STOPPING -> STOPPED for every worker.
// Each loop runs on its own thread, every `interval` and whenever Wake is called (on every
// commit), but at most once per 100 ms (or per `interval`, if shorter): each sweep lists the
// instances of its states, and under load commits come by the thousand per second. Each step re-reads what it changes and commits with the version it read, so the
// loops, the API and the events endpoint may act on one instance at once. Thread-safe.
class Reconcilers {
 public:
  // `cloud` may be null: then nothing is scaled (workers still drain and stop). Not owned.
  Reconcilers(Deps deps, InstanceService& instances, CollectionService& collection, CmlWorkers& cml,
              CloudProvider* cloud, ReconcilerOptions options);
  ~Reconcilers();

  // One sweep of each; they return how many steps they took.
  int ScheduleOnce();
  int InstantiateOnce();
  int StopOnce();
  int ScaleOnce();
  struct Demand {
    int due = 0;          // PENDING instances due to be scheduled
    int unplaceable = 0;  // of which no RUNNING worker can take now
  };
  Demand MeasureDemand();

  void Start();
  void Stop();
  // Every loop sweeps again soon.
  void Wake();

 private:
  // Each instance step: reads its worker and acts on CML, then commits.
  bool Instantiate(const domain::LabletInstance& i, Timestamp now);
  bool StopInstance(const domain::LabletInstance& i, Timestamp now);
  bool TerminateArchived(const domain::LabletInstance& i, Timestamp now);
  // Records a failed CML step on the instance, with the time of the next attempt.
  void RecordCmlFailure(const domain::LabletInstance& i, const Error& e, Timestamp now);
  // Stops, wipes and deletes the instance's lab; a lab that is gone already counts as done.
  Status RemoveLab(const domain::Worker& worker, const std::string& lab_id);
  // Commits a worker with its events.
  Status CommitWorker(const domain::Worker& w, std::vector<OutboxEvent> events);

  using DefinitionCache = std::map<std::pair<std::string, std::string>, domain::LabletDefinition>;
  // PENDING instances whose timeslot starts within schedule_ahead, earliest first.
  std::vector<domain::LabletInstance> DuePending(Timestamp now);
  const domain::LabletDefinition* DefinitionOf(const domain::LabletInstance& i, DefinitionCache& cache);
  // The fullest worker `def` fits on, or null.
  static domain::Worker* BestFit(std::vector<domain::Worker>& workers, const domain::LabletDefinition& def);
  std::vector<domain::LabletInstance> InState(domain::InstanceState s);
  std::vector<domain::Worker> AllWorkers();

  Deps d_;
  InstanceService& instances_;
  CollectionService& collection_;
  CmlWorkers& cml_;
  CloudProvider* cloud_;
  ReconcilerOptions options_;
  std::mutex poll_mu_;
  std::map<std::string, Timestamp> next_poll_;  // instance id -> next read of its lab's state
  std::vector<std::unique_ptr<BackgroundLoop>> loops_;
};

}  // namespace ccm::app
