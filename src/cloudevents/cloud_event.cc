#include "cloudevents/cloud_event.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>

#include "domain/time.h"
#include "domain/utf8.h"

namespace ccm::cloudevents {

namespace {

bool IsHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// RFC 3986 URI-reference, checked for what can be checked without a full grammar: no
// control characters, no spaces, well-formed percent escapes.
bool ValidUriReference(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' ||
        c == '{' || c == '|' || c == '}')
      return false;
    if (c == '%' && (i + 2 >= s.size() || !IsHex(s[i + 1]) || !IsHex(s[i + 2]))) return false;
  }
  return true;
}

// An absolute URI: a scheme (a letter, then letters, digits, '+', '-', '.') and ':'.
bool ValidAbsoluteUri(std::string_view s) {
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  if (!std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (size_t i = 1; i < colon; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (!std::isalnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return ValidUriReference(s);
}

// True when well-formed UTF-8 `text` holds a Unicode noncharacter: U+FDD0-U+FDEF, or the
// last two code points of any plane (U+xFFFE, U+xFFFF).
bool HasNoncharacter(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size(); ++i) {
    // U+FDD0-U+FDEF: EF B7 90-AF. U+FFFE, U+FFFF: EF BF BE-BF.
    if (s[i] == 0xEF && i + 2 < text.size()) {
      if (s[i + 1] == 0xB7 && s[i + 2] >= 0x90 && s[i + 2] <= 0xAF) return true;
      if (s[i + 1] == 0xBF && s[i + 2] >= 0xBE) return true;
    }
    // U+1FFFE ... U+10FFFF: F0-F4, a second byte whose low four bits are all set, BF, BE-BF.
    if (s[i] >= 0xF0 && s[i] <= 0xF4 && i + 3 < text.size() && (s[i + 1] & 0x0F) == 0x0F && s[i + 2] == 0xBF &&
        s[i + 3] >= 0xBE)
      return true;
  }
  return false;
}

// CloudEvents String (spec.md, Type System): Unicode text, without the control characters,
// surrogates and noncharacters the spec excludes. Surrogates cannot pass the UTF-8 check.
Status ValidString(std::string_view value, const std::string& name) {
  if (const size_t bad = domain::FirstInvalidUtf8(value); bad != std::string_view::npos)
    return Error::InvalidArgument(name + " must be UTF-8 (invalid byte at " + std::to_string(bad) + ")", name);
  if (domain::HasControlCharacter(value))
    return Error::InvalidArgument(name + " must not contain control characters (U+0000-U+001F, U+007F-U+009F)", name);
  if (HasNoncharacter(value))
    return Error::InvalidArgument(name + " must not contain Unicode noncharacters (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF)",
                                  name);
  return {};
}

// CloudEvents Integer (spec.md, Type System): a signed 32-bit value.
bool InInt32Range(const nlohmann::json& value) {
  if (value.is_number_unsigned())
    return value.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max());
  const auto v = value.get<std::int64_t>();
  return v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max();
}

}  // namespace

bool ValidAttributeName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

bool IsJsonMediaType(std::string_view media_type) {
  std::string m(media_type.substr(0, media_type.find(';')));
  m.erase(m.find_last_not_of(" \t") + 1);
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  return m == "application/json" || m == "text/json" || (m.size() > 5 && m.ends_with("+json"));
}

Status Validate(const CloudEvent& e) {
  // First, so that no message below quotes bytes that are not text.
  for (const auto& [value, name] : {std::pair<const std::string*, const char*>{&e.specversion, "specversion"},
                                    {&e.id, "id"}, {&e.source, "source"}, {&e.type, "type"}})
    if (auto s = ValidString(*value, name); !s) return s;
  for (const auto& [value, name] :
       {std::pair<const std::optional<std::string>*, const char*>{&e.subject, "subject"}, {&e.time, "time"},
        {&e.datacontenttype, "datacontenttype"}, {&e.dataschema, "dataschema"}})
    if (*value)
      if (auto s = ValidString(**value, name); !s) return s;
  auto required = [](const std::string& v, const char* name) -> Status {
    if (v.empty()) return Error::InvalidArgument(std::string(name) + " is required and must not be empty", name);
    return {};
  };
  if (auto s = required(e.specversion, "specversion"); !s) return s;
  if (e.specversion != "1.0")
    return Error::InvalidArgument("specversion must be \"1.0\", not \"" + e.specversion + "\"", "specversion");
  if (auto s = required(e.id, "id"); !s) return s;
  if (auto s = required(e.source, "source"); !s) return s;
  if (auto s = required(e.type, "type"); !s) return s;
  if (!ValidUriReference(e.source)) return Error::InvalidArgument("source must be a URI-reference", "source");
  if (e.subject && e.subject->empty()) return Error::InvalidArgument("subject must not be empty when present", "subject");
  if (e.time && !ParseRfc3339(*e.time))
    return Error::InvalidArgument("time must be an RFC 3339 timestamp", "time");
  if (e.datacontenttype && e.datacontenttype->empty())
    return Error::InvalidArgument("datacontenttype must not be empty when present", "datacontenttype");
  if (e.dataschema && !ValidAbsoluteUri(*e.dataschema))
    return Error::InvalidArgument("dataschema must be an absolute URI", "dataschema");
  for (const auto& [name, value] : e.extensions) {
    if (!ValidAttributeName(name))
      return Error::InvalidArgument("attribute name '" + name + "' must be lower-case letters and digits only", name);
    if (!value.is_string() && !value.is_boolean() && !value.is_number_integer())
      return Error::InvalidArgument("extension " + name + " must be a string, an integer or a boolean", name);
    if (value.is_string())
      if (auto s = ValidString(value.get_ref<const std::string&>(), name); !s) return s;
    if (value.is_number_integer() && !InInt32Range(value))
      return Error::InvalidArgument(
          "extension " + name + " must be a signed 32-bit integer (-2147483648 to 2147483647), not " + value.dump(),
          name);
  }
  if (e.data && e.data_base64) return Error::InvalidArgument("data and data_base64 must not both be present", "data");
  return {};
}

}  // namespace ccm::cloudevents
