#pragma once

#include <atomic>

#include "app/ports.h"

namespace ccm::app {

// The system clock.
class SystemClock final : public Clock {
 public:
  Timestamp Now() override;
};

// UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids sort by creation
// time and keep B-tree inserts at the right edge. Thread-safe: each thread has its own
// generator seeded from the OS.
class UuidV7Generator final : public IdGenerator {
 public:
  std::string NewId() override;
};

// A clock that moves only when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(Timestamp start) : now_ms_(ToUnixMillis(start)) {}
  Timestamp Now() override { return FromUnixMillis(now_ms_.load()); }
  void Advance(std::chrono::milliseconds d) { now_ms_ += d.count(); }

 private:
  std::atomic<std::int64_t> now_ms_;
};

}  // namespace ccm::app
