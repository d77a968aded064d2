#include "http/request_body.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "cloudevents/json_parse.h"

namespace ccm::http {

using nlohmann::json;

Result<json> ParseJsonObject(const Request& request) {
  std::string type(request.Header("content-type"));
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
  const std::string_view media = std::string_view(type).substr(0, type.find(';'));
  const auto trimmed = media.substr(0, media.find_last_not_of(" \t") + 1);
  if (trimmed != "application/json")
    return Error::UnsupportedMediaType("Content-Type must be application/json, not '" +
                                       std::string(request.Header("content-type")) + "'");
  auto body = cloudevents::ParseJson(request.body, cloudevents::kBodyField, /*envelope_levels=*/1);
  if (!body) return body.error();
  if (!body->is_object()) return Error::InvalidArgument("request body must be a JSON object", "body");
  return body;
}

FieldReader::FieldReader(const json& object, std::string prefix) : object_(object), prefix_(std::move(prefix)) {}

std::string FieldReader::Path(std::string_view key) const {
  return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
}

void FieldReader::Fail(std::string_view key, const std::string& rule) {
  if (!error_) error_ = Error::InvalidArgument(Path(key) + " " + rule, Path(key));
}

void FieldReader::Merge(const FieldReader& nested) {
  if (!error_ && !nested.ok()) error_ = nested.error();
}

const json* FieldReader::Find(std::string_view key) const {
  const auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

void FieldReader::Only(std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, _] : object_.items())
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) Fail(key, "is not a known field");
}

std::string FieldReader::String(std::string_view key) {
  const json* v = Find(key);
  if (!v || v->is_null()) {
    Fail(key, "is required");
    return {};
  }
  if (!v->is_string()) {
    Fail(key, "must be a string");
    return {};
  }
  if (v->get_ref<const std::string&>().empty()) Fail(key, "must not be empty");
  return v->get<std::string>();
}

std::optional<std::string> FieldReader::OptString(std::string_view key) {
  const json* v = Find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) {
    Fail(key, "must be a string");
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::optional<double> FieldReader::OptNumber(std::string_view key) {
  const json* v = Find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_number()) {
    Fail(key, "must be a number");
    return std::nullopt;
  }
  return v->get<double>();
}

double FieldReader::Number(std::string_view key) {
  const json* v = Find(key);
  if (!v || v->is_null()) {
    Fail(key, "is required");
    return 0;
  }
  return OptNumber(key).value_or(0);
}

std::optional<std::int64_t> FieldReader::OptInt(std::string_view key, std::int64_t min, std::int64_t max) {
  const json* v = Find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_number_integer()) {
    Fail(key, "must be an integer");
    return std::nullopt;
  }
  const auto n = v->get<std::int64_t>();
  if (n < min || n > max) {
    Fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return std::nullopt;
  }
  return n;
}

std::int64_t FieldReader::Int(std::string_view key, std::int64_t min, std::int64_t max) {
  const json* v = Find(key);
  if (!v || v->is_null()) {
    Fail(key, "is required");
    return 0;
  }
  return OptInt(key, min, max).value_or(0);
}

bool FieldReader::Bool(std::string_view key, bool fallback) {
  const json* v = Find(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_boolean()) {
    Fail(key, "must be true or false");
    return fallback;
  }
  return v->get<bool>();
}

Timestamp FieldReader::Time(std::string_view key) {
  const std::string text = String(key);
  if (!ok()) return {};
  auto t = ParseRfc3339(text);
  if (!t) {
    Fail(key, "must be an RFC 3339 date-time such as 2026-11-27T09:00:00Z");
    return {};
  }
  return *t;
}

const json* FieldReader::Object(std::string_view key, bool required) {
  const json* v = Find(key);
  if (!v || v->is_null()) {
    if (required) Fail(key, "is required");
    return nullptr;
  }
  if (!v->is_object()) {
    Fail(key, "must be an object");
    return nullptr;
  }
  return v;
}

const json* FieldReader::Array(std::string_view key, bool required) {
  const json* v = Find(key);
  if (!v || v->is_null()) {
    if (required) Fail(key, "is required");
    return nullptr;
  }
  if (!v->is_array()) {
    Fail(key, "must be an array");
    return nullptr;
  }
  return v;
}

}  // namespace ccm::http
