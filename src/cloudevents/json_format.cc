#include "cloudevents/json_format.h"

#include "cloudevents/base64.h"

namespace ccm::cloudevents {

using nlohmann::json;

namespace {

constexpr const char* kCoreStrings[] = {"id", "source", "specversion", "type", "subject", "time",
                                        "datacontenttype", "dataschema"};

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

Result<CloudEvent> FromJson(const json& j) {
  if (!j.is_object()) return Error::InvalidArgument("a structured event must be a JSON object", "body");
  CloudEvent e;
  e.specversion.clear();
  for (const auto& [name, value] : j.items()) {
    if (name == "data") {
      e.data = value;
      continue;
    }
    if (name == "data_base64") {
      if (!value.is_string()) return Error::InvalidArgument("data_base64 must be a string", "data_base64");
      if (!Base64Decode(value.get<std::string>()))
        return Error::InvalidArgument("data_base64 must be valid base64", "data_base64");
      e.data_base64 = value.get<std::string>();
      continue;
    }
    if (!ValidAttributeName(name))
      return Error::InvalidArgument("attribute name '" + name + "' must be lower-case letters and digits only", name);
    if (IsCore(name)) {
      if (!value.is_string()) return Error::InvalidArgument(name + " must be a string", name);
      const auto& s = value.get_ref<const std::string&>();
      if (name == "id") e.id = s;
      else if (name == "source") e.source = s;
      else if (name == "specversion") e.specversion = s;
      else if (name == "type") e.type = s;
      else if (name == "subject") e.subject = s;
      else if (name == "time") e.time = s;
      else if (name == "datacontenttype") e.datacontenttype = s;
      else if (name == "dataschema") e.dataschema = s;
      continue;
    }
    e.extensions[name] = value;
  }
  if (auto s = Validate(e); !s) return s.error();
  return e;
}

Result<CloudEvent> ParseEvent(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Error::InvalidArgument("body is not valid JSON", "body");
  return FromJson(j);
}

Result<std::vector<json>> ParseBatchArray(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Error::InvalidArgument("body is not valid JSON", "body");
  if (!j.is_array()) return Error::InvalidArgument("a batch must be a JSON array of events", "body");
  return j.get<std::vector<json>>();
}

std::string ToBatchJsonString(const std::vector<CloudEvent>& events) {
  json arr = json::array();
  for (const auto& e : events) arr.push_back(ToJson(e));
  return arr.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace ccm::cloudevents
