#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "domain/result.h"

// The one way ccm parses JSON text that it did not write itself: request bodies, CloudEvents,
// and the answers of remotes. It lives here, beside the CloudEvents JSON format, because this
// is the lowest layer that knows JSON and every other one (app, http, clients, store) builds on
// it.
namespace ccm::cloudevents {

// How deeply a JSON text may nest unless CCM_MAX_JSON_DEPTH says otherwise. Every '[' and '{'
// opens one level: `{"a": [1]}` nests 2 deep. ccm's deepest shapes (a score breakdown inside
// an event's data, a stored instance) nest 4 or 5 deep.
inline constexpr int kDefaultMaxJsonDepth = 64;
// The range CCM_MAX_JSON_DEPTH accepts: deep enough for any document ccm reads, shallow enough
// that copying or writing a parsed document (both recursive) cannot run a thread out of stack.
inline constexpr int kMinMaxJsonDepth = 8;
inline constexpr int kMaxMaxJsonDepth = 1000;

// Sets the depth ParseJson allows (clamped to the range above). Called once at start-up,
// before any request is served; reading and setting are thread-safe (an atomic).
void SetMaxJsonDepth(int depth);
int MaxJsonDepth();

// Where a text first nests deeper than allowed.
struct JsonDepthExcess {
  std::size_t offset = 0;  // of the '[' or '{' that opens the level too many
  // The members or elements that hold it, at most `named_levels` of them from the top:
  // "data", "[3].data", "resource_requirements.x"; empty when none is named.
  std::string path;
};

// Scans `text` once, reading strings as JSON does (quotes, backslash escapes), for the first
// '[' or '{' outside a string that opens level `max_depth + 1`. nullopt when there is none.
// `named_levels` (at most 2) is how many levels from the top the path names.
// For valid JSON this is exactly the parser's nesting; for invalid JSON it agrees with the
// parser up to the first error, so a text that passes cannot nest deeper in the parser.
// Allocates nothing unless it finds one. Pure; thread-safe.
std::optional<JsonDepthExcess> FindJsonDepthExcess(std::string_view text, int max_depth, int named_levels = 2);

// The field that names a request body in errors. Members of a body are named by themselves
// ("data", not "body.data"), as FieldReader does.
inline constexpr std::string_view kBodyField = "body";

// Parses `text` as one JSON value whose content nests at most MaxJsonDepth() levels (or
// `max_depth`); the depth is checked before anything is built. `envelope_levels` are the
// levels of the message around its content, which the limit leaves out: 1 for a request body
// or a structured event (the object), 2 for a batch (the array and each event), 0 for an
// event's data in binary mode. So the same data passes or fails in every mode, and an event
// that was accepted can be re-encoded in any mode. `field` names the text in errors:
// kBodyField for a request body, "data" for an event's data.
// Errors, all invalid_argument:
// - nesting too deep: message "<where> nests deeper than <N> levels (CCM_MAX_JSON_DEPTH)",
//   field <where>: the member of the envelope that does ("data", "[3].data", "capacity"),
//   or `field` without an envelope;
// - an unpaired surrogate escape ("\ud800") inside a member of the envelope: message
//   "<where> must not contain surrogates ...", field <where> ("subject", "[3].myext"), so
//   that the refusal names the attribute as the CloudEvents String rule does;
// - not JSON (syntax, bytes that are not UTF-8, an unpaired surrogate escape outside a named
//   member, trailing data): message "<field> is not valid JSON", field `field`.
Result<nlohmann::json> ParseJson(std::string_view text, std::string_view field, int envelope_levels = 0);
Result<nlohmann::json> ParseJsonBounded(std::string_view text, std::string_view field, int envelope_levels,
                                        int max_depth);

// ParseJson for callers that only look at the shape of what they get (a remote's answer):
// the value, or a discarded one (is_discarded()) for text that is not JSON or nests deeper
// than MaxJsonDepth(), as nlohmann::json::parse(text, nullptr, false) gives for bad syntax.
nlohmann::json ParseJsonOrDiscarded(std::string_view text);

// The string member `name` of the JSON object `text`, read without building the document: the
// parse stops at it, so that members after it cost no allocation. nullopt when `text` is not
// an object (or not JSON up to the member), has no such member, or its value is not a string.
std::optional<std::string> FindTopLevelString(std::string_view text, std::string_view name);

}  // namespace ccm::cloudevents
