#include "support/json_schema.h"

#include <cstdint>
#include <algorithm>
#include <regex>

namespace ccm::testing {

using nlohmann::json;

namespace {

bool HasType(const json& v, const std::string& type);

// `type` may be one name or a list of names (JSON Schema 2020-12).
bool HasAnyType(const json& v, const json& type) {
  if (type.is_string()) return HasType(v, type.get<std::string>());
  for (const auto& t : type)
    if (HasType(v, t.get<std::string>())) return true;
  return false;
}

bool HasType(const json& v, const std::string& type) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "integer") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  return true;
}

}  // namespace

std::vector<std::string> ValidateSchema(const json& doc, const json& schema, const json& v, const std::string& path) {
  std::vector<std::string> errors;
  auto fail = [&](const std::string& m) { errors.push_back(path + ": " + m); };
  if (schema.contains("$ref")) {
    const std::string ref = schema["$ref"];
    const std::string prefix = "#/components/schemas/";
    if (ref.rfind(prefix, 0) != 0) {
      fail("unsupported $ref " + ref);
      return errors;
    }
    return ValidateSchema(doc, doc["components"]["schemas"][ref.substr(prefix.size())], v, path);
  }
  if (schema.contains("anyOf") || schema.contains("oneOf")) {
    const bool one = schema.contains("oneOf");
    const json& options = one ? schema["oneOf"] : schema["anyOf"];
    // A discriminator names the one option to check.
    if (one && schema.contains("discriminator") && v.is_object()) {
      const json& d = schema["discriminator"];
      const std::string tag = v.value(d.value("propertyName", ""), "");
      const json mapping = d.value("mapping", json::object());
      if (!mapping.contains(tag)) {
        fail("unknown " + d.value("propertyName", "") + " '" + tag + "'");
        return errors;
      }
      return ValidateSchema(doc, json{{"$ref", mapping[tag]}}, v, path);
    }
    int matched = 0;
    std::vector<std::string> first;
    for (const auto& option : options) {
      auto e = ValidateSchema(doc, option, v, path);
      if (e.empty()) ++matched;
      else if (first.empty()) first = e;
    }
    if (matched == 0) {
      fail("matches none of the " + std::string(one ? "oneOf" : "anyOf") + " options" +
           (first.empty() ? "" : " (first: " + first.front() + ")"));
      return errors;
    }
    if (one && matched > 1) fail("matches more than one oneOf option");
  }
  if (schema.contains("enum") &&
      std::find(schema["enum"].begin(), schema["enum"].end(), v) == schema["enum"].end())
    fail("not one of " + schema["enum"].dump());
  if (schema.contains("const") && schema["const"] != v) fail("must be " + schema["const"].dump());
  if (v.is_null()) {
    if (!schema.value("nullable", false) && schema.contains("type") && !HasAnyType(v, schema["type"]))
      fail("null is not allowed");
    return errors;
  }
  if (schema.contains("type") && !HasAnyType(v, schema["type"])) {
    fail("must be of type " + schema["type"].dump());
    return errors;
  }
  if (schema.value("format", "") == "int32" && v.is_number_integer()) {
    const auto n = v.get<std::int64_t>();
    if (n < INT32_MIN || n > INT32_MAX) fail("out of int32 range");
  }
  if (v.is_string() && schema.contains("minLength") && v.get<std::string>().size() < schema["minLength"].get<size_t>())
    fail("shorter than minLength " + std::to_string(schema["minLength"].get<int>()));
  if (v.is_string() && schema.contains("maxLength") && v.get<std::string>().size() > schema["maxLength"].get<size_t>())
    fail("longer than maxLength " + std::to_string(schema["maxLength"].get<int>()));
  if (v.is_string() && schema.contains("pattern")) {
    // ECMAScript regexes, as JSON Schema's; a pattern matches anywhere in the string.
    const std::regex pattern(schema["pattern"].get<std::string>(), std::regex::ECMAScript);
    if (!std::regex_search(v.get<std::string>(), pattern)) fail("does not match " + schema["pattern"].get<std::string>());
  }
  if (v.is_number() && schema.contains("minimum") && v.get<double>() < schema["minimum"].get<double>())
    fail("below minimum " + schema["minimum"].dump());
  if (v.is_number() && schema.contains("maximum") && v.get<double>() > schema["maximum"].get<double>())
    fail("above maximum " + schema["maximum"].dump());
  if (v.is_number() && schema.contains("exclusiveMinimum") &&
      v.get<double>() <= schema["exclusiveMinimum"].get<double>())
    fail("not above exclusiveMinimum " + schema["exclusiveMinimum"].dump());
  if (v.is_array()) {
    if (schema.contains("minItems") && v.size() < schema["minItems"].get<size_t>())
      fail("fewer than minItems " + std::to_string(schema["minItems"].get<int>()));
    if (schema.contains("items"))
      for (size_t i = 0; i < v.size(); ++i) {
        auto e = ValidateSchema(doc, schema["items"], v[i], path + "[" + std::to_string(i) + "]");
        errors.insert(errors.end(), e.begin(), e.end());
      }
  }
  if (v.is_object()) {
    for (const auto& r : schema.value("required", json::array()))
      if (!v.contains(r.get<std::string>())) fail("missing required " + r.get<std::string>());
    const json properties = schema.value("properties", json::object());
    const json additional = schema.contains("additionalProperties") ? schema["additionalProperties"] : json(true);
    for (const auto& [key, value] : v.items()) {
      if (properties.contains(key)) {
        auto e = ValidateSchema(doc, properties[key], value, path + "." + key);
        errors.insert(errors.end(), e.begin(), e.end());
      } else if (additional.is_boolean()) {
        if (!additional.get<bool>()) fail("additional property " + key + " is not allowed");
      } else {
        auto e = ValidateSchema(doc, additional, value, path + "." + key);
        errors.insert(errors.end(), e.begin(), e.end());
      }
    }
  }
  return errors;
}

}  // namespace ccm::testing
