#pragma once

#include <string>

#include "domain/time.h"

namespace ccm::ports {

// The current time. Production reads the system clock; tests advance a fake one.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp Now() = 0;
};

// New ids for aggregates and events. Thread-safe.
class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  virtual std::string NewId() = 0;
};

}  // namespace ccm::ports
