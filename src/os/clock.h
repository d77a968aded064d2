#pragma once

#include "ports/clock.h"

namespace ccm::os {

// The system clock.
class SystemClock final : public ports::Clock {
 public:
  Timestamp Now() override;
};

// UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids sort by creation
// time and keep B-tree inserts at the right edge. Thread-safe: each thread has its own
// generator seeded from the OS.
class UuidV7Generator final : public ports::IdGenerator {
 public:
  std::string NewId() override;
};

}  // namespace ccm::os
