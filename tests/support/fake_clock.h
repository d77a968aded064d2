#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "ports/clock.h"

namespace ccm::testing {

// A clock that moves only when told to. Thread-safe.
class FakeClock final : public ports::Clock {
 public:
  explicit FakeClock(Timestamp start) : now_ms_(ToUnixMillis(start)) {}
  Timestamp Now() override { return FromUnixMillis(now_ms_.load()); }
  void Advance(std::chrono::milliseconds d) { now_ms_ += d.count(); }

 private:
  std::atomic<std::int64_t> now_ms_;
};

}  // namespace ccm::testing
