#include "clients/oidc_token_provider.h"

#include <nlohmann/json.hpp>

#include "cloudevents/json_parse.h"

namespace ccm::clients {

int OidcTokenProvider::fetches() const {
  std::lock_guard lock(mu_);
  return fetches_;
}

Result<std::pair<std::string, Timestamp>> OidcTokenProvider::Fetch() {
  const std::string where = "token endpoint " + options_.token_url;
  const std::string body = "grant_type=client_credentials&client_id=" + UrlEscape(options_.client_id) +
                           "&client_secret=" + UrlEscape(options_.client_secret);
  const Timestamp asked = clock_.Now();
  const HttpAnswer a = poster_.Post(options_.token_url, {{"content-type", "application/x-www-form-urlencoded"}}, body,
                                    options_.connect_timeout, options_.total_timeout);
  if (!a.transport_error.empty()) return Error::Unavailable(where + ": " + a.transport_error);
  if (a.status != 200) return Error::Unavailable(where + ": HTTP " + std::to_string(a.status));
  const auto j = cloudevents::ParseJsonOrDiscarded(a.body);
  if (!j.is_object() || !j.contains("access_token") || !j["access_token"].is_string())
    return Error::Unavailable(where + ": the answer has no access_token");
  const auto lifetime = std::chrono::seconds(j.value("expires_in", 60));
  const auto early = std::min<std::chrono::milliseconds>(options_.refresh_before, lifetime / 10);
  return std::make_pair(j["access_token"].get<std::string>(),
                        asked + std::chrono::duration_cast<std::chrono::milliseconds>(lifetime) - early);
}

Result<std::string> OidcTokenProvider::Token() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (!token_.empty() && clock_.Now() < refresh_at_) return token_;
    if (!fetching_) break;
    cv_.wait(lock);  // another caller is fetching: use what it gets
  }
  fetching_ = true;
  lock.unlock();
  auto fetched = Fetch();
  lock.lock();
  fetching_ = false;
  ++fetches_;
  if (fetched) {
    token_ = fetched->first;
    refresh_at_ = fetched->second;
  }
  cv_.notify_all();
  if (!fetched) return fetched.error();
  return token_;
}

void OidcTokenProvider::Invalidate(const std::string& token) {
  std::lock_guard lock(mu_);
  if (token_ == token) token_.clear();
}

}  // namespace ccm::clients
