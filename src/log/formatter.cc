#include "log/formatter.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "log/log_context.h"
#include "trace/trace_context.h"

namespace ccm::log {

namespace {

// Names the lines' fixed keys use: an extra field of the same name is left out.
bool IsReserved(const std::string& name) {
  static constexpr std::array<const char*, 8> kReserved = {"time",     "level",     "logger",    "message",
                                                            "trace_id", "lablet_id", "worker_id", "request_id"};
  for (const char* r : kReserved)
    if (name == r) return true;
  return false;
}

// The trace of the line: the context's, else the calling thread's current W3C trace (set
// where work joins a lablet's trace, a request's or an inbound event's).
std::string_view TraceId(const Context& c) {
  if (!c.trace_id.empty()) return c.trace_id;
  const trace::TraceContext* current = trace::Current();
  return current ? std::string_view(current->trace_id) : std::string_view();
}

std::string Rfc3339Millis(spdlog::log_clock::time_point t) {
  const auto since = t.time_since_epoch();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since - secs).count();
  std::time_t tt = secs.count();
  if (millis < 0) {  // before 1970: floor, not truncate
    millis += 1000;
    --tt;
  }
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(millis));
  return buf;
}

std::string_view LoggerName(const spdlog::details::log_msg& msg) {
  return msg.logger_name.size() == 0 ? std::string_view("ccm")
                                     : std::string_view(msg.logger_name.data(), msg.logger_name.size());
}

void Append(spdlog::memory_buf_t& dest, std::string_view s) { dest.append(s.data(), s.data() + s.size()); }

// A value of a text line: as it is when it is a plain token, else as a JSON string.
void AppendTextValue(spdlog::memory_buf_t& dest, const Field::Value& value) {
  if (const auto* s = std::get_if<std::string>(&value)) {
    const bool plain = !s->empty() && std::all_of(s->begin(), s->end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return u > 0x20 && u != 0x7f && c != '"' && c != '=' && c != '\\';
    });
    if (plain)
      Append(dest, *s);
    else
      Append(dest, nlohmann::json(*s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    Append(dest, std::visit([](const auto& v) { return nlohmann::json(v).dump(); }, value));
  }
}

// The text format's tail: the thread's context as ` key=value` pairs.
class ContextFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    const Context& c = Current();
    const auto pair = [&dest](std::string_view name, const Field::Value& value) {
      Append(dest, " ");
      Append(dest, name);
      Append(dest, "=");
      AppendTextValue(dest, value);
    };
    if (const auto trace_id = TraceId(c); !trace_id.empty()) pair("trace_id", std::string(trace_id));
    if (!c.lablet_id.empty()) pair("lablet_id", c.lablet_id);
    if (!c.worker_id.empty()) pair("worker_id", c.worker_id);
    if (!c.request_id.empty()) pair("request_id", c.request_id);
    for (const auto& f : c.fields)
      if (!IsReserved(f.name)) pair(f.name, f.value);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<ContextFlag>(); }
};

}  // namespace

void JsonFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  nlohmann::ordered_json line;
  line["time"] = Rfc3339Millis(msg.time);
  const auto level = spdlog::level::to_string_view(msg.level);
  line["level"] = std::string_view(level.data(), level.size());
  line["logger"] = LoggerName(msg);
  line["message"] = std::string_view(msg.payload.data(), msg.payload.size());
  const Context& c = Current();
  if (const auto trace_id = TraceId(c); !trace_id.empty()) line["trace_id"] = trace_id;
  if (!c.lablet_id.empty()) line["lablet_id"] = c.lablet_id;
  if (!c.worker_id.empty()) line["worker_id"] = c.worker_id;
  if (!c.request_id.empty()) line["request_id"] = c.request_id;
  for (const auto& f : c.fields)
    if (!IsReserved(f.name)) std::visit([&](const auto& v) { line[f.name] = v; }, f.value);
  Append(dest, line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
  Append(dest, "\n");
}

std::unique_ptr<spdlog::formatter> JsonFormatter::clone() const { return std::make_unique<JsonFormatter>(); }

std::unique_ptr<spdlog::formatter> MakeFormatter(Format format) {
  if (format == Format::kJson) return std::make_unique<JsonFormatter>();
  auto text = std::make_unique<spdlog::pattern_formatter>();
  text->add_flag<ContextFlag>('*').set_pattern("%+%*");
  return text;
}

void Configure(Format format) { spdlog::set_formatter(MakeFormatter(format)); }

std::shared_ptr<spdlog::logger> Named(const std::string& name) {
  if (auto existing = spdlog::get(name)) return existing;
  const auto& sinks = spdlog::default_logger()->sinks();
  auto logger = std::make_shared<spdlog::logger>(name, sinks.begin(), sinks.end());
  spdlog::initialize_logger(logger);  // registers it, with the configured format and level
  return logger;
}

}  // namespace ccm::log
