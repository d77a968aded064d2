#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "domain/result.h"
#include "domain/time.h"
#include "http/message.h"

namespace ccm::http {

// The request's body as a JSON object, parsed by cloudevents::ParseJson (so strictly UTF-8,
// and nesting at most CCM_MAX_JSON_DEPTH levels). Errors: Error::UnsupportedMediaType unless
// Content-Type is application/json; naming the member that nests too
// deep; with field "body" unless the body parses to an object.
Result<nlohmann::json> ParseJsonObject(const Request& request);

// Reads typed fields from a JSON object and keeps the first error, named by its path
// ("resource_requirements.cpu_cores") and the rule it broke. Unknown fields are errors, so
// that a typo is not silently ignored.
class FieldReader {
 public:
  FieldReader(const nlohmann::json& object, std::string prefix = "");

  // Refuses any member not in `allowed`.
  void Only(std::initializer_list<std::string_view> allowed);

  std::string String(std::string_view key);  // required, non-empty
  std::optional<std::string> OptString(std::string_view key);  // null or absent -> nullopt
  double Number(std::string_view key);  // required
  std::optional<double> OptNumber(std::string_view key);
  std::optional<std::int64_t> OptInt(std::string_view key, std::int64_t min, std::int64_t max);
  std::int64_t Int(std::string_view key, std::int64_t min, std::int64_t max);
  bool Bool(std::string_view key, bool fallback);
  Timestamp Time(std::string_view key);  // required RFC 3339
  // A required (or optional) nested object; null when missing/invalid (error recorded).
  const nlohmann::json* Object(std::string_view key, bool required);
  const nlohmann::json* Array(std::string_view key, bool required);

  // Records an error for `key` unless one is recorded already.
  void Fail(std::string_view key, const std::string& rule);
  std::string Path(std::string_view key) const;

  bool ok() const { return !error_.has_value(); }
  const Error& error() const { return *error_; }
  // Takes the first error of a nested reader.
  void Merge(const FieldReader& nested);

 private:
  const nlohmann::json* Find(std::string_view key) const;

  const nlohmann::json& object_;
  std::string prefix_;
  std::optional<Error> error_;
};

}  // namespace ccm::http
