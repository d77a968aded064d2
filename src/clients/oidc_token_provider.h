#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

#include "clients/http_post.h"
#include "domain/result.h"
#include "ports/clock.h"
#include "ports/observers.h"

namespace ccm::clients {

struct OidcOptions {
  std::string token_url;      // OIDC_TOKEN_URL (Keycloak: .../protocol/openid-connect/token)
  std::string client_id;      // OIDC_CLIENT_ID
  std::string client_secret;  // OIDC_CLIENT_SECRET
  std::chrono::milliseconds refresh_before{30'000};  // refresh this long before expiry
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds total_timeout{5000};
  ports::RemoteTag tag = {};  // who counts each token request, under the remote's metric name ("oidc")
};

// Bearer tokens by the OAuth 2.0 client-credentials grant. The token is cached and
// refreshed before it expires (refresh_before, or a tenth of its lifetime if that is
// shorter); however many callers need one at once, one request is in flight and the others
// wait for it. Thread-safe.
class OidcTokenProvider {
 public:
  OidcTokenProvider(OidcOptions options, ports::Clock& clock) : options_(std::move(options)), clock_(clock) {
    poster_.SetTag(options_.tag);
  }

  // A valid access token. Errors: unavailable when the token endpoint cannot be reached or
  // refuses (the message never contains the secret).
  Result<std::string> Token();
  // Forgets `token` (after a 401), so that the next Token() fetches a new one; a newer token
  // fetched meanwhile by another caller is kept.
  void Invalidate(const std::string& token);
  // How many tokens were fetched (for tests and metrics).
  int fetches() const;

 private:
  Result<std::pair<std::string, Timestamp>> Fetch();

  OidcOptions options_;
  ports::Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool fetching_ = false;
  std::string token_;
  Timestamp refresh_at_;
  int fetches_ = 0;
  HttpPoster poster_;  // used by the one fetching caller only
};

}  // namespace ccm::clients
