#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "domain/result.h"

namespace ccm::cloudevents {

// A CloudEvent (CloudEvents 1.0.2). Knows nothing of what the event is about.
struct CloudEvent {
  std::string id;
  std::string source;            // URI-reference
  std::string specversion = "1.0";
  std::string type;
  std::optional<std::string> subject;
  std::optional<std::string> time;             // RFC 3339
  std::optional<std::string> datacontenttype;  // e.g. application/json
  std::optional<std::string> dataschema;       // absolute URI
  // Other attributes: a string, an integer or a boolean each, as the JSON format allows.
  std::map<std::string, nlohmann::json> extensions;
  // At most one of these. `data` holds JSON data (or a JSON string for text data);
  // `data_base64` binary data, base64-encoded.
  std::optional<nlohmann::json> data;
  std::optional<std::string> data_base64;
};

// Checks the rules of the spec: id, source, specversion and type present and non-empty;
// specversion exactly "1.0"; attribute names of a-z and 0-9 only (at most 20 characters
// advised, not enforced); time an RFC 3339 timestamp; source a URI-reference; dataschema an
// absolute URI; not both data and data_base64; every String attribute (core or extension)
// well-formed UTF-8 (so no surrogates) without control characters (U+0000-U+001F,
// U+007F-U+009F) or noncharacters (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF in every plane); every
// Integer extension a signed 32-bit value (-2147483648 to 2147483647). Errors:
// invalid_argument whose field is the attribute and whose message names the rule.
Status Validate(const CloudEvent& event);

// True for a name the spec allows for an attribute: lower-case letters and digits.
bool ValidAttributeName(std::string_view name);
// True for a media type that is JSON: application/json, text/json, or a +json suffix.
bool IsJsonMediaType(std::string_view media_type);

}  // namespace ccm::cloudevents
