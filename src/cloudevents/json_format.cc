#include "cloudevents/json_format.h"

#include "cloudevents/base64.h"
#include "cloudevents/json_parse.h"

namespace ccm::cloudevents {

using nlohmann::json;

namespace {

constexpr const char* kCoreStrings[] = {"id", "source", "specversion", "type", "subject", "time",
                                        "datacontenttype", "dataschema"};

bool IsRequired(std::string_view name) {
  return name == "id" || name == "source" || name == "specversion" || name == "type";
}

bool IsCore(std::string_view name) {
  for (const char* c : kCoreStrings)
    if (name == c) return true;
  return false;
}

}  // namespace

json ToJson(const CloudEvent& e) {
  json j = {{"specversion", e.specversion}, {"id", e.id}, {"source", e.source}, {"type", e.type}};
  if (e.subject) j["subject"] = *e.subject;
  if (e.time) j["time"] = *e.time;
  if (e.datacontenttype) j["datacontenttype"] = *e.datacontenttype;
  if (e.dataschema) j["dataschema"] = *e.dataschema;
  for (const auto& [k, v] : e.extensions) j[k] = v;
  if (e.data) j["data"] = *e.data;
  if (e.data_base64) j["data_base64"] = *e.data_base64;
  return j;
}

std::string ToJsonString(const CloudEvent& e) { return ToJson(e).dump(-1, ' ', false, json::error_handler_t::replace); }

Result<CloudEvent> FromJson(json&& j) {
  if (!j.is_object()) return Error::InvalidArgument("a structured event must be a JSON object", "body");
  CloudEvent e;
  e.specversion.clear();
  // Members are moved out, never copied: data may be a large document.
  for (auto& [name, value] : j.get_ref<json::object_t&>()) {
    // JSON format §2.2: an attribute whose value is null is unset; `data: null` is different,
    // an explicit null payload.
    if (value.is_null() && name != "data") {
      if (IsRequired(name))
        return Error::InvalidArgument(name + " is required and must not be null", name);
      if (name != "data_base64" && !ValidAttributeName(name))
        return Error::InvalidArgument("attribute name '" + name + "' must be lower-case letters and digits only", name);
      continue;
    }
    if (name == "data") {
      e.data = std::move(value);
      continue;
    }
    if (name == "data_base64") {
      if (!value.is_string()) return Error::InvalidArgument("data_base64 must be a string", "data_base64");
      if (!Base64Decode(value.get_ref<const std::string&>()))
        return Error::InvalidArgument("data_base64 must be valid base64", "data_base64");
      e.data_base64 = std::move(value.get_ref<std::string&>());
      continue;
    }
    if (!ValidAttributeName(name))
      return Error::InvalidArgument("attribute name '" + name + "' must be lower-case letters and digits only", name);
    if (IsCore(name)) {
      if (!value.is_string()) return Error::InvalidArgument(name + " must be a string", name);
      std::string& s = value.get_ref<std::string&>();
      if (name == "id") e.id = std::move(s);
      else if (name == "source") e.source = std::move(s);
      else if (name == "specversion") e.specversion = std::move(s);
      else if (name == "type") e.type = std::move(s);
      else if (name == "subject") e.subject = std::move(s);
      else if (name == "time") e.time = std::move(s);
      else if (name == "datacontenttype") e.datacontenttype = std::move(s);
      else if (name == "dataschema") e.dataschema = std::move(s);
      continue;
    }
    e.extensions[name] = std::move(value);
  }
  if (auto s = Validate(e); !s) return s.error();
  return e;
}

Result<CloudEvent> ParseEvent(std::string_view text) {
  auto j = ParseJson(text, kBodyField, /*envelope_levels=*/1);
  if (!j) return j.error();
  return FromJson(std::move(j.value()));
}

Result<std::vector<json>> ParseBatchArray(std::string_view text) {
  auto j = ParseJson(text, kBodyField, /*envelope_levels=*/2);
  if (!j) return j.error();
  if (!j->is_array()) return Error::InvalidArgument("a batch must be a JSON array of events", "body");
  return std::move(j->get_ref<json::array_t&>());
}

std::string ToBatchJsonString(const std::vector<CloudEvent>& events) {
  json arr = json::array();
  for (const auto& e : events) arr.push_back(ToJson(e));
  return arr.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace ccm::cloudevents
