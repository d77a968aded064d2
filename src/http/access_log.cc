#include "http/access_log.h"

#include <spdlog/spdlog.h>

#include <cmath>

#include "log/formatter.h"
#include "log/log_context.h"
#include "trace/trace_context.h"

namespace ccm::http {

AccessLog::AccessLog(bool enabled) : logger_(enabled ? log::Named("access") : nullptr) {}

AccessLog::~AccessLog() = default;

void AccessLog::Record(const Request& request, const Response& response, std::chrono::nanoseconds took) const {
  if (!logger_ || !logger_->should_log(spdlog::level::info)) return;
  // Microsecond resolution is plenty, and keeps the number short.
  const double ms = std::round(std::chrono::duration<double, std::milli>(took).count() * 1000.0) / 1000.0;
  const std::string route = request.route.empty() ? "unmatched" : request.route;
  // The caller's trace, when it sent a valid traceparent (the request's own span has ended).
  std::optional<std::string> trace_id;
  if (auto t = trace::Parse(request.Header("traceparent"))) trace_id = std::move(t->trace_id);
  log::Scope scope({.trace_id = std::move(trace_id),
                    .request_id = request.id,
                    .fields = {{"method", request.method},
                               {"route", route},
                               {"path", request.path},
                               {"status", std::int64_t{response.status}},
                               {"duration_ms", ms}}});
  logger_->info("{} {} {}", request.method, route, response.status);
}

}  // namespace ccm::http
