#include "app/event_service.h"

namespace ccm::app {

Result<ports::PageOf<ports::OutboxRecord>> EventService::List(const ports::EventFilter& filter, const ports::Page& page) {
  return outbox_.ListEvents(filter, page);
}

Result<ports::OutboxRecord> EventService::Replay(const std::string& event_id) {
  auto record = outbox_.GetEvent(event_id);
  if (!record) return record;
  if (record->state != ports::DeliveryState::kDead)
    return Error::FailedPrecondition("event " + event_id + " is " + std::string(ToString(record->state)) +
                                     ", not dead: only dead letters are replayed");
  ports::Changes changes;
  changes.deliveries.push_back({record->seq, ports::DeliveryState::kPending, 0, clock_.Now(), "replayed", record->event.id});
  if (auto s = store_.Commit(changes); !s) return s.error();
  if (wake_) wake_();
  return outbox_.GetEvent(event_id);
}

Result<int> EventService::ReplayAll() {
  ports::EventFilter dead;
  dead.state = ports::DeliveryState::kDead;
  int replayed = 0;
  ports::Page page{ports::kMaxPageLimit, ""};
  // Replayed events leave the dead state, so each pass starts from the beginning.
  for (;;) {
    auto batch = outbox_.ListEvents(dead, page);
    if (!batch) return batch.error();
    if (batch->items.empty()) break;
    ports::Changes changes;
    for (const auto& r : batch->items) changes.deliveries.push_back({r.seq, ports::DeliveryState::kPending, 0, clock_.Now(), "replayed", r.event.id});
    if (auto s = store_.Commit(changes); !s) return s.error();
    replayed += static_cast<int>(batch->items.size());
  }
  if (replayed && wake_) wake_();
  return replayed;
}

}  // namespace ccm::app
