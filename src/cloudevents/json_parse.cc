#include "cloudevents/json_parse.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "domain/utf8.h"

namespace ccm::cloudevents {

namespace {

std::atomic<int> g_max_json_depth{kDefaultMaxJsonDepth};

// What the scanner remembers of the two outermost levels, to name where a text nests too deep.
struct Level {
  bool object = false;
  bool expect_key = false;  // in an object, the next string is a member name
  std::size_t index = 0;    // in an array, the element being read
  std::string_view key;     // in an object, the member being read
};

constexpr std::size_t kTrackedLevels = 2;
constexpr std::size_t kMaxKeyShown = 64;

std::string PathOf(const Level* levels, std::size_t count) {
  std::string path;
  for (std::size_t d = 1; d <= count; ++d) {
    const Level& l = levels[d];
    if (l.object) {
      // A name is shown only when it is printable UTF-8: it lands in a problem+json answer.
      std::string_view key = l.key.substr(0, kMaxKeyShown);
      if (!domain::IsValidUtf8(key) || domain::HasControlCharacter(key)) key = "?";
      if (!path.empty()) path += '.';
      path += key;
    } else {
      path += "[" + std::to_string(l.index) + "]";
    }
  }
  return path;
}

std::string JoinField(std::string_view field, const std::string& path) {
  if (path.empty()) return std::string(field);
  if (field == kBodyField) return path;
  return std::string(field) + (path.front() == '[' ? "" : ".") + path;
}

// Follows a parse to where it fails, to name the member of the envelope that holds an
// unpaired surrogate escape ("\ud800"): the parser refuses it, and the CloudEvents type system
// says why (a String holds no surrogates), so the answer names the attribute as for any other
// invalid String. Only run on text that failed to parse.
class SurrogateLocator final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit SurrogateLocator(std::size_t named_levels) : named_(named_levels) {}

  // The path of the member that held the surrogate, or nullopt for any other parse error or
  // when the error is not inside a named member's value.
  std::optional<std::string> Path() const { return path_; }

  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(number_integer_t) override { return Value(); }
  bool number_unsigned(number_unsigned_t) override { return Value(); }
  bool number_float(number_float_t, const string_t&) override { return Value(); }
  bool string(string_t&) override { return Value(); }
  bool binary(binary_t&) override { return Value(); }
  bool start_object(std::size_t) override { return Open(true); }
  bool start_array(std::size_t) override { return Open(false); }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }
  bool key(string_t& name) override {
    if (!stack_.empty()) stack_.back().key = name;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    const std::string_view what = ex.what();
    if (what.find("surrogate") == std::string_view::npos || stack_.empty()) return false;
    std::string path;
    for (std::size_t d = 0; d < stack_.size() && d < named_; ++d) {
      const Frame& f = stack_[d];
      if (f.object) {
        // An empty key: the surrogate is in a member name, not in a value.
        if (f.key.empty() || !domain::IsValidUtf8(f.key) || domain::HasControlCharacter(f.key)) return false;
        if (!path.empty()) path += '.';
        path += f.key.substr(0, kMaxKeyShown);
      } else {
        path += "[" + std::to_string(f.index) + "]";
      }
    }
    if (!path.empty()) path_ = std::move(path);
    return false;
  }

 private:
  struct Frame {
    bool object = false;
    std::size_t index = 0;  // in an array, the element being read
    std::string key;        // in an object, the member being read; empty between members
    std::size_t count = 0;  // in an array, the elements seen
  };

  // A value starts: in an array it is the next element; in an object it ends the member.
  void Element() {
    if (stack_.empty()) return;
    Frame& f = stack_.back();
    if (!f.object) f.index = f.count++;
  }
  bool Value() {
    Element();
    if (!stack_.empty() && stack_.back().object) stack_.back().key.clear();
    return true;
  }
  bool Open(bool object) {
    Element();
    stack_.push_back(Frame{object, 0, {}, 0});
    return true;
  }
  bool Close() {
    stack_.pop_back();
    if (!stack_.empty() && stack_.back().object) stack_.back().key.clear();
    return true;
  }

  std::size_t named_;
  std::vector<Frame> stack_;
  std::optional<std::string> path_;
};

// Stops the parse at the string member it looks for, at the top level of an object.
class TopLevelStringFinder final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit TopLevelStringFinder(std::string_view name) : name_(name) {}
  std::optional<std::string> found;

  bool null() override { return Other(); }
  bool boolean(bool) override { return Other(); }
  bool number_integer(number_integer_t) override { return Other(); }
  bool number_unsigned(number_unsigned_t) override { return Other(); }
  bool number_float(number_float_t, const string_t&) override { return Other(); }
  bool binary(binary_t&) override { return Other(); }
  bool string(string_t& value) override {
    if (!at_name_) return true;
    found = std::move(value);
    return false;  // found: stop
  }
  bool start_object(std::size_t) override { return Open(); }
  bool start_array(std::size_t) override { return Open(); }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }
  bool key(string_t& key) override {
    at_name_ = depth_ == 1 && key == name_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  bool Other() { return !at_name_; }  // the member is there but not a string: stop
  bool Open() {
    if (at_name_ || (depth_ == 0 && object_seen_)) return false;
    object_seen_ = true;
    ++depth_;
    return true;
  }
  bool Close() {
    --depth_;
    return depth_ > 0;  // the top-level value ended without the member: stop
  }

  std::string_view name_;
  int depth_ = 0;
  bool at_name_ = false;
  bool object_seen_ = false;
};

}  // namespace

void SetMaxJsonDepth(int depth) {
  g_max_json_depth.store(std::clamp(depth, kMinMaxJsonDepth, kMaxMaxJsonDepth), std::memory_order_relaxed);
}

int MaxJsonDepth() { return g_max_json_depth.load(std::memory_order_relaxed); }

std::optional<JsonDepthExcess> FindJsonDepthExcess(std::string_view text, int max_depth, int named_levels) {
  const std::size_t named = static_cast<std::size_t>(std::clamp(named_levels, 0, static_cast<int>(kTrackedLevels)));
  Level levels[kTrackedLevels + 1];
  std::size_t depth = 0;
  bool in_string = false;
  std::size_t key_begin = std::string_view::npos;
  const std::size_t limit = max_depth < 0 ? 0 : static_cast<std::size_t>(max_depth);
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
        if (key_begin != std::string_view::npos) {
          levels[depth].key = text.substr(key_begin, i - key_begin);
          key_begin = std::string_view::npos;
        }
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        if (depth >= 1 && depth <= kTrackedLevels && levels[depth].expect_key) {
          levels[depth].expect_key = false;
          key_begin = i + 1;
        }
        break;
      case '[':
      case '{':
        if (++depth > limit) return JsonDepthExcess{i, PathOf(levels, std::min(depth - 1, named))};
        if (depth <= kTrackedLevels) levels[depth] = Level{c == '{', c == '{', 0, {}};
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      case ',':
        if (depth >= 1 && depth <= kTrackedLevels) {
          if (levels[depth].object) levels[depth].expect_key = true;
          else ++levels[depth].index;
        }
        break;
      default:
        break;
    }
  }
  return std::nullopt;
}

Result<nlohmann::json> ParseJson(std::string_view text, std::string_view field, int envelope_levels) {
  return ParseJsonBounded(text, field, envelope_levels, MaxJsonDepth());
}

Result<nlohmann::json> ParseJsonBounded(std::string_view text, std::string_view field, int envelope_levels,
                                        int max_depth) {
  if (auto excess = FindJsonDepthExcess(text, envelope_levels + max_depth, envelope_levels)) {
    const std::string where = JoinField(field, excess->path);
    return Error::InvalidArgument(where + " nests deeper than " + std::to_string(max_depth) +
                                      " levels (CCM_MAX_JSON_DEPTH)",
                                  where);
  }
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    SurrogateLocator locator(static_cast<std::size_t>(std::clamp(envelope_levels, 0, 2)));
    nlohmann::json::sax_parse(text, &locator);
    if (auto path = locator.Path()) {
      const std::string where = JoinField(field, *path);
      return Error::InvalidArgument(where + " must not contain surrogates (an unpaired \\u escape)", where);
    }
    return Error::InvalidArgument(std::string(field) + " is not valid JSON", std::string(field));
  }
  return value;
}

nlohmann::json ParseJsonOrDiscarded(std::string_view text) {
  if (FindJsonDepthExcess(text, MaxJsonDepth())) return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

std::optional<std::string> FindTopLevelString(std::string_view text, std::string_view name) {
  if (FindJsonDepthExcess(text, MaxJsonDepth())) return std::nullopt;
  TopLevelStringFinder finder(name);
  nlohmann::json::sax_parse(text, &finder, nlohmann::json::input_format_t::json, /*strict=*/false);
  return std::move(finder.found);
}

}  // namespace ccm::cloudevents
