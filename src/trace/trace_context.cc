#include "trace/trace_context.h"

#include <random>
#include <vector>

namespace ccm::trace {

namespace {

thread_local const TraceContext* current = nullptr;

bool IsLowerHex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool AllZero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// Lower-case hex of `bytes` random bytes, never all zero.
std::string RandomHex(size_t bytes) {
  thread_local std::mt19937_64 engine{[] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }()};
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes * 2, '0');
  do {
    for (size_t i = 0; i < out.size(); i += 16) {
      std::uint64_t v = engine();
      for (size_t j = i; j < out.size() && j < i + 16; ++j, v >>= 4) out[j] = kDigits[v & 0xf];
    }
  } while (AllZero(out));
  return out;
}

// key = simple-key / multi-tenant-key (tenant-id@system-id), by the spec's ABNF.
bool ValidKey(std::string_view key) {
  auto lcalpha = [](char c) { return c >= 'a' && c <= 'z'; };
  auto allowed = [&](char c) {
    return lcalpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/';
  };
  const auto at = key.find('@');
  if (at == std::string_view::npos) {
    if (key.empty() || key.size() > 256 || !lcalpha(key[0])) return false;
    for (char c : key)
      if (!allowed(c)) return false;
    return true;
  }
  const std::string_view tenant = key.substr(0, at), system = key.substr(at + 1);
  if (tenant.empty() || tenant.size() > 241 || system.empty() || system.size() > 14) return false;
  if (!(lcalpha(tenant[0]) || (tenant[0] >= '0' && tenant[0] <= '9')) || !lcalpha(system[0])) return false;
  for (char c : tenant)
    if (!allowed(c)) return false;
  for (char c : system)
    if (!allowed(c)) return false;
  return true;
}

// value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E.
bool ValidValue(std::string_view value) {
  if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e || c == ',' || c == '=') return false;
  }
  return true;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string TraceContext::Format() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "00-";
  out.append(trace_id).append("-").append(span_id).append("-");
  out.push_back(kDigits[flags >> 4]);
  out.push_back(kDigits[flags & 0xf]);
  return out;
}

TraceContext TraceContext::Child() const {
  return {trace_id, RandomHex(8), static_cast<std::uint8_t>(flags & 0x01), state};
}

TraceContext NewRoot() { return {RandomHex(16), RandomHex(8), 0x01, ""}; }

std::optional<TraceContext> Parse(std::string_view tp, std::string_view tracestate) {
  // version "-" trace-id "-" parent-id "-" trace-flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55.
  constexpr size_t kLength = 55;
  if (tp.size() < kLength) return std::nullopt;
  const std::string_view version = tp.substr(0, 2), trace_id = tp.substr(3, 32), span_id = tp.substr(36, 16),
                         flags = tp.substr(53, 2);
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return std::nullopt;
  if (!IsLowerHex(version) || !IsLowerHex(trace_id) || !IsLowerHex(span_id) || !IsLowerHex(flags)) return std::nullopt;
  if (version == "ff") return std::nullopt;
  if (version == "00" ? tp.size() != kLength : tp.size() > kLength && tp[kLength] != '-') return std::nullopt;
  if (AllZero(trace_id) || AllZero(span_id)) return std::nullopt;
  return TraceContext{std::string(trace_id), std::string(span_id),
                      static_cast<std::uint8_t>(HexValue(flags[0]) * 16 + HexValue(flags[1])), ParseState(tracestate)};
}

std::string ParseState(std::string_view tracestate) {
  constexpr size_t kMaxMembers = 32, kMaxLength = 512, kLongMember = 128;
  std::vector<std::string_view> members;
  std::vector<std::string_view> keys;
  size_t start = 0;
  while (start <= tracestate.size()) {
    size_t end = tracestate.find(',', start);
    if (end == std::string_view::npos) end = tracestate.size();
    const std::string_view member = TrimOws(tracestate.substr(start, end - start));
    start = end + 1;
    if (member.empty()) continue;
    const auto eq = member.find('=');
    if (eq == std::string_view::npos) return "";
    const std::string_view key = member.substr(0, eq);
    if (!ValidKey(key) || !ValidValue(member.substr(eq + 1))) return "";
    for (auto k : keys)
      if (k == key) return "";
    keys.push_back(key);
    members.push_back(member);
    if (members.size() > kMaxMembers) return "";
  }
  auto joined_size = [&] {
    size_t n = members.empty() ? 0 : members.size() - 1;
    for (auto m : members) n += m.size();
    return n;
  };
  for (auto it = members.begin(); joined_size() > kMaxLength && it != members.end();)
    it = it->size() > kLongMember ? members.erase(it) : it + 1;
  while (joined_size() > kMaxLength) members.pop_back();
  std::string out;
  for (auto m : members) {
    if (!out.empty()) out.push_back(',');
    out.append(m);
  }
  return out;
}

const TraceContext* Current() { return current; }

Scope::Scope(TraceContext context) : context_(std::move(context)), previous_(current), active_(true) {
  current = &*context_;
}

Scope::Scope(std::optional<TraceContext> context) : context_(std::move(context)), previous_(current) {
  if (context_) {
    active_ = true;
    current = &*context_;
  }
}

Scope::~Scope() {
  if (active_) current = previous_;
}

}  // namespace ccm::trace
