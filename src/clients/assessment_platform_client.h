#pragma once

#include <chrono>
#include <mutex>
#include <string>

#include "app/dispatcher.h"
#include "app/ports.h"
#include "clients/http_post.h"
#include "clients/oidc_token_provider.h"

namespace ccm::clients {

struct AssessmentPlatformOptions {
  std::string base_url;  // ASSESSMENT_PLATFORM_URL
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds total_timeout{5000};
  int attempts = 3;                               // per call, on connection errors, 408, 429, 5xx
  std::chrono::milliseconds retry_backoff{200};  // doubled after each failed attempt
  int breaker_threshold = 5;
  std::chrono::milliseconds breaker_cooldown{10'000};
};

// The Assessment Platform over HTTP (libcurl). Retries a call a few times on connection
// errors, 408, 429 and 5xx; behind a circuit breaker, so a platform that keeps failing is
// not hammered (calls fail at once while it is open). Errors name the remote, the call and
// the status. With a token provider, each call carries a bearer token; a 401 forces one
// refresh and one retry. Thread-safe (one request at a time).
class AssessmentPlatformClient final : public app::AssessmentPlatform {
 public:
  // `tokens` may be null (no outbound authentication); not owned.
  AssessmentPlatformClient(AssessmentPlatformOptions options, app::Clock& clock, OidcTokenProvider* tokens = nullptr);
  Status TriggerCollection(const app::CollectionRequest& request) override;

 private:
  AssessmentPlatformOptions options_;
  app::Clock& clock_;
  OidcTokenProvider* tokens_;
  std::mutex mu_;
  HttpPoster poster_;
  app::CircuitBreaker breaker_;
};

}  // namespace ccm::clients
