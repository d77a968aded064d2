#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "app/collection.h"
#include "app/dispatcher.h"
#include "app/event_service.h"
#include "app/orphan_sweep.h"
#include "app/overview.h"
#include "app/pods.h"
#include "app/receiver.h"
#include "app/reconcilers.h"
#include "app/retention.h"
#include "app/services.h"
#include "app/watch.h"
#include "http/api.h"
#include "ports/assessment_platform.h"
#include "ports/clock.h"
#include "ports/cloud_provider.h"
#include "ports/cml.h"
#include "ports/event_sink.h"
#include "ports/grading_engine.h"
#include "ports/observers.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "runtime/background_work.h"

namespace ccm::compose {

// The adapters ccm runs on, one per port. Not owned: each must outlive the Composition.
struct Adapters {
  ports::Store& store;    // what requests read and write
  ports::Outbox& outbox;  // the same store's outbox: delivery, the event log, replays
  ports::Clock& clock;
  ports::IdGenerator& ids;
  ports::AssessmentPlatform& platform;
  // The leader's writes: on etcd, a store whose commits are fenced by the leader's term.
  // Null: `store`.
  ports::Store* leader_store = nullptr;
  ports::GradingEngine* engine = nullptr;   // null: pods are not assigned to the Grading Engine
  ports::CmlWorkers* cml = nullptr;         // null: no reconcilers and no orphan sweep
  ports::CloudProvider* cloud = nullptr;    // null: workers are not scaled
  ports::EventSink* sink = nullptr;         // null: events are kept in the outbox for audit, not sent
};

// How the use cases behave: each one's options, as the settings give them.
struct Settings {
  std::string source = "ccm";  // the CloudEvents source of the events ccm publishes
  // Where the events' dataschema URIs point (ccm's own /schemas/); empty: set later with
  // events().SetSchemaBase, once the listening address is known.
  std::string schema_base;
  domain::CmlUrlAllowList cml_url_allow;
  domain::PodAddress pod_host = domain::PodAddress::kPublic;  // which worker address graders reach
  app::EventReceiver::Options receive;
  app::CollectionService::Options collection;
  app::DispatcherOptions dispatch;
  app::ReconcilerOptions reconcile;
  app::OrphanSweepOptions orphans;
  app::RetentionOptions retention;
  // A store whose dedup keys do not expire on their own (SQLite) is swept this often; none:
  // the store expires them (etcd, with its leases).
  std::optional<std::chrono::milliseconds> key_sweep;
  // GET /api/v1/watch: its limits (its frames are http::WatchFrame's).
  app::WatchOptions watch;
};

// The counters of the use cases, for /metrics. Thread-safe.
struct Counters {
  app::DispatchMetrics dispatch;
  app::ReceiveMetrics receive;
  app::LifecycleMetrics lifecycle;
  app::CollectionService::Metrics collection;
  app::OrphanSweepMetrics orphans;
  app::RetentionMetrics retention;
};

// ccm's use cases wired on a set of adapters, once: `ccm serve`, the tests' in-process stack
// and the fuzz target build the same graph, each with its own adapters. The services the API
// serves act on `store`; the background work (the leader's) acts on the leader store.
class Composition {
 public:
  // `loops` observes the reconcilers' loops (may be null; not owned).
  Composition(Adapters adapters, Settings settings, ports::LoopObserver* loops = nullptr);
  Composition(const Composition&) = delete;
  Composition& operator=(const Composition&) = delete;
  ~Composition();  // stops the background work

  app::EventFactory& events() { return *events_; }
  app::DefinitionService& definitions() { return *definitions_; }
  app::InstanceService& instances() { return *instances_; }
  app::WorkerService& workers() { return *workers_; }
  app::EventService& event_service() { return *event_service_; }
  app::EventReceiver& receiver() { return *receiver_; }
  app::CollectionService& collection() { return *collection_; }
  app::PodService& pods() { return *pods_; }
  // Null without a sink.
  app::Dispatcher* dispatcher() { return dispatcher_.get(); }
  Counters& counters() { return counters_; }

  // What the leader runs: delivery (with a sink), collection requests, retention, the key
  // sweep (where the store needs it), and the reconcilers and the orphan sweep (with CML).
  runtime::BackgroundWork& background() { return background_; }
  // A commit carried events: the background work and the watch hub look again soon.
  void Wake() {
    background_.Wake();
    watch_->Wake();
  }
  // The outbox as a live feed, on every replica (not the leader's work).
  app::WatchHub& watch() { return *watch_; }

  // The services of the REST API, with the replica's hooks (see http::ApiServices).
  http::ApiServices Api(std::function<bool()> leading = {}, std::function<Result<std::string>()> metrics = {},
                        std::function<bool()> draining = {});

 private:
  Adapters adapters_;
  Counters counters_;
  std::unique_ptr<app::EventFactory> events_;
  std::unique_ptr<app::DefinitionService> definitions_;
  std::unique_ptr<app::InstanceService> instances_;
  std::unique_ptr<app::InstanceService> leader_instances_;
  std::unique_ptr<app::WorkerService> workers_;
  std::unique_ptr<app::EventService> event_service_;
  std::unique_ptr<app::EventReceiver> receiver_;
  std::unique_ptr<app::CollectionService> collection_;
  std::unique_ptr<app::CollectionService> leader_collection_;
  std::unique_ptr<app::PodService> pods_;
  std::unique_ptr<app::Dispatcher> dispatcher_;
  std::unique_ptr<app::KeySweeper> key_sweeper_;
  std::unique_ptr<app::RetentionSweeper> retention_;
  std::unique_ptr<app::Reconcilers> reconcilers_;
  std::unique_ptr<app::OrphanSweep> orphan_sweep_;
  runtime::BackgroundWork background_;
  std::unique_ptr<app::WatchHub> watch_;
  std::unique_ptr<app::OverviewService> overview_;
};

}  // namespace ccm::compose
