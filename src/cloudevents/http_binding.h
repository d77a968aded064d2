#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cloudevents/cloud_event.h"

namespace ccm::cloudevents {

// How an event travels in an HTTP message (CloudEvents HTTP Protocol Binding 1.0.2).
enum class Mode {
  kStructured,  // body is the JSON event, Content-Type application/cloudevents+json
  kBinary,      // body is the data, attributes in ce- headers
  kBatch,       // body is a JSON array of events, application/cloudevents-batch+json
};

inline constexpr std::string_view kStructuredType = "application/cloudevents+json";
inline constexpr std::string_view kBatchType = "application/cloudevents-batch+json";

// An HTTP message as the binding sees it: header names in lower case.
struct HttpMessage {
  std::map<std::string, std::string> headers;
  std::string body;
};

HttpMessage EncodeStructured(const CloudEvent& event);
HttpMessage EncodeBinary(const CloudEvent& event);
HttpMessage EncodeBatch(const std::vector<CloudEvent>& events);

// One element of a decoded message. Decode sets `event` on every element it returns: a
// message with an element that is not a valid event is refused whole.
struct DecodedEvent {
  std::optional<CloudEvent> event;
};

// What a request body holds.
struct Decoded {
  Mode mode = Mode::kStructured;
  std::vector<DecodedEvent> events;  // one for structured and binary; one per element in a batch
};

// Decodes a request in whichever mode its headers say: structured by Content-Type
// application/cloudevents+json, batch by application/cloudevents-batch+json, binary when a
// ce-specversion header is present. Errors: Error::UnsupportedMediaType for a media type no
// mode accepts (415), or naming the broken rule for a message that is not a
// CloudEvent (400): JSON that nests deeper than MaxJsonDepth() (the whole message is refused,
// the field names the attribute), or an attribute Validate refuses. In binary mode, JSON data
// becomes `data`, UTF-8 text/* data a string in `data`, anything else (text in another
// charset too) `data_base64`. A header value whose percent-decoded bytes are not UTF-8 is
// refused (field: the attribute). A batch is valid only when every element is (JSON format
// §4): an element that is not an object or not a valid event, or whose specversion differs
// from the first element's, refuses the whole batch, so that nothing of it is applied; the
// error names the first such element, field "[i]" or "[i].<attribute>", and says how many
// elements are invalid.
Result<Decoded> Decode(const std::map<std::string, std::string>& headers, std::string_view body);

// Percent-encodes a header value as the binding requires: bytes outside printable ASCII,
// space, '"' and '%'.
std::string PercentEncodeHeader(std::string_view value);
// The reverse. Errors: invalid_argument for a malformed escape, or for a result that is not
// well-formed UTF-8 (domain::FirstInvalidUtf8: no overlong forms, surrogates or code points
// past U+10FFFF).
Result<std::string> PercentDecodeHeader(std::string_view value);

}  // namespace ccm::cloudevents
