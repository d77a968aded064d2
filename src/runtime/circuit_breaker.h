#pragma once

#include <chrono>
#include <string_view>

#include "domain/time.h"

namespace ccm::runtime {

// Stops hammering a sink that keeps failing: after `threshold` failures in a row it opens
// and refuses attempts for `cooldown`; then it lets one probe through (half-open), which
// closes it on success or opens it again on failure. Not thread-safe.
class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };
  CircuitBreaker(int threshold, std::chrono::milliseconds cooldown) : threshold_(threshold), cooldown_(cooldown) {}
  // Whether an attempt may go out now; in half-open, only the first caller gets true.
  bool Allow(Timestamp now);
  void OnSuccess();
  void OnFailure(Timestamp now);
  State state() const { return state_; }

 private:
  int threshold_;
  std::chrono::milliseconds cooldown_;
  State state_ = State::kClosed;
  int failures_ = 0;
  Timestamp open_until_;
  bool probe_out_ = false;
};
std::string_view ToString(CircuitBreaker::State s);

}  // namespace ccm::runtime
