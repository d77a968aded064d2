#include "clients/http_event_sink.h"

#include <cctype>
#include <charconv>
#include <ctime>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

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

// The top-level `traceparent` and `tracestate` members of an event's JSON, read through
// nlohmann's SAX interface, without building the event's tree: nearly every stored event
// carries a trace, and this runs for each one sent. As the tree would have it, a member
// named twice counts by its last value, and a member whose value is not a string counts as
// absent.
class TraceMembers {
 public:
  using json = nlohmann::json;
  std::optional<std::string> traceparent;
  std::optional<std::string> tracestate;

  bool null() { return Scalar(); }
  bool boolean(bool) { return Scalar(); }
  bool number_integer(json::number_integer_t) { return Scalar(); }
  bool number_unsigned(json::number_unsigned_t) { return Scalar(); }
  bool number_float(json::number_float_t, const json::string_t&) { return Scalar(); }
  bool binary(json::binary_t&) { return Scalar(); }
  bool string(json::string_t& value) {
    if (member_) *member_ = std::move(value);
    member_ = nullptr;
    return true;
  }
  bool key(json::string_t& name) {
    member_ = depth_ != 1 ? nullptr : name == "traceparent" ? &traceparent : name == "tracestate" ? &tracestate : nullptr;
    return true;
  }
  bool start_object(std::size_t) { return Open(); }
  bool start_array(std::size_t) { return Open(); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

 private:
  bool Scalar() {
    if (member_) member_->reset();
    member_ = nullptr;
    return true;
  }
  bool Open() {
    Scalar();
    ++depth_;
    return true;
  }
  bool Close() {
    --depth_;
    return true;
  }
  int depth_ = 0;                              // 1 inside the event's own object
  std::optional<std::string>* member_ = nullptr;  // the member whose value comes next
};

// The Distributed Tracing extension of a stored event, as the W3C `traceparent` and
// `tracestate` headers of the request that carries it alone: one hop, so the protocol's
// tracing headers carry the same trace as the event (the extension's rule). A batch carries
// several traces and gets none.
void AddTraceHeaders(const TraceMembers& members, std::map<std::string, std::string>& headers) {
  if (!members.traceparent) return;
  // Sent only when they read as W3C values (ccm wrote them; a store edited by hand may not hold).
  const auto trace = trace::Parse(*members.traceparent, members.tracestate.value_or(""));
  if (!trace) return;
  headers["traceparent"] = *members.traceparent;
  if (!trace->state.empty()) headers["tracestate"] = trace->state;
}

// The trace members of an event sent as it is stored (structured mode), read from its text.
TraceMembers TraceOf(const std::string& event_json) {
  TraceMembers members;
  if (event_json.find("\"traceparent\"") == std::string::npos) return members;  // stored before traces: no parse
  if (!nlohmann::json::sax_parse(event_json, &members)) return {};
  return members;
}

// The trace members of an event already parsed (binary mode): its extension attributes, by
// the same rules (a value that is not a string is absent).
TraceMembers TraceOf(const cloudevents::CloudEvent& event) {
  TraceMembers members;
  for (auto [name, member] : {std::pair{"traceparent", &members.traceparent}, {"tracestate", &members.tracestate}}) {
    const auto found = event.extensions.find(name);
    if (found != event.extensions.end() && found->second.is_string()) *member = found->second.get<std::string>();
  }
  return members;
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
    AddTraceHeaders(TraceOf(events.front().json), message.headers);
  } else {
    auto event = cloudevents::ParseEvent(events.front().json);
    if (!event) return {ports::DeliveryOutcome::kFinal, 0, "stored event does not parse: " + event.error().message, {}};
    message = cloudevents::EncodeBinary(*event);
    AddTraceHeaders(TraceOf(*event), message.headers);
  }

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
