// Fuzz target: the CloudEvents HTTP decoder in all three modes. The input is an HTTP message
// as "name: value" header lines, a blank line, then the body; its first byte picks the
// Content-Type (structured, batch, binary with ce- headers, or whatever the lines say).
// Invariants checked beyond "no crash": every element decodes to an event or an error; every
// event is valid; the JSON format (structured, batch) gives the same event back; binary mode
// decodes again, and is stable after one trip (its headers carry extensions as strings, so
// a first trip may change their JSON type).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cloudevents/http_binding.h"
#include "cloudevents/json_format.h"

namespace {

using namespace ccm::cloudevents;

void Check(bool ok) {
  if (!ok) std::abort();
}

CloudEvent Trip(const HttpMessage& m) {
  auto again = Decode(m.headers, m.body);
  Check(again.has_value() && again->events.size() == 1 && again->events[0].event.has_value());
  return *again->events[0].event;
}

void RoundTrips(const CloudEvent& e) {
  Check(Validate(e).has_value());
  Check(ToJsonString(Trip(EncodeStructured(e))) == ToJsonString(e));
  Check(ToJsonString(Trip(EncodeBatch({e}))) == ToJsonString(e));
  const CloudEvent once = Trip(EncodeBinary(e));
  Check(ToJsonString(Trip(EncodeBinary(once))) == ToJsonString(once));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::map<std::string, std::string> headers;
  switch (data[0] % 4) {
    case 0: headers["content-type"] = std::string(kStructuredType); break;
    case 1: headers["content-type"] = std::string(kBatchType); break;
    case 2: headers["ce-specversion"] = "1.0"; break;
    default: break;
  }
  const auto blank = in.find("\n\n");
  std::string_view head = blank == std::string_view::npos ? std::string_view() : in.substr(0, blank);
  const std::string_view body = blank == std::string_view::npos ? in : in.substr(blank + 2);
  while (!head.empty()) {
    const auto eol = head.find('\n');
    const std::string_view line = head.substr(0, eol);
    head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 1);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    headers[name] = std::string(value);
  }
  auto decoded = Decode(headers, body);
  if (!decoded) return 0;
  for (const auto& d : decoded->events) {
    Check(d.event.has_value());
    RoundTrips(*d.event);
  }
  return 0;
}
