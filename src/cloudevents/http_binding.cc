#include "cloudevents/http_binding.h"

#include <algorithm>
#include <cctype>

#include "cloudevents/base64.h"
#include "cloudevents/json_format.h"
#include "cloudevents/json_parse.h"
#include "domain/utf8.h"

namespace ccm::cloudevents {

using nlohmann::json;

namespace {

std::string MediaType(std::string_view content_type) {
  std::string m(content_type.substr(0, content_type.find(';')));
  m.erase(0, m.find_first_not_of(" \t"));
  m.erase(m.find_last_not_of(" \t") + 1);
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  return m;
}

std::string Header(const std::map<std::string, std::string>& headers, const std::string& name) {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

Result<CloudEvent> DecodeBinary(const std::map<std::string, std::string>& headers, std::string_view body) {
  CloudEvent e;
  e.specversion.clear();
  for (const auto& [name, raw] : headers) {
    if (name.rfind("ce-", 0) != 0) continue;
    const std::string attr = name.substr(3);
    if (!ValidAttributeName(attr))
      return Error::InvalidArgument("attribute name '" + attr + "' must be lower-case letters and digits only", attr);
    auto value = PercentDecodeHeader(raw);
    if (!value) return Error{value.error().code, "header " + name + ": " + value.error().message, attr};
    if (attr == "id") e.id = *value;
    else if (attr == "source") e.source = *value;
    else if (attr == "specversion") e.specversion = *value;
    else if (attr == "type") e.type = *value;
    else if (attr == "subject") e.subject = *value;
    else if (attr == "time") e.time = *value;
    else if (attr == "dataschema") e.dataschema = *value;
    else if (attr == "datacontenttype")
      return Error::InvalidArgument("in binary mode datacontenttype travels as Content-Type, not ce-datacontenttype",
                                    "datacontenttype");
    else e.extensions[attr] = *value;
  }
  const std::string content_type = Header(headers, "content-type");
  if (!content_type.empty()) e.datacontenttype = content_type;
  if (!body.empty()) {
    if (content_type.empty() || IsJsonMediaType(content_type)) {
      auto data = ParseJson(body, "data");
      if (!data) return data.error();
      e.data = std::move(data.value());
    } else if (MediaType(content_type).rfind("text/", 0) == 0 && domain::IsValidUtf8(body)) {
      // Text data travels as a JSON string, which must be UTF-8; text in another charset
      // is kept byte for byte as binary data.
      e.data = std::string(body);
    } else {
      e.data_base64 = Base64Encode(body);
    }
  }
  if (auto s = Validate(e); !s) return s.error();
  return e;
}

// JSON format §4: a batch is an array of events, so one element that is not an event makes
// the whole message invalid. Every element is judged before the caller applies any.
Result<Decoded> DecodeBatch(std::vector<json>&& items) {
  Decoded out;
  out.mode = Mode::kBatch;
  out.events.reserve(items.size());
  std::optional<Error> first;
  size_t invalid = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string at = "[" + std::to_string(i) + "]";
    std::optional<Error> error;
    if (!items[i].is_object()) {
      error = Error::InvalidArgument("batch element " + at + " must be a JSON object (an event)", at);
    } else if (auto e = FromJson(std::move(items[i])); !e) {
      error = Error{e.error().code, "batch element " + at + ": " + e.error().message,
                    at + (e.error().field.empty() ? "" : "." + e.error().field)};
    } else if (!out.events.empty() && e->specversion != out.events.front().event->specversion) {
      error = Error::InvalidArgument("batch element " + at + ": specversion \"" + e->specversion +
                                         "\" differs from the batch's \"" + out.events.front().event->specversion + "\"",
                                     at + ".specversion");
    } else {
      out.events.push_back({std::move(e.value())});
    }
    if (error) {
      ++invalid;
      if (!first) first = std::move(error);
    }
  }
  if (first) {
    first->message += "; a batch with an invalid element is refused whole (" + std::to_string(invalid) + " of " +
                      std::to_string(items.size()) + " elements invalid)";
    return *first;
  }
  return out;
}

}  // namespace

std::string PercentEncodeHeader(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '%') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  return out;
}

Result<std::string> PercentDecodeHeader(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '%') {
      out += value[i];
      continue;
    }
    if (i + 2 >= value.size() || !std::isxdigit(static_cast<unsigned char>(value[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(value[i + 2])))
      return Error::InvalidArgument("malformed percent-encoding");
    out += static_cast<char>(std::stoi(std::string(value.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  if (const size_t bad = domain::FirstInvalidUtf8(out); bad != std::string::npos)
    return Error::InvalidArgument("percent-decoded value is not UTF-8 (byte " + std::to_string(bad) + ")");
  return out;
}

HttpMessage EncodeStructured(const CloudEvent& event) {
  return {{{"content-type", std::string(kStructuredType)}}, ToJsonString(event)};
}

HttpMessage EncodeBatch(const std::vector<CloudEvent>& events) {
  return {{{"content-type", std::string(kBatchType)}}, ToBatchJsonString(events)};
}

HttpMessage EncodeBinary(const CloudEvent& e) {
  HttpMessage m;
  auto put = [&m](const std::string& name, const std::string& value) {
    m.headers["ce-" + name] = PercentEncodeHeader(value);
  };
  put("specversion", e.specversion);
  put("id", e.id);
  put("source", e.source);
  put("type", e.type);
  if (e.subject) put("subject", *e.subject);
  if (e.time) put("time", *e.time);
  if (e.dataschema) put("dataschema", *e.dataschema);
  for (const auto& [k, v] : e.extensions) put(k, v.is_string() ? v.get<std::string>() : v.dump());
  // Without a datacontenttype, JSON data is application/json and binary data an octet stream
  // (a receiver would otherwise take the bytes for JSON).
  const std::string type =
      e.datacontenttype.value_or(e.data ? "application/json" : e.data_base64 ? "application/octet-stream" : "");
  if (!type.empty()) m.headers["content-type"] = type;
  if (e.data) {
    m.body = (e.data->is_string() && !IsJsonMediaType(type)) ? e.data->get<std::string>()
                                                             : e.data->dump(-1, ' ', false, json::error_handler_t::replace);
  } else if (e.data_base64) {
    m.body = Base64Decode(*e.data_base64).value_or("");
  }
  return m;
}

Result<Decoded> Decode(const std::map<std::string, std::string>& headers, std::string_view body) {
  const std::string media = MediaType(Header(headers, "content-type"));
  Decoded out;
  if (media == kStructuredType) {
    out.mode = Mode::kStructured;
    auto e = ParseEvent(body);
    if (!e) return e.error();
    out.events.push_back({std::move(e.value())});
    return out;
  }
  if (media == kBatchType) {
    out.mode = Mode::kBatch;
    auto items = ParseBatchArray(body);
    if (!items) return items.error();
    return DecodeBatch(std::move(items.value()));
  }
  if (media.rfind("application/cloudevents", 0) == 0)
    return Error::UnsupportedMediaType("event format " + media + " is not supported; use application/cloudevents+json");
  if (headers.count("ce-specversion")) {
    out.mode = Mode::kBinary;
    auto e = DecodeBinary(headers, body);
    if (!e) return e.error();
    out.events.push_back({std::move(e.value())});
    return out;
  }
  if (media.empty() || IsJsonMediaType(media))
    return Error::InvalidArgument(
        "not a CloudEvent: binary mode needs a ce-specversion header; structured mode needs Content-Type "
        "application/cloudevents+json",
        "specversion");
  return Error::UnsupportedMediaType("Content-Type " + media + " carries no CloudEvent");
}

}  // namespace ccm::cloudevents
