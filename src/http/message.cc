#include "http/message.h"

#include "http/problem.h"

namespace ccm::http {

std::string_view Request::Header(std::string_view name) const {
  const auto it = headers.find(std::string(name));
  return it == headers.end() ? std::string_view{} : std::string_view(it->second);
}

Deferred::~Deferred() {
  if (!settled_ && then_)
    then_(ProblemResponse(500, "the request's answer was lost before it was ready", "", ""));
}

void Deferred::Then(std::function<void(Outcome)> then) {
  std::unique_lock lock(mu_);
  if (!outcome_) {
    then_ = std::move(then);
    return;
  }
  Outcome outcome = std::move(*outcome_);
  outcome_.reset();
  lock.unlock();
  then(std::move(outcome));
}

void Deferred::Settle(Outcome outcome) {
  std::unique_lock lock(mu_);
  if (settled_) return;
  settled_ = true;
  if (!then_) {
    outcome_ = std::move(outcome);
    return;
  }
  auto then = std::move(then_);
  then_ = nullptr;
  lock.unlock();
  then(std::move(outcome));
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string PercentDecode(std::string_view in, bool plus_as_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plus_as_space && c == '+') ? ' ' : c;
  }
  return out;
}

std::map<std::string, std::string> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (!pair.empty()) {
      const size_t eq = pair.find('=');
      const std::string key = PercentDecode(pair.substr(0, eq), true);
      out[key] = eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace ccm::http
