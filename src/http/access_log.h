#pragma once

#include <chrono>
#include <memory>

#include "http/message.h"

namespace spdlog {
class logger;
}

namespace ccm::http {

// The access log: one line per answered request, at info on the logger named "access", with
// the fields method, route (the matched pattern, "unmatched" when none did), path (decoded,
// without the query), status, duration_ms, request_id, and trace_id when the request sent a
// valid traceparent. In the JSON format they are
// fields of the line's object; in text they follow the message as key=value pairs. Never the
// query string, a header or a body: they may hold secrets (tokens, passwords).
// Thread-safe: Record may be called from any thread at once.
class AccessLog {
 public:
  // Makes (or finds) the "access" logger, on the default logger's output; call after the
  // format is configured (log::Configure). Disabled, Record does nothing.
  explicit AccessLog(bool enabled);
  ~AccessLog();

  void Record(const Request& request, const Response& response, std::chrono::nanoseconds took) const;

 private:
  std::shared_ptr<spdlog::logger> logger_;  // null when disabled
};

}  // namespace ccm::http
