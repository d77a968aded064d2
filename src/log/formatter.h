#pragma once

#include <spdlog/formatter.h>
#include <spdlog/logger.h>

#include <memory>
#include <string>

namespace ccm::log {

// How log lines are written (CCM_LOG_FORMAT).
enum class Format {
  kText,  // spdlog's default line, then the context as ` key=value` pairs
  kJson,  // one JSON object per line (JsonFormatter)
};

// One JSON object per line:
//   {"time":"2026-11-30T05:02:48.123Z","level":"info","logger":"ccm","message":"...",
//    "request_id":"...","lablet_id":"...",...}
// `time` is RFC 3339 in UTC with milliseconds; `level` is trace, debug, info, warning,
// error or critical; `logger` is the logger's name ("ccm" for the default one). Then the
// calling thread's log::Context: trace_id, lablet_id, worker_id, request_id when known, and
// its extra fields. Always valid JSON: control characters are escaped and bytes that are not
// UTF-8 become U+FFFD. Reads the context of the thread that logs, so it serves synchronous
// loggers only.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// A formatter of `format`.
std::unique_ptr<spdlog::formatter> MakeFormatter(Format format);

// Makes every logger, those that exist and those made later by Named, write in `format`.
// Call at start-up, before other threads log.
void Configure(Format format);

// The logger named `name`: the registered one, or a new one writing to the default logger's
// sinks (the same output, the same lock: lines never interleave) with the configured format
// and level. Call at start-up: two threads making the same new logger at once is a race.
std::shared_ptr<spdlog::logger> Named(const std::string& name);

}  // namespace ccm::log
