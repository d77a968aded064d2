#include "compose/composition.h"

namespace ccm::compose {

Composition::Composition(Adapters adapters, Settings settings, ports::LoopObserver* loops) : adapters_(adapters) {
  ports::Store& store = adapters_.store;
  ports::Store& leader_store = adapters_.leader_store ? *adapters_.leader_store : store;
  events_ = std::make_unique<app::EventFactory>(adapters_.ids, settings.source, settings.schema_base);
  const app::Deps deps{store, adapters_.clock, adapters_.ids, *events_};
  const app::Deps leader_deps{leader_store, adapters_.clock, adapters_.ids, *events_};

  definitions_ = std::make_unique<app::DefinitionService>(deps);
  instances_ = std::make_unique<app::InstanceService>(deps);
  leader_instances_ = std::make_unique<app::InstanceService>(leader_deps);
  workers_ = std::make_unique<app::WorkerService>(deps, settings.cml_url_allow);
  receiver_ = std::make_unique<app::EventReceiver>(deps, settings.receive, counters_.receive);
  collection_ = std::make_unique<app::CollectionService>(deps, adapters_.platform, settings.collection,
                                                         &counters_.collection);
  leader_collection_ = std::make_unique<app::CollectionService>(leader_deps, adapters_.platform, settings.collection,
                                                                &counters_.collection);
  pods_ = std::make_unique<app::PodService>(store, "ccm", settings.pod_host);
  if (adapters_.engine) {
    instances_->EnablePodAssignment(*pods_, *adapters_.engine);
    leader_instances_->EnablePodAssignment(*pods_, *adapters_.engine);
  }
  // A dead letter replayed through the API is due at once.
  event_service_ = std::make_unique<app::EventService>(store, adapters_.outbox, adapters_.clock, [this] {
    if (dispatcher_) dispatcher_->Wake();
  });

  // The leader's work, in the order it starts.
  if (adapters_.sink) {
    dispatcher_ = std::make_unique<app::Dispatcher>(leader_store, adapters_.outbox, *adapters_.sink, adapters_.clock,
                                                    settings.dispatch, counters_.dispatch);
    background_.Add(*dispatcher_);
  }
  background_.Add(*leader_collection_);
  if (settings.key_sweep) {
    key_sweeper_ = std::make_unique<app::KeySweeper>(leader_store, adapters_.clock, *settings.key_sweep);
    background_.Add(*key_sweeper_);
  }
  retention_ = std::make_unique<app::RetentionSweeper>(leader_store, adapters_.clock, settings.retention,
                                                       counters_.retention);
  background_.Add(*retention_);
  counters_.lifecycle.loops = loops;
  settings.watch.render = http::WatchFrame;
  watch_ = std::make_unique<app::WatchHub>(adapters_.outbox, settings.watch);
  overview_ = std::make_unique<app::OverviewService>(
      store, adapters_.clock,
      app::StuckTimeouts{.instantiation = settings.reconcile.instantiation_timeout,
                         .collecting = settings.reconcile.collecting_timeout,
                         .grading = settings.reconcile.grading_timeout});
  if (adapters_.cml) {
    settings.reconcile.cml_url_allow = settings.cml_url_allow;
    reconcilers_ = std::make_unique<app::Reconcilers>(leader_deps, *leader_instances_, *leader_collection_,
                                                      *adapters_.cml, adapters_.cloud, settings.reconcile,
                                                      &counters_.lifecycle);
    orphan_sweep_ = std::make_unique<app::OrphanSweep>(leader_store, adapters_.clock, *adapters_.cml,
                                                       settings.orphans, counters_.orphans);
    background_.Add(*reconcilers_);
    background_.Add(*orphan_sweep_);
  }
}

Composition::~Composition() { background_.Stop(); }

http::ApiServices Composition::Api(std::function<bool()> leading, std::function<Result<std::string>()> metrics,
                                   std::function<bool()> draining) {
  return {*definitions_, *instances_,  *workers_,          adapters_.store,   *event_service_,
          *receiver_,    *collection_, *pods_,             std::move(leading), std::move(metrics),
          std::move(draining),  watch_.get(),      overview_.get()};
}

}  // namespace ccm::compose
