#include "main/cli_format.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

namespace ccm::main {

using nlohmann::json;

namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Whether a YAML reader (1.1 or 1.2) could take the plain scalar `s` for anything but a
// string: null, a boolean, a number, a date or time, or nothing at all. Such strings are
// quoted; yaml-cpp quotes those with special characters by itself.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  static const char* const kWords[] = {"null", "~",   "true", "false", "yes",  "no",    "on",   "off",
                                       "y",    "n",   ".inf", "-.inf", "+.inf", ".nan", "<<",   "="};
  const std::string lower = Lower(s);
  for (const char* w : kWords)
    if (lower == w) return true;
  // Numbers in any base or notation, dates, times and sexagesimals all begin with a digit,
  // or a sign or dot before one.
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (digit(s[0])) return true;
  if ((s[0] == '-' || s[0] == '+' || s[0] == '.') && s.size() > 1 && (digit(s[1]) || s[1] == '.')) return true;
  return false;
}

void Emit(YAML::Emitter& out, const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (const auto& [key, value] : j.items()) {
        out << YAML::Key;
        if (NeedsQuotes(key)) out << YAML::DoubleQuoted;
        out << key << YAML::Value;
        Emit(out, value);
      }
      out << YAML::EndMap;
      return;
    case json::value_t::array:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (const auto& value : j) Emit(out, value);
      out << YAML::EndSeq;
      return;
    case json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      if (NeedsQuotes(s)) out << YAML::DoubleQuoted;
      out << s;
      return;
    }
    case json::value_t::null: out << YAML::Null; return;  // `null` (SetNullFormat)
    case json::value_t::boolean: out << j.get<bool>(); return;
    default: out << j.dump(); return;  // numbers as JSON writes them: integers exact, floats round-trip
  }
}

// A plain (unquoted) YAML scalar as JSON, by the 1.2 core schema.
json PlainScalar(const std::string& s) {
  const std::string lower = Lower(s);
  if (lower == "true") return true;
  if (lower == "false") return false;
  if (lower == "null" || s == "~" || s.empty()) return nullptr;
  const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
  const char* end = s.data() + s.size();
  std::int64_t i = 0;
  if (auto [p, ec] = std::from_chars(begin, end, i); ec == std::errc() && p == end) return i;
  std::uint64_t u = 0;
  if (auto [p, ec] = std::from_chars(begin, end, u); ec == std::errc() && p == end) return u;
  double d = 0;
  const bool numeric = std::all_of(begin, end, [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+';
  });
  if (auto [p, ec] = std::from_chars(begin, end, d); numeric && ec == std::errc() && p == end && std::isfinite(d))
    return d;
  return s;
}

json FromYaml(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json object = json::object();
      for (const auto& entry : node) object[entry.first.as<std::string>()] = FromYaml(entry.second);
      return object;
    }
    case YAML::NodeType::Sequence: {
      json array = json::array();
      for (const auto& item : node) array.push_back(FromYaml(item));
      return array;
    }
    case YAML::NodeType::Scalar:
      // "!" is the tag of a quoted scalar (or one tagged !): always a string.
      if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") return node.Scalar();
      return PlainScalar(node.Scalar());
    default: return nullptr;
  }
}

}  // namespace

std::string ToYaml(const json& j) {
  YAML::Emitter out;
  out.SetIndent(2);
  out.SetNullFormat(YAML::LowerNull);
  out.SetBoolFormat(YAML::TrueFalseBool);
  out.SetBoolFormat(YAML::LowerCase);
  Emit(out, j);
  return std::string(out.c_str()) + "\n";
}

Result<json> ParseDocument(const std::string& text) {
  json parsed = json::parse(text, nullptr, false);
  if (!parsed.is_discarded()) return parsed;
  std::string json_error;
  try {
    const json thrown = json::parse(text);  // parses as above: only for the message of the error
    static_cast<void>(thrown);
  } catch (const json::exception& e) {
    json_error = e.what();
  }
  try {
    return FromYaml(YAML::Load(text));
  } catch (const YAML::Exception& e) {
    const auto first = std::find_if(text.begin(), text.end(), [](unsigned char c) { return !std::isspace(c); });
    const bool looks_json = first != text.end() && (*first == '{' || *first == '[');
    return Error::InvalidArgument(looks_json ? "not valid JSON: " + json_error
                                             : "not valid YAML: " + std::string(e.what()));
  }
}

Result<json> LoadDocument(const std::string& path) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Error::InvalidArgument(path + ": cannot be read", "-f");
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string name = path == "-" ? "stdin" : path;
  auto parsed = ParseDocument(text);
  if (!parsed) return Error::InvalidArgument(name + ": " + parsed.error().message, "-f");
  if (!parsed->is_object()) return Error::InvalidArgument(name + ": must be one object (a mapping)", "-f");
  return parsed;
}

void Table::Print(std::ostream& out) const {
  std::vector<std::size_t> width(header.size(), 0);
  auto cell = [](const std::vector<std::string>& row, std::size_t i) -> std::string {
    return i < row.size() && !row[i].empty() ? row[i] : "-";
  };
  for (std::size_t i = 0; i < header.size(); ++i) {
    width[i] = header[i].size();
    for (const auto& row : rows) width[i] = std::max(width[i], cell(row, i).size());
  }
  auto line = [&](const std::vector<std::string>& row, bool is_header) {
    std::string text;
    for (std::size_t i = 0; i < header.size(); ++i) {
      const std::string c = is_header ? header[i] : cell(row, i);
      text += c;
      if (i + 1 < header.size()) text += std::string(width[i] - c.size() + 2, ' ');
    }
    out << text << "\n";
  };
  line(header, true);
  for (const auto& row : rows) line(row, false);
}

std::string Age(const std::string& rfc3339, Timestamp now) {
  const auto t = ParseRfc3339(rfc3339);
  if (!t) return "";
  const auto s = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(now - *t).count());
  if (s < 120) return std::to_string(s) + "s";
  if (s < 120 * 60) return std::to_string(s / 60) + "m";
  if (s < 48 * 3600) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

void PrintDocument(std::ostream& out, const std::string& format, const json& document,
                   const std::function<void()>& table) {
  if (format == "json")
    out << document.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  else if (format == "yaml")
    out << ToYaml(document);
  else
    table();
}

std::string Cell(const json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) {
    const double d = value.get<double>();
    // 4.0 cores read as 4 in a table; the JSON and YAML forms keep what the API wrote.
    if (std::trunc(d) == d && std::fabs(d) < 1e15) return std::to_string(static_cast<std::int64_t>(d));
  }
  return value.dump();
}

}  // namespace ccm::main
