#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "clients/http_post.h"
#include "clients/oidc_token_provider.h"
#include "domain/result.h"
#include "ports/clock.h"
#include "ports/observers.h"
#include "runtime/circuit_breaker.h"

namespace ccm::clients {

struct RemoteOptions {
  std::string base_url;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds total_timeout{5000};
  int attempts = 3;                               // per call, on connection errors, 408, 429, 5xx
  std::chrono::milliseconds retry_backoff{200};  // doubled after each failed attempt
  int breaker_threshold = 5;
  std::chrono::milliseconds breaker_cooldown{10'000};
  // Who counts each attempt (an open breaker's refusals too), under the remote's metric name.
  ports::RemoteTag tag = {};
};

// JSON POSTs to one remote: a few retries on connection errors, 408, 429 and 5xx, a circuit
// breaker (calls fail at once while it is open), a bearer token when a provider is given (a
// 401 forces one refresh and one retry). Errors name the remote, the call and the status.
// Thread-safe: calls run concurrently, each on a keep-alive connection of its own (kept for
// the next call), so that a slow remote does not hold every other call behind one lock.
class AuthorizedCaller {
 public:
  // `tokens` may be null; not owned.
  AuthorizedCaller(std::string remote, RemoteOptions options, ports::Clock& clock, OidcTokenProvider* tokens);
  // POSTs `body` to base_url + `path`. Errors: unavailable (not set, unreachable, failing,
  // circuit open, no token); invalid_argument when the remote refuses the request for good.
  Status Post(const std::string& path, const std::string& body);

 private:
  std::string remote_;
  RemoteOptions options_;
  ports::Clock& clock_;
  OidcTokenProvider* tokens_;
  // A connection for one call: an idle one, or a new one.
  std::unique_ptr<HttpPoster> TakePoster();
  void ReturnPoster(std::unique_ptr<HttpPoster> poster);

  std::mutex mu_;  // guards idle_ and breaker_, never held across a call
  std::vector<std::unique_ptr<HttpPoster>> idle_;
  runtime::CircuitBreaker breaker_;
};

}  // namespace ccm::clients
