#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>

#include "ports/outbox.h"

namespace ccm::ports {

// What one delivery attempt to the sink came to.
struct DeliveryOutcome {
  enum Kind {
    kDelivered,  // 2xx
    kRetry,      // connection error, timeout, 408, 429, 5xx: try again later
    kFinal,      // any other 4xx: the sink will never take it
  };
  Kind kind = kRetry;
  int status = 0;  // HTTP status, 0 when none came back
  std::string error;
  std::optional<std::chrono::milliseconds> retry_after;  // from Retry-After
};

// Where events go (CLOUDEVENTS_SINK_URL). Implementations encode in their mode: structured
// and binary send one event per request, batch all of `events` in one.
class EventSink {
 public:
  virtual ~EventSink() = default;
  // How many events one Send may carry (1 unless the mode is batch).
  virtual int MaxBatch() const = 0;
  virtual DeliveryOutcome Send(std::span<const OutboxEvent> events) = 0;
};

}  // namespace ccm::ports
