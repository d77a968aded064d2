#include "runtime/circuit_breaker.h"

namespace ccm::runtime {

std::string_view ToString(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::kClosed: return "closed";
    case CircuitBreaker::State::kOpen: return "open";
    case CircuitBreaker::State::kHalfOpen: return "half_open";
  }
  return "closed";
}

bool CircuitBreaker::Allow(Timestamp now) {
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      if (now < open_until_) return false;
      state_ = State::kHalfOpen;
      probe_out_ = false;
      [[fallthrough]];
    case State::kHalfOpen:
      if (probe_out_) return false;
      probe_out_ = true;
      return true;
  }
  return true;
}

void CircuitBreaker::OnSuccess() {
  state_ = State::kClosed;
  failures_ = 0;
  probe_out_ = false;
}

void CircuitBreaker::OnFailure(Timestamp now) {
  ++failures_;
  if (state_ == State::kHalfOpen || failures_ >= threshold_) {
    state_ = State::kOpen;
    open_until_ = now + cooldown_;
    probe_out_ = false;
  }
}

}  // namespace ccm::runtime
