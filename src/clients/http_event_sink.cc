#include "clients/http_event_sink.h"

#include <cctype>
#include <charconv>
#include <ctime>

#include "cloudevents/json_format.h"
#include "ports/outbox.h"
#include "trace/trace_context.h"
#include "transport/retry.h"

namespace ccm::clients {

std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view v, std::chrono::system_clock::time_point now) {
  if (v.empty()) return std::nullopt;
  long seconds = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (ec == std::errc() && p == v.data() + v.size() && seconds >= 0) return std::chrono::seconds(seconds);
  std::tm tm{};
  const std::string text(v);
  if (!strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
  return std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(at - now));
}

namespace {

// The Distributed Tracing extension of a stored event, as the W3C `traceparent` and
// `tracestate` headers of the request that carries it alone: one hop, so the protocol's
// tracing headers carry the same trace as the event (the extension's rule). A batch carries
// several traces and gets none.
void AddTraceHeaders(const std::string& event_json, std::map<std::string, std::string>& headers) {
  if (event_json.find("\"traceparent\"") == std::string::npos) return;  // an event stored before traces: no parse
  const auto event = nlohmann::json::parse(event_json, nullptr, false);
  if (!event.is_object()) return;
  // Sent only when they read as W3C values (ccm wrote them; a store edited by hand may not hold).
  const auto parent = event.find("traceparent");
  if (parent == event.end() || !parent->is_string()) return;
  const auto state = event.find("tracestate");
  const std::string tracestate = state != event.end() && state->is_string() ? state->get<std::string>() : "";
  const auto trace = trace::Parse(parent->get<std::string>(), tracestate);
  if (!trace) return;
  headers["traceparent"] = parent->get<std::string>();
  if (!trace->state.empty()) headers["tracestate"] = trace->state;
}

}  // namespace

HttpEventSink::HttpEventSink(HttpEventSinkOptions options)
    : options_(std::move(options)), pool_([tag = options_.tag](HttpPoster& http) { http.SetTag(tag); }) {}
HttpEventSink::~HttpEventSink() = default;

int HttpEventSink::MaxBatch() const { return options_.mode == cloudevents::Mode::kBatch ? options_.batch_size : 1; }

ports::DeliveryOutcome HttpEventSink::Send(std::span<const ports::OutboxEvent> events) {
  cloudevents::HttpMessage message;
  if (options_.mode == cloudevents::Mode::kBatch) {
    // The stored events are already in the JSON format: join them without parsing.
    message.headers["content-type"] = std::string(cloudevents::kBatchType);
    size_t size = 2;
    for (const auto& e : events) size += e.json.size() + 1;
    message.body.reserve(size);
    message.body.push_back('[');
    for (size_t i = 0; i < events.size(); ++i) {
      if (i) message.body.push_back(',');
      message.body.append(events[i].json);
    }
    message.body.push_back(']');
  } else if (options_.mode == cloudevents::Mode::kStructured) {
    message.headers["content-type"] = std::string(cloudevents::kStructuredType);
    message.body = events.front().json;
  } else {
    auto event = cloudevents::ParseEvent(events.front().json);
    if (!event) return {ports::DeliveryOutcome::kFinal, 0, "stored event does not parse: " + event.error().message, {}};
    message = cloudevents::EncodeBinary(*event);
  }

  if (options_.mode != cloudevents::Mode::kBatch) AddTraceHeaders(events.front().json, message.headers);

  std::unique_ptr<HttpPoster> http = pool_.Take();
  const HttpAnswer answer =
      http->Post(options_.url, message.headers, message.body, options_.connect_timeout, options_.total_timeout);
  pool_.Give(std::move(http));
  if (!answer.transport_error.empty()) return {ports::DeliveryOutcome::kRetry, 0, answer.transport_error, {}};
  const long status = answer.status;
  ports::DeliveryOutcome out;
  out.status = static_cast<int>(status);
  if (status >= 200 && status < 300) {
    out.kind = ports::DeliveryOutcome::kDelivered;
  } else if (transport::IsRetryableStatus(status)) {
    out.kind = ports::DeliveryOutcome::kRetry;
    out.retry_after = ParseRetryAfter(answer.retry_after, std::chrono::system_clock::now());
  } else {
    out.kind = ports::DeliveryOutcome::kFinal;
  }
  return out;
}

}  // namespace ccm::clients
