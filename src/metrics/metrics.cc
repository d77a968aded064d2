#include "metrics/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include <prometheus/text_serializer.h>

namespace ccm::metrics {

namespace {

using BucketBoundaries = prometheus::Histogram::BucketBoundaries;

// Seconds, from a quick API answer to a slow remote's time-out.
const BucketBoundaries kHttpBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const BucketBoundaries kRemoteBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
const BucketBoundaries kLoopBuckets{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60};

double Seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// The methods ccm serves keep their names; anything else is "other", so that a client
// sending made-up methods cannot grow the label set.
std::string_view MethodLabel(std::string_view method) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
    if (method == known) return known;
  return "other";
}

std::string_view StatusClass(int status) {
  if (status >= 500) return "5xx";
  if (status >= 400) return "4xx";
  if (status >= 300) return "3xx";
  if (status >= 200) return "2xx";
  return "1xx";
}

std::string_view OutcomeLabel(ports::RemoteOutcome outcome) {
  switch (outcome) {
    case ports::RemoteOutcome::kOk: return "ok";
    case ports::RemoteOutcome::kHttp4xx: return "http_4xx";
    case ports::RemoteOutcome::kHttp5xx: return "http_5xx";
    case ports::RemoteOutcome::kTransport: return "transport";
    case ports::RemoteOutcome::kCircuitOpen: return "circuit_open";
  }
  return "transport";
}

prometheus::MetricFamily One(std::string name, std::string help, prometheus::MetricType type, double value) {
  prometheus::MetricFamily f{std::move(name), std::move(help), type, {}};
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(std::move(m));
  return f;
}

// A family of one metric per label value: `values` pairs each value of `label` with its number.
prometheus::MetricFamily Labelled(std::string name, std::string help, prometheus::MetricType type,
                                  const std::string& label,
                                  std::initializer_list<std::pair<std::string_view, double>> values) {
  prometheus::MetricFamily f{std::move(name), std::move(help), type, {}};
  for (const auto& [value, n] : values) {
    prometheus::ClientMetric m;
    m.label.push_back({label, std::string(value)});
    if (type == prometheus::MetricType::Counter)
      m.counter.value = n;
    else
      m.gauge.value = n;
    f.metric.push_back(std::move(m));
  }
  return f;
}

double Of(const std::atomic<std::uint64_t>& n) { return static_cast<double>(n.load()); }

void AddOutbox(std::vector<prometheus::MetricFamily>& out, const ports::OutboxStats& s) {
  using prometheus::MetricType;
  out.push_back(One("ccm_events_published_total", "CloudEvents written to the outbox.", MetricType::Counter,
                    static_cast<double>(s.published)));
  out.push_back(One("ccm_outbox_depth", "Outbox events waiting to be delivered.", MetricType::Gauge,
                    static_cast<double>(s.pending)));
  out.push_back(One("ccm_events_dead_letters", "Outbox events in the dead-letter list.", MetricType::Gauge,
                    static_cast<double>(s.dead)));
  out.push_back(One("ccm_outbox_held_events",
                    "Outbox events held behind a dead letter of their subject until it is replayed.", MetricType::Gauge,
                    static_cast<double>(s.held)));
}

void AddDispatch(std::vector<prometheus::MetricFamily>& out, const app::DispatchMetrics& d) {
  using prometheus::MetricType;
  out.push_back(One("ccm_events_delivered_total", "Events the sink accepted.", MetricType::Counter, Of(d.delivered)));
  out.push_back(One("ccm_events_retried_total", "Failed delivery attempts that will be retried.", MetricType::Counter,
                    Of(d.retried)));
  out.push_back(One("ccm_events_dead_lettered_total", "Events moved to the dead-letter list.", MetricType::Counter,
                    Of(d.dead_lettered)));
  // The state as a label (1 on the current one), so that a rule reads {state="open"}.
  const int breaker = d.breaker_state.load();
  out.push_back(Labelled("ccm_sink_breaker_state",
                         "Circuit breaker of the sink: 1 for its current state, 0 for the others.", MetricType::Gauge,
                         "state",
                         {{"closed", breaker == 0 ? 1 : 0}, {"open", breaker == 1 ? 1 : 0}, {"half_open", breaker == 2 ? 1 : 0}}));
  // The dispatcher keeps its own cumulative buckets (app has no metrics library); they are
  // handed over as they are, with the +Inf bucket the serializer expects last.
  prometheus::MetricFamily latency{"ccm_event_delivery_latency_seconds",
                                   "From an event's time to the sink's acknowledgement.", MetricType::Histogram, {}};
  prometheus::ClientMetric h;
  const std::uint64_t count = d.latency_count.load();
  for (size_t i = 0; i < std::size(app::DispatchMetrics::kBuckets); ++i)
    h.histogram.bucket.push_back({d.latency_counts[i].load(), app::DispatchMetrics::kBuckets[i]});
  h.histogram.bucket.push_back({count, std::numeric_limits<double>::infinity()});
  h.histogram.sample_count = count;
  h.histogram.sample_sum = static_cast<double>(d.latency_sum_us.load()) / 1e6;
  latency.metric.push_back(std::move(h));
  out.push_back(std::move(latency));
}

void AddLifecycle(std::vector<prometheus::MetricFamily>& out, const AppSources& s, Timestamp now) {
  using prometheus::MetricType;
  const app::LifecycleMetrics& m = *s.lifecycle;
  if (const auto states = m.States(); !states.empty()) {
    prometheus::MetricFamily count{"ccm_instances", "Instances per state, as the leader's last sweep saw them.",
                                   MetricType::Gauge, {}};
    prometheus::MetricFamily oldest{"ccm_instance_oldest_in_state_seconds",
                                    "How long the instance longest in each state has been in it (0 when none is).",
                                    MetricType::Gauge, {}};
    for (const auto& [state, g] : states) {
      prometheus::ClientMetric c;
      c.label.push_back({"state", std::string(domain::ToString(state))});
      c.gauge.value = static_cast<double>(g.count);
      count.metric.push_back(c);
      const double age = g.oldest_entered_at ? std::chrono::duration<double>(now - *g.oldest_entered_at).count() : 0;
      c.gauge.value = std::max(0.0, age);
      oldest.metric.push_back(std::move(c));
    }
    out.push_back(std::move(count));
    out.push_back(std::move(oldest));
  }
  out.push_back(Labelled("ccm_pod_assignments_total", "Pod assignment attempts on the Grading Engine by outcome.",
                         MetricType::Counter, "outcome",
                         {{"assigned", Of(m.pod_assigned)}, {"failed", Of(m.pod_failed)}, {"refused", Of(m.pod_refused)}}));
  if (const auto* c = s.collection)
    out.push_back(Labelled("ccm_collection_requests_total",
                           "Collection requests to the Assessment Platform by outcome.", MetricType::Counter, "outcome",
                           {{"accepted", Of(c->accepted)}, {"failed", Of(c->failed)}, {"refused", Of(c->refused)}}));
  out.push_back(Labelled("ccm_lifecycle_timeouts_total", "Instances moved on to STOPPING without a score by a time-out.",
                         MetricType::Counter, "stage",
                         {{"collecting", Of(m.collecting_timeouts)}, {"grading", Of(m.grading_timeouts)}}));
  out.push_back(One("ccm_instances_not_assessed_total",
                    "Instances stopped at their timeslot's end without a collection (no assessment ids, or no platform).",
                    MetricType::Counter, Of(m.not_assessed)));
  out.push_back(One("ccm_workers_terminated_total", "Released workers the provider confirmed gone.", MetricType::Counter,
                    Of(m.workers_terminated)));
  if (const auto* o = s.orphans) {
    out.push_back(One("ccm_orphan_labs_removed_total", "ccm's labs that no live instance owned, wiped and deleted.",
                      MetricType::Counter, Of(o->removed)));
    out.push_back(One("ccm_orphan_lab_removal_failures_total", "Orphan labs whose removal failed (tried again).",
                      MetricType::Counter, Of(o->removal_failures)));
    out.push_back(One("ccm_orphan_sweep_worker_failures_total", "Workers whose labs could not be listed by a sweep.",
                      MetricType::Counter, Of(o->unlisted_workers)));
  }
}

}  // namespace

std::vector<prometheus::MetricFamily> AppFamilies(const AppSources& s, const std::optional<ports::OutboxStats>& outbox,
                                                  Timestamp now) {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  if (outbox) AddOutbox(out, *outbox);
  if (s.dispatch) AddDispatch(out, *s.dispatch);
  if (const auto* r = s.receive)
    out.push_back(Labelled("ccm_events_received_total", "Consumed CloudEvents by outcome.", MetricType::Counter,
                           "outcome",
                           {{"applied", Of(r->applied)},
                            {"duplicate", Of(r->duplicate)},
                            {"ignored", Of(r->ignored)},
                            {"stale", Of(r->stale)},
                            {"rejected", Of(r->rejected)}}));
  out.push_back(One("ccm_leader", "1 on the replica that runs the background work, else 0.", MetricType::Gauge,
                    !s.leading || s.leading() ? 1 : 0));
  if (s.watch) {
    const app::WatchCounts w = s.watch();
    out.push_back(One("ccm_watchers", "Open GET /api/v1/watch streams on this replica.", MetricType::Gauge,
                      static_cast<double>(w.open)));
    out.push_back(One("ccm_watchers_cut_total", "Watch streams cut off for falling CCM_WATCH_BUFFER_EVENTS behind.",
                      MetricType::Counter, static_cast<double>(w.cut)));
    out.push_back(One("ccm_watchers_refused_total", "Watch streams refused (429) at CCM_WATCH_MAX_WATCHERS.",
                      MetricType::Counter, static_cast<double>(w.refused)));
  }
  if (s.lifecycle) AddLifecycle(out, s, now);
  if (const auto* r = s.retention)
    out.push_back(Labelled("ccm_retention_removed_total", "Records removed past their retention.", MetricType::Counter,
                           "kind", {{"instances", Of(r->instances)}, {"events", Of(r->events)}}));
  return out;
}

Result<std::vector<prometheus::MetricFamily>> AppCollector::Read() const {
  std::optional<ports::OutboxStats> outbox;
  if (sources_.outbox) {
    auto stats = sources_.outbox();
    if (!stats) return stats.error();
    outbox = *stats;
  }
  return AppFamilies(sources_, outbox, sources_.clock ? sources_.clock->Now() : Timestamp{});
}

std::vector<prometheus::MetricFamily> AppCollector::Collect() const {
  if (auto families = Read()) return std::move(families.value());
  return AppFamilies(sources_, std::nullopt, sources_.clock ? sources_.clock->Now() : Timestamp{});
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // /proc/self/stat: the fields after the command name, which is in parentheses and may hold
  // spaces; field 3 (state) comes first.
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  if (const auto close = stat.rfind(')'); close != std::string::npos && ticks > 0) {
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(fields), std::istream_iterator<std::string>()};
    // Numbered from 3 (state): utime 14, stime 15, starttime 22, vsize 23, rss 24.
    auto field = [&f](size_t n) { return n - 3 < f.size() ? std::stod(f[n - 3]) : -1.0; };
    if (f.size() >= 22) {
      out.push_back(One("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                        MetricType::Counter, (field(14) + field(15)) / ticks));
      out.push_back(One("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge, field(23)));
      out.push_back(
          One("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge, field(24) * page));
      // starttime is in ticks since boot; the boot time is btime in /proc/stat.
      std::ifstream proc_stat("/proc/stat");
      for (std::string key; proc_stat >> key;) {
        if (key == "btime") {
          double btime = 0;
          if (proc_stat >> btime)
            out.push_back(One("process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds.", MetricType::Gauge,
                              btime + field(22) / ticks));
          break;
        }
        proc_stat.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
      }
    }
  }
  if (DIR* fds = opendir("/proc/self/fd")) {
    double open = 0;
    while (const dirent* e = readdir(fds))
      if (e->d_name[0] != '.') ++open;
    closedir(fds);
    out.push_back(One("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, open - 1));  // less opendir's own
  }
  if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    out.push_back(One("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
                      static_cast<double>(limit.rlim_cur)));
  return out;
}

HttpMetrics::HttpMetrics(prometheus::Registry& registry)
    : requests_(prometheus::BuildCounter()
                    .Name("ccm_http_requests_total")
                    .Help("HTTP requests answered, by route template, method and status class.")
                    .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("ccm_http_request_duration_seconds")
                    .Help("From a complete HTTP request to its answer being ready, by route template and method.")
                    .Register(registry)) {}

void HttpMetrics::Observe(const http::Request& request, const http::Response& response, std::chrono::nanoseconds took) {
  const std::string route = request.route.empty() ? "unmatched" : request.route;
  const std::string method(MethodLabel(request.method));
  requests_.Add({{"route", route}, {"method", method}, {"code", std::string(StatusClass(response.status))}}).Increment();
  duration_.Add({{"route", route}, {"method", method}}, kHttpBuckets).Observe(Seconds(took));
}

RemoteCallMetrics::RemoteCallMetrics(prometheus::Registry& registry)
    : requests_(prometheus::BuildCounter()
                    .Name("ccm_remote_requests_total")
                    .Help("Calls to a remote (cml, platform, grading_engine, sink, etcd, jwks, oidc, cloud_provider) "
                          "by outcome: ok, http_4xx, http_5xx, transport, circuit_open.")
                    .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("ccm_remote_request_duration_seconds")
                    .Help("Duration of the calls made to a remote, whatever their outcome.")
                    .Register(registry)) {}

void RemoteCallMetrics::Observe(std::string_view remote, ports::RemoteOutcome outcome, std::chrono::nanoseconds took) {
  const std::string name(remote);
  requests_.Add({{"remote", name}, {"outcome", std::string(OutcomeLabel(outcome))}}).Increment();
  if (outcome != ports::RemoteOutcome::kCircuitOpen) duration_.Add({{"remote", name}}, kRemoteBuckets).Observe(Seconds(took));
}

LoopMetrics::LoopMetrics(prometheus::Registry& registry)
    : steps_(prometheus::BuildCounter()
                 .Name("ccm_reconciler_steps_total")
                 .Help("Steps a reconciler loop took (an instance scheduled, started, stopped, a pod assigned, ...).")
                 .Register(registry)),
      errors_(prometheus::BuildCounter()
                  .Name("ccm_reconciler_errors_total")
                  .Help("Errors a reconciler loop met (a failed read, call or commit; the step is tried again).")
                  .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("ccm_reconciler_run_duration_seconds")
                    .Help("Duration of one run (sweep) of a reconciler loop; its _count is the runs.")
                    .Register(registry)) {}

void LoopMetrics::Ran(std::string_view loop, int steps, int errors, std::chrono::nanoseconds took) {
  const prometheus::Labels labels{{"loop", std::string(loop)}};
  steps_.Add(labels).Increment(steps);
  errors_.Add(labels).Increment(errors);
  duration_.Add(labels, kLoopBuckets).Observe(Seconds(took));
}

Metrics::Metrics(std::string_view version)
    : registry_(std::make_shared<prometheus::Registry>()),
      http_(*registry_),
      remotes_(*registry_),
      loops_(*registry_) {
  prometheus::BuildGauge()
      .Name("ccm_build_info")
      .Help("1, labelled with the version of ccm that runs.")
      .Register(*registry_)
      .Add({{"version", std::string(version)}})
      .Set(1);
}

Result<std::string> Metrics::Text() const {
  auto families = registry_->Collect();
  for (auto& f : process_.Collect()) families.push_back(std::move(f));
  if (app_) {
    // A store that cannot be read fails the scrape: an outbox left out would look like an
    // outbox of nothing to a rule that sums it, and an error is what the scrape said before.
    auto more = app_->Read();
    if (!more) return more.error();
    for (auto& f : *more) families.push_back(std::move(f));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace ccm::metrics
