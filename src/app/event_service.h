#pragma once

#include <functional>
#include <optional>
#include <string>

#include "app/dispatcher.h"
#include "app/ports.h"
#include "app/receiver.h"

namespace ccm::app {

// What operators do with the outbox: read the audit log, list dead letters, replay them,
// and read the delivery metrics. Thread-safe.
class EventService {
 public:
  // `metrics` may be null when no dispatcher runs (no sink set); `received` when nothing
  // consumes events.
  EventService(Store& store, Clock& clock, const DispatchMetrics* metrics, std::function<void()> wake_dispatcher,
               const ReceiveMetrics* received = nullptr)
      : store_(store), clock_(clock), metrics_(metrics), received_(received), wake_(std::move(wake_dispatcher)) {}

  Result<PageOf<OutboxRecord>> List(const EventFilter& filter, const Page& page);
  // Puts a dead event back in the queue with a fresh attempt count; the events of its subject
  // held behind it follow it, in their order, up to the subject's next dead letter. An event
  // with an earlier dead letter of its subject is held behind that one instead. Returns the
  // event as it now is. Errors: not_found; failed_precondition when the event is not dead.
  // There is no other way out for a dead letter: ccm removes none.
  Result<OutboxRecord> Replay(const std::string& event_id);
  // Replays every dead event, oldest first, so that every subject is released in order;
  // returns how many.
  Result<int> ReplayAll();
  // The Prometheus text exposition of the outbox and delivery metrics.
  Result<std::string> Metrics();

 private:
  Store& store_;
  Clock& clock_;
  const DispatchMetrics* metrics_;
  const ReceiveMetrics* received_;
  std::function<void()> wake_;
};

}  // namespace ccm::app
