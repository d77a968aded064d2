#pragma once

#include <functional>
#include <optional>
#include <string>

#include "app/dispatcher.h"
#include "app/receiver.h"
#include "ports/clock.h"
#include "ports/outbox.h"
#include "ports/page.h"
#include "ports/store.h"

namespace ccm::app {

// What operators do with the outbox: read the audit log, list dead letters, replay them.
// (Its metrics are read by src/metrics/ from the store and the dispatcher's counters.)
// Thread-safe.
class EventService {
 public:
  // Reads events from `outbox` and commits replays to `store`, the same store's two ports.
  // `wake_dispatcher`, called after a replay, may be empty (no dispatcher runs).
  EventService(ports::Store& store, ports::Outbox& outbox, ports::Clock& clock, std::function<void()> wake_dispatcher)
      : store_(store), outbox_(outbox), clock_(clock), wake_(std::move(wake_dispatcher)) {}

  Result<ports::PageOf<ports::OutboxRecord>> List(const ports::EventFilter& filter, const ports::Page& page);
  // Puts a dead event back in the queue with a fresh attempt count; the events of its subject
  // held behind it follow it, in their order, up to the subject's next dead letter. An event
  // with an earlier dead letter of its subject is held behind that one instead. Returns the
  // event as it now is. Errors: not_found; failed_precondition when the event is not dead.
  // There is no other way out for a dead letter: ccm removes none.
  Result<ports::OutboxRecord> Replay(const std::string& event_id);
  // Replays every dead event, oldest first, so that every subject is released in order;
  // returns how many.
  Result<int> ReplayAll();

 private:
  ports::Store& store_;
  ports::Outbox& outbox_;
  ports::Clock& clock_;
  std::function<void()> wake_;
};

}  // namespace ccm::app
