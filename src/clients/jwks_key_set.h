#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "app/ports.h"
#include "auth/jwt.h"
#include "clients/http_post.h"

namespace ccm::clients {

// The issuer's signing keys, fetched from its JWKS URL (Keycloak:
// {issuer}/protocol/openid-connect/certs) on first use and again when a token names a key id
// not seen yet (keys rotate), at most once per `min_refresh`, so that tokens with made-up key
// ids cannot make ccm hammer the issuer. Entries it cannot use (symmetric keys, other curves)
// are skipped. Thread-safe.
class JwksKeySet final : public auth::KeySet {
 public:
  JwksKeySet(std::string url, app::Clock& clock, std::chrono::milliseconds min_refresh = std::chrono::seconds(10))
      : url_(std::move(url)), clock_(clock), min_refresh_(min_refresh) {}
  Result<std::shared_ptr<const auth::PublicKey>> Find(const std::string& kid) override;

 private:
  // Fetches the keys; called with mu_ held.
  Status Refresh();

  std::string url_;
  app::Clock& clock_;
  std::chrono::milliseconds min_refresh_;
  std::mutex mu_;
  HttpPoster http_;
  std::map<std::string, std::shared_ptr<const auth::PublicKey>> keys_;
  std::optional<Timestamp> fetched_at_;
};

}  // namespace ccm::clients
