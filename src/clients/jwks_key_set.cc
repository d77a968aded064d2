#include "clients/jwks_key_set.h"

#include <nlohmann/json.hpp>

#include "cloudevents/json_parse.h"

namespace ccm::clients {

Status JwksKeySet::Refresh() {
  fetched_at_ = clock_.Now();
  const HttpAnswer a = http_.Send("GET", url_, {{"accept", "application/json"}}, "", std::chrono::seconds(2),
                                  std::chrono::seconds(5));
  if (!a.transport_error.empty() || a.status != 200)
    return Error::Unavailable("JWKS " + url_ + ": " +
                              (a.transport_error.empty() ? "HTTP " + std::to_string(a.status) : a.transport_error));
  const auto jwks = cloudevents::ParseJsonOrDiscarded(a.body);
  if (!jwks.is_object() || !jwks.contains("keys") || !jwks["keys"].is_array())
    return Error::Unavailable("JWKS " + url_ + ": not a key set");
  std::map<std::string, std::shared_ptr<const auth::PublicKey>> keys;
  for (const auto& jwk : jwks["keys"]) {
    if (jwk.value("use", "sig") != "sig") continue;
    auto key = auth::KeyFromJwk(jwk);
    if (key) keys[jwk.value("kid", "")] = std::move(key.value());
  }
  keys_ = std::move(keys);
  return {};
}

Result<std::shared_ptr<const auth::PublicKey>> JwksKeySet::Find(const std::string& kid) {
  std::lock_guard lock(mu_);
  if (auto it = keys_.find(kid); it != keys_.end()) return it->second;
  if (!fetched_at_ || clock_.Now() - *fetched_at_ >= min_refresh_) {
    if (auto s = Refresh(); !s && keys_.empty()) return s.error();
    if (auto it = keys_.find(kid); it != keys_.end()) return it->second;
  }
  return Error::Unauthenticated("the token's key '" + kid + "' is not one of the issuer's keys");
}

}  // namespace ccm::clients
