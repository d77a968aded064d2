#pragma once

// What metrics observe in the clients and the loops, as interfaces: the clients, the store and
// the reconcilers call them; the metrics registry (src/metrics/) implements them.

#include <chrono>
#include <string>
#include <string_view>

namespace ccm::ports {

// How one call to a remote ended, for metrics.
enum class RemoteOutcome {
  kOk,           // an answer with a 1xx, 2xx or 3xx status
  kHttp4xx,      // an answer with a 4xx status
  kHttp5xx,      // an answer with a 5xx status
  kTransport,    // no HTTP answer: unreachable, refused, TLS, time-out
  kCircuitOpen,  // not attempted: the remote's circuit breaker was open
};

// The outcome of an answer with `status`; transport when `transport_failed`.
inline RemoteOutcome RemoteOutcomeOf(long status, bool transport_failed) {
  if (transport_failed) return RemoteOutcome::kTransport;
  if (status >= 500) return RemoteOutcome::kHttp5xx;
  if (status >= 400) return RemoteOutcome::kHttp4xx;
  return RemoteOutcome::kOk;
}

// Sees each call made to a remote (CML, the Assessment Platform, ...): its name, how it
// ended, how long it took. Must be thread-safe: clients call it from their own threads.
class RemoteCallObserver {
 public:
  virtual ~RemoteCallObserver() = default;
  virtual void Observe(std::string_view remote, RemoteOutcome outcome, std::chrono::nanoseconds took) = 0;
};

// What a client says about its calls: the observer (none: nothing is counted; not owned) and
// the remote's name as metrics label it ("cml", "platform", ...), given by whoever builds the client.
struct RemoteTag {
  RemoteCallObserver* observer = nullptr;
  std::string name = {};

  void Observe(RemoteOutcome outcome, std::chrono::nanoseconds took) const {
    if (observer) observer->Observe(name, outcome, took);
  }
};

// Sees each run of a background loop (a reconciler sweep): the loop's name, the steps it
// took, the errors it met, how long it ran. Must be thread-safe.
class LoopObserver {
 public:
  virtual ~LoopObserver() = default;
  virtual void Ran(std::string_view loop, int steps, int errors, std::chrono::nanoseconds took) = 0;
};

}  // namespace ccm::ports
