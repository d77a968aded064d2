#include "clients/jwks_key_set.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "cloudevents/json_parse.h"

namespace ccm::clients {

namespace {

// What a client is told; where the keys live is for the log only.
constexpr const char* kCannotFetch = "the issuer's keys cannot be fetched";

template <typename Map>
bool SameIds(const Map& a, const Map& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](const auto& x, const auto& y) { return x.first == y.first; });
}

}  // namespace

JwksKeySet::JwksKeySet(std::string url, ports::Clock& clock, Options options)
    : url_(std::move(url)), clock_(clock), options_(options) {
  http_.SetTag(options_.tag);
}

JwksKeySet::~JwksKeySet() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

void JwksKeySet::Start() {
  std::lock_guard lock(mu_);
  if (refresher_.joinable() || stop_) return;
  refresher_ = std::thread([this] { RefreshLoop(); });
}

Result<JwksKeySet::Keys> JwksKeySet::Fetch() {
  const HttpAnswer a =
      http_.Send("GET", url_, {{"accept", "application/json"}}, "", options_.connect_timeout, options_.fetch_timeout);
  std::string why;
  if (!a.transport_error.empty()) why = a.transport_error;
  else if (a.status != 200) why = "HTTP " + std::to_string(a.status);
  nlohmann::json jwks;
  if (why.empty()) {
    jwks = cloudevents::ParseJsonOrDiscarded(a.body);
    if (!jwks.is_object() || !jwks.contains("keys") || !jwks["keys"].is_array()) why = "not a key set";
  }
  if (!why.empty()) {
    spdlog::warn("JWKS {} cannot be fetched: {}", url_, why);
    return Error::Unavailable(kCannotFetch);
  }
  Keys keys;
  for (const auto& jwk : jwks["keys"]) {
    if (!jwk.is_object() || jwk.value("use", "sig") != "sig") continue;
    auto key = auth::KeyFromJwk(jwk);
    if (key) keys[jwk.contains("kid") && jwk["kid"].is_string() ? jwk["kid"].get<std::string>() : ""] = *key;
  }
  return keys;
}

Status JwksKeySet::FetchLocked(std::unique_lock<std::mutex>& lock) {
  fetching_ = true;
  lock.unlock();
  auto keys = Fetch();
  const Timestamp now = clock_.Now();
  lock.lock();
  fetching_ = false;
  if (!keys) return keys.error();
  if (!keys_ || !SameIds(*keys_, *keys)) spdlog::info("JWKS {}: {} signing keys", url_, keys->size());
  keys_ = std::make_shared<const Keys>(std::move(keys.value()));
  fetched_at_ = now;
  return {};
}

bool JwksKeySet::UsableLocked(Timestamp now) const {
  return keys_ && fetched_at_ && now - *fetched_at_ <= options_.max_stale;
}

Status JwksKeySet::Refresh() {
  std::unique_lock lock(mu_);
  if (fetching_) return {};
  return FetchLocked(lock);
}

Result<std::shared_ptr<const auth::PublicKey>> JwksKeySet::Find(const std::string& kid) {
  std::unique_lock lock(mu_);
  const Timestamp now = clock_.Now();
  if (UsableLocked(now))
    if (auto it = keys_->find(kid); it != keys_->end()) return it->second;
  // Not in a usable set. Fetch on this thread when nobody is fetching and the budget of
  // on-demand fetches allows; otherwise answer now.
  const bool may_fetch = !fetching_ && (!on_demand_at_ || now - *on_demand_at_ >= options_.min_refresh);
  if (may_fetch) {
    on_demand_at_ = now;
    (void)FetchLocked(lock);  // a failure was logged; what it means for this token follows
  }
  if (!UsableLocked(clock_.Now())) return Error::Unavailable(kCannotFetch);
  if (auto it = keys_->find(kid); it != keys_->end()) return it->second;
  return Error::Unauthenticated("the token's key '" + kid + "' is not one of the issuer's keys");
}

void JwksKeySet::RefreshLoop() {
  std::mt19937_64 random{std::random_device{}()};
  std::unique_lock lock(mu_);
  bool good = keys_ != nullptr;  // a set fetched before Start waits out a period
  if (!good && !fetching_) good = static_cast<bool>(FetchLocked(lock));
  while (!stop_) {
    std::chrono::milliseconds wait = std::min(options_.retry_after_failure, options_.refresh_period);
    if (good) {
      // Up to a fifth earlier than the period, never later: a removed key is dropped within it.
      std::uniform_int_distribution<std::int64_t> jitter(0, options_.refresh_period.count() / 5);
      wait = options_.refresh_period - std::chrono::milliseconds(jitter(random));
    }
    if (cv_.wait_for(lock, wait, [&] { return stop_; })) break;
    // When a caller is fetching now, look again after the shorter wait rather than a period.
    good = !fetching_ && static_cast<bool>(FetchLocked(lock));
  }
}

}  // namespace ccm::clients
