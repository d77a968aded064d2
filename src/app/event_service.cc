#include "app/event_service.h"

namespace ccm::app {

Result<PageOf<OutboxRecord>> EventService::List(const EventFilter& filter, const Page& page) {
  return store_.ListEvents(filter, page);
}

Result<OutboxRecord> EventService::Replay(const std::string& event_id) {
  auto record = store_.GetEvent(event_id);
  if (!record) return record;
  if (record->state != DeliveryState::kDead)
    return Error::FailedPrecondition("event " + event_id + " is " + std::string(ToString(record->state)) +
                                     ", not dead: only dead letters are replayed");
  Changes changes;
  changes.deliveries.push_back({record->seq, DeliveryState::kPending, 0, clock_.Now(), "replayed", record->event.id});
  if (auto s = store_.Commit(changes); !s) return s.error();
  if (wake_) wake_();
  return store_.GetEvent(event_id);
}

Result<int> EventService::ReplayAll() {
  EventFilter dead;
  dead.state = DeliveryState::kDead;
  int replayed = 0;
  Page page{kMaxPageLimit, ""};
  // Replayed events leave the dead state, so each pass starts from the beginning.
  for (;;) {
    auto batch = store_.ListEvents(dead, page);
    if (!batch) return batch.error();
    if (batch->items.empty()) break;
    Changes changes;
    for (const auto& r : batch->items) changes.deliveries.push_back({r.seq, DeliveryState::kPending, 0, clock_.Now(), "replayed", r.event.id});
    if (auto s = store_.Commit(changes); !s) return s.error();
    replayed += static_cast<int>(batch->items.size());
  }
  if (replayed && wake_) wake_();
  return replayed;
}

}  // namespace ccm::app
