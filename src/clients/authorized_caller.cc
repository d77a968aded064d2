#include "clients/authorized_caller.h"

#include <thread>

#include "ports/clock.h"
#include "ports/observers.h"
#include "runtime/jitter.h"
#include "transport/retry.h"

namespace ccm::clients {

AuthorizedCaller::AuthorizedCaller(std::string remote, RemoteOptions options, ports::Clock& clock,
                                   OidcTokenProvider* tokens)
    : remote_(std::move(remote)),
      options_(std::move(options)),
      clock_(clock),
      tokens_(tokens),
      breaker_(options_.breaker_threshold, options_.breaker_cooldown) {}

std::unique_ptr<HttpPoster> AuthorizedCaller::TakePoster() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto poster = std::move(idle_.back());
      idle_.pop_back();
      return poster;
    }
  }
  auto poster = std::make_unique<HttpPoster>();
  poster->SetTag(options_.tag);
  return poster;
}

void AuthorizedCaller::ReturnPoster(std::unique_ptr<HttpPoster> poster) {
  constexpr size_t kMaxIdle = 32;
  std::lock_guard lock(mu_);
  if (idle_.size() < kMaxIdle) idle_.push_back(std::move(poster));
}

Status AuthorizedCaller::Post(const std::string& path, const std::string& body) {
  const std::string call = remote_ + " POST " + path;
  if (options_.base_url.empty()) return Error::Unavailable(call + ": no URL is set for the " + remote_);
  auto poster = TakePoster();
  struct Giveback {
    AuthorizedCaller& self;
    std::unique_ptr<HttpPoster>& poster;
    ~Giveback() { self.ReturnPoster(std::move(poster)); }
  } giveback{*this, poster};
  // The breaker is shared by every call; the lock guards it only, never a request.
  auto breaker = [this](auto&& use) {
    std::lock_guard lock(mu_);
    use(breaker_);
  };
  std::string last;
  auto wait = options_.retry_backoff;
  bool refreshed = false;
  bool admitted = false;  // the breaker let this attempt through (a 401's retry needs no second pass)
  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    if (!admitted) {
      bool allowed = false;
      breaker([&](runtime::CircuitBreaker& b) { allowed = b.Allow(clock_.Now()); });
      if (!allowed) {
        options_.tag.Observe(ports::RemoteOutcome::kCircuitOpen, {});
        return Error::Unavailable(call + ": circuit open after repeated failures");
      }
    }
    admitted = false;
    std::map<std::string, std::string> headers = {{"content-type", "application/json"}, {"accept", "application/json"}};
    std::string token;
    if (tokens_) {
      auto t = tokens_->Token();
      if (!t) {
        // The attempt was let through: its outcome must reach the breaker, or a half-open
        // breaker would wait for ever for the probe it handed out.
        breaker([&](runtime::CircuitBreaker& b) { b.OnFailure(clock_.Now()); });
        return Error::Unavailable(call + ": no token: " + t.error().message);
      }
      token = *t;
      headers["authorization"] = "Bearer " + token;
    }
    const HttpAnswer a =
        poster->Post(options_.base_url + path, headers, body, options_.connect_timeout, options_.total_timeout);
    if (tokens_ && a.transport_error.empty() && a.status == 401 && !refreshed) {
      // The token was refused (revoked, or expired early): one refresh, one retry.
      tokens_->Invalidate(token);
      refreshed = true;
      admitted = true;  // the same attempt again, with a fresh token
      --attempt;
      continue;
    }
    if (a.transport_error.empty() && a.status >= 200 && a.status < 300) {
      breaker([](runtime::CircuitBreaker& b) { b.OnSuccess(); });
      return {};
    }
    const bool retryable = !a.transport_error.empty() || transport::IsRetryableStatus(a.status);
    last = a.transport_error.empty() ? "HTTP " + std::to_string(a.status) : a.transport_error;
    if (!retryable) {
      breaker([](runtime::CircuitBreaker& b) { b.OnSuccess(); });  // the remote answered: it is up
      return Error::InvalidArgument(
          call + ": " + last + (a.body.empty() ? "" : ": " + Redact(a.body.substr(0, 200), {token})));
    }
    breaker([&](runtime::CircuitBreaker& b) { b.OnFailure(clock_.Now()); });
    if (attempt < options_.attempts) {
      std::this_thread::sleep_for(runtime::Jittered(wait));  // callers that failed together retry apart
      wait *= 2;
    }
  }
  return Error::Unavailable(call + ": " + last + " after " + std::to_string(options_.attempts) + " attempts");
}

}  // namespace ccm::clients
