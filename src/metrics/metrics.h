#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "app/collection.h"
#include "app/dispatcher.h"
#include "app/orphan_sweep.h"
#include "app/receiver.h"
#include "app/reconcilers.h"
#include "app/retention.h"
#include "app/watch.h"
#include "domain/result.h"
#include "http/message.h"
#include "ports/clock.h"
#include "ports/observers.h"
#include "ports/outbox.h"

namespace ccm::metrics {

// The standard process metrics of the Prometheus client libraries, read from /proc/self at
// each scrape: process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds and
// process_start_time_seconds. A value that cannot be read is left out. Thread-safe.
class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// HTTP requests by route template, method and status class: ccm_http_requests_total{route,
// method,code} and ccm_http_request_duration_seconds{route,method}. Every label has a bounded
// set of values: the route is the router's pattern ("unmatched" when none matched), the method
// one of the methods ccm serves ("other" for the rest), the code a class ("2xx"). Thread-safe.
class HttpMetrics {
 public:
  explicit HttpMetrics(prometheus::Registry& registry);
  // One answered request and the time from the complete request to its answer.
  void Observe(const http::Request& request, const http::Response& response, std::chrono::nanoseconds took);

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
};

// Calls to remotes by outcome, with their latency: ccm_remote_requests_total{remote,outcome}
// and ccm_remote_request_duration_seconds{remote} (calls that were made: a refusal of an open
// circuit breaker is counted, not timed). Thread-safe.
class RemoteCallMetrics final : public ports::RemoteCallObserver {
 public:
  explicit RemoteCallMetrics(prometheus::Registry& registry);
  void Observe(std::string_view remote, ports::RemoteOutcome outcome, std::chrono::nanoseconds took) override;
  // The tag that a client for `remote` is built with.
  ports::RemoteTag Tag(std::string remote) { return {this, std::move(remote)}; }

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
};

// Runs of the background loops: ccm_reconciler_steps_total{loop},
// ccm_reconciler_errors_total{loop} and ccm_reconciler_run_duration_seconds{loop}. Thread-safe.
class LoopMetrics final : public ports::LoopObserver {
 public:
  explicit LoopMetrics(prometheus::Registry& registry);
  void Ran(std::string_view loop, int steps, int errors, std::chrono::nanoseconds took) override;

 private:
  prometheus::Family<prometheus::Counter>& steps_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Family<prometheus::Histogram>& duration_;
};

// What the use cases count, read at each scrape. A null pointer (or an empty function)
// leaves its families out.
// Not owned: each must outlive the collector that reads it.
struct AppSources {
  // ccm_events_published_total, ccm_outbox_depth, ccm_events_dead_letters,
  // ccm_outbox_held_events: the store's outbox statistics (Outbox::GetOutboxStats), read at
  // each scrape; empty: none.
  std::function<Result<ports::OutboxStats>()> outbox = {};
  // ccm_events_delivered_total, ccm_events_retried_total, ccm_events_dead_lettered_total,
  // ccm_sink_breaker_state{state}, ccm_event_delivery_latency_seconds: null when no
  // dispatcher runs.
  const app::DispatchMetrics* dispatch = nullptr;
  const app::ReceiveMetrics* receive = nullptr;  // ccm_events_received_total{outcome}
  // ccm_instances{state}, ccm_instance_oldest_in_state_seconds{state} (once a sweep listed a
  // state), ccm_pod_assignments_total{outcome}, ccm_lifecycle_timeouts_total{stage},
  // ccm_instances_not_assessed_total, ccm_workers_terminated_total.
  const app::LifecycleMetrics* lifecycle = nullptr;
  // ccm_collection_requests_total{outcome}, and the three ccm_orphan_* counters: given with
  // `lifecycle` only.
  const app::CollectionService::Metrics* collection = nullptr;
  const app::OrphanSweepMetrics* orphans = nullptr;
  const app::RetentionMetrics* retention = nullptr;  // ccm_retention_removed_total{kind}
  ports::Clock* clock = nullptr;                       // the ages' "now"; needed with `lifecycle`
  // ccm_leader: whether this replica runs the background work; empty: it always does.
  std::function<bool()> leading = {};
  // ccm_watchers, ccm_watchers_cut_total, ccm_watchers_refused_total: the watch hub's
  // counts (app::WatchHub::counts); empty: none.
  std::function<app::WatchCounts()> watch = {};
};

// The families of `sources` as of `now`, with `outbox` (the store's statistics, read by the
// caller; nullopt leaves the outbox families out). Pure: reads the counters, does no I/O.
std::vector<prometheus::MetricFamily> AppFamilies(const AppSources& sources, const std::optional<ports::OutboxStats>& outbox,
                                                  Timestamp now);

// The families of AppSources, read at each scrape. Thread-safe if the sources are.
class AppCollector final : public prometheus::Collectable {
 public:
  explicit AppCollector(AppSources sources) : sources_(std::move(sources)) {}
  // Every family of the sources. Errors: those of reading the outbox statistics (a scrape
  // answers them rather than leave the outbox out unseen).
  Result<std::vector<prometheus::MetricFamily>> Read() const;
  // As Read, leaving the outbox families out when their statistics cannot be read.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  AppSources sources_;
};

// The process's registry: ccm_build_info{version} 1, the process metrics, and the HTTP,
// remote and loop families above, which the composition root hands to the server, the
// clients and the loops, and those of the AppSources it is told to watch. Text() is the
// exposition (Prometheus text format 0.0.4): every family of /metrics. Thread-safe, but for
// Watch.
class Metrics {
 public:
  explicit Metrics(std::string_view version);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  HttpMetrics& http() { return http_; }
  RemoteCallMetrics& remotes() { return remotes_; }
  LoopMetrics& loops() { return loops_; }
  // Adds the families of `sources` to the exposition. Called once, before the first scrape
  // (the use cases are built after the registry, which their clients are tagged with).
  void Watch(AppSources sources) { app_ = std::make_unique<AppCollector>(std::move(sources)); }
  // Every family of the registry, the process collector and the watched sources, as text.
  // Errors: those of AppCollector::Read (the store's, when it cannot be read).
  Result<std::string> Text() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  ProcessCollector process_;
  std::unique_ptr<AppCollector> app_;
  HttpMetrics http_;
  RemoteCallMetrics remotes_;
  LoopMetrics loops_;
};

}  // namespace ccm::metrics
