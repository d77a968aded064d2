#include "metrics/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

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

std::string_view OutcomeLabel(app::RemoteOutcome outcome) {
  switch (outcome) {
    case app::RemoteOutcome::kOk: return "ok";
    case app::RemoteOutcome::kHttp4xx: return "http_4xx";
    case app::RemoteOutcome::kHttp5xx: return "http_5xx";
    case app::RemoteOutcome::kTransport: return "transport";
    case app::RemoteOutcome::kCircuitOpen: return "circuit_open";
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

}  // namespace

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

void RemoteCallMetrics::Observe(std::string_view remote, app::RemoteOutcome outcome, std::chrono::nanoseconds took) {
  const std::string name(remote);
  requests_.Add({{"remote", name}, {"outcome", std::string(OutcomeLabel(outcome))}}).Increment();
  if (outcome != app::RemoteOutcome::kCircuitOpen) duration_.Add({{"remote", name}}, kRemoteBuckets).Observe(Seconds(took));
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

std::string Metrics::Text() const {
  auto families = registry_->Collect();
  for (auto& f : process_.Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace ccm::metrics
