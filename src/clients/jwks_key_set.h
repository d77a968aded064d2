#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "auth/jwt.h"
#include "clients/http_post.h"
#include "ports/clock.h"
#include "ports/observers.h"

namespace ccm::clients {

// The issuer's signing keys, fetched from its JWKS URL (Keycloak:
// {issuer}/protocol/openid-connect/certs). A fetch that succeeds replaces the whole set, so a
// key the issuer removed stops verifying once the set is fetched again; entries it cannot use
// (symmetric keys, other curves, `use` other than sig) are skipped. A fetch that fails keeps
// the last good set.
//
// When keys are fetched:
//  - by Start's thread, every `refresh_period` less a random part of up to a fifth of it (so
//    that replicas spread out) after a good fetch, `retry_after_failure` (at most the period)
//    after a failed one; at once when Start finds no set;
//  - by a Find whose key id is not in a usable set (keys rotate; or there is no set), on that
//    caller's thread, at most once per `min_refresh` over all callers (the first such Find may
//    always fetch): tokens with made-up key ids cost the issuer at most one fetch per
//    `min_refresh`, and tie up at most one request at a time.
// No caller ever waits for a fetch another started, and no lock is held across a fetch: while
// one runs, Find answers from the last good set (or refuses at once).
//
// Staleness: the last good set is used while it is at most `max_stale` old (by the Clock); past
// that (the issuer unreachable for that long) every Find is unavailable until a fetch succeeds.
//
// Thread-safe. The URL is never in an error message (callers show them to clients); fetch
// failures are logged with it.
class JwksKeySet final : public auth::KeySet {
 public:
  struct Options {
    std::chrono::milliseconds refresh_period = std::chrono::minutes(5);       // periodic fetches
    std::chrono::milliseconds min_refresh = std::chrono::seconds(10);         // between on-demand fetches
    std::chrono::milliseconds retry_after_failure = std::chrono::seconds(10); // periodic, after a failure
    std::chrono::milliseconds max_stale = std::chrono::hours(1);              // the last good set serves this long
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(2);      // of one fetch
    std::chrono::milliseconds fetch_timeout = std::chrono::seconds(5);        // of one fetch, in all
    ports::RemoteTag tag = {};  // who counts each fetch, under the remote's metric name ("jwks")
  };

  JwksKeySet(std::string url, ports::Clock& clock, Options options);
  // Defaults, with on-demand fetches at most once per `min_refresh`.
  JwksKeySet(std::string url, ports::Clock& clock, std::chrono::milliseconds min_refresh = std::chrono::seconds(10))
      : JwksKeySet(std::move(url), clock, WithMinRefresh(min_refresh)) {}
  ~JwksKeySet() override;  // stops the refresher thread, waiting for a fetch it runs
  JwksKeySet(const JwksKeySet&) = delete;
  JwksKeySet& operator=(const JwksKeySet&) = delete;

  // Starts the periodic refresher thread. Idempotent.
  void Start();

  // The key with this id from the last good set. Errors: unauthenticated when the set (after
  // the one fetch this call may make) has no such key; unavailable ("the issuer's keys cannot
  // be fetched") when there is no set fresh enough to check against.
  Result<std::shared_ptr<const auth::PublicKey>> Find(const std::string& kid) override;

  // Fetches the set now on the caller's thread, unless a fetch is running (then it returns at
  // once, ok). Errors: unavailable when the fetch fails (the last good set is kept).
  Status Refresh();

 private:
  using Keys = std::map<std::string, std::shared_ptr<const auth::PublicKey>>;
  static Options WithMinRefresh(std::chrono::milliseconds min_refresh) {
    Options o;
    o.min_refresh = min_refresh;
    return o;
  }
  // One GET of the JWKS and its parse; no lock held.
  Result<Keys> Fetch();
  // Runs one fetch and records its outcome. Called with `lock` held and fetching_ false; the
  // lock is released during the fetch.
  Status FetchLocked(std::unique_lock<std::mutex>& lock);
  // Whether the last good set may still be used at `now`. mu_ held.
  bool UsableLocked(Timestamp now) const;
  void RefreshLoop();

  const std::string url_;
  ports::Clock& clock_;
  const Options options_;
  HttpPoster http_;  // used by the one fetch running (fetching_)

  std::mutex mu_;
  std::condition_variable cv_;  // stop_
  std::shared_ptr<const Keys> keys_;        // the last good set; null before the first good fetch
  std::optional<Timestamp> fetched_at_;     // when keys_ was fetched
  std::optional<Timestamp> on_demand_at_;   // the last fetch made for an unknown key id
  bool fetching_ = false;
  bool stop_ = false;
  std::thread refresher_;
};

}  // namespace ccm::clients
