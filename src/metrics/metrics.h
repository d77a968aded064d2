#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "app/observers.h"
#include "http/message.h"

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
class RemoteCallMetrics final : public app::RemoteCallObserver {
 public:
  explicit RemoteCallMetrics(prometheus::Registry& registry);
  void Observe(std::string_view remote, app::RemoteOutcome outcome, std::chrono::nanoseconds took) override;
  // The tag that a client for `remote` is built with.
  app::RemoteTag Tag(std::string remote) { return {this, std::move(remote)}; }

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
};

// Runs of the background loops: ccm_reconciler_steps_total{loop},
// ccm_reconciler_errors_total{loop} and ccm_reconciler_run_duration_seconds{loop}. Thread-safe.
class LoopMetrics final : public app::LoopObserver {
 public:
  explicit LoopMetrics(prometheus::Registry& registry);
  void Ran(std::string_view loop, int steps, int errors, std::chrono::nanoseconds took) override;

 private:
  prometheus::Family<prometheus::Counter>& steps_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Family<prometheus::Histogram>& duration_;
};

// The process's registry: ccm_build_info{version} 1, the process metrics, and the HTTP,
// remote and loop families above, which the composition root hands to the server, the
// clients and the loops. Text() is the exposition (Prometheus text format 0.0.4).
// Thread-safe.
class Metrics {
 public:
  explicit Metrics(std::string_view version);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  HttpMetrics& http() { return http_; }
  RemoteCallMetrics& remotes() { return remotes_; }
  LoopMetrics& loops() { return loops_; }
  // Every family of the registry and the process collector, as text.
  std::string Text() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  ProcessCollector process_;
  HttpMetrics http_;
  RemoteCallMetrics remotes_;
  LoopMetrics loops_;
};

}  // namespace ccm::metrics
