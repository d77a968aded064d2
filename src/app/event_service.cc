#include "app/event_service.h"

#include <sstream>

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

Result<std::string> EventService::Metrics() {
  auto stats = store_.GetOutboxStats();
  if (!stats) return stats.error();
  std::ostringstream out;
  auto metric = [&out](const char* name, const char* type, const char* help, auto value) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << value << '\n';
  };
  metric("ccm_events_published_total", "counter", "CloudEvents written to the outbox.", stats->published);
  metric("ccm_outbox_depth", "gauge", "Outbox events waiting to be delivered.", stats->pending);
  metric("ccm_events_dead_letters", "gauge", "Outbox events in the dead-letter list.", stats->dead);
  metric("ccm_outbox_held_events", "gauge",
         "Outbox events held behind a dead letter of their subject until it is replayed.", stats->held);
  if (metrics_) {
    metric("ccm_events_delivered_total", "counter", "Events the sink accepted.", metrics_->delivered.load());
    metric("ccm_events_retried_total", "counter", "Failed delivery attempts that will be retried.",
           metrics_->retried.load());
    metric("ccm_events_dead_lettered_total", "counter", "Events moved to the dead-letter list.",
           metrics_->dead_lettered.load());
    // The state as a label (1 on the current one), so that a rule reads {state="open"}.
    out << "# HELP ccm_sink_breaker_state Circuit breaker of the sink: 1 for its current state, 0 for the others.\n"
        << "# TYPE ccm_sink_breaker_state gauge\n";
    const int breaker = metrics_->breaker_state.load();
    for (const auto& [state, value] : {std::pair{"closed", 0}, {"open", 1}, {"half_open", 2}})
      out << "ccm_sink_breaker_state{state=\"" << state << "\"} " << (breaker == value ? 1 : 0) << '\n';
    out << "# HELP ccm_event_delivery_latency_seconds From an event's time to the sink's acknowledgement.\n"
        << "# TYPE ccm_event_delivery_latency_seconds histogram\n";
    for (size_t i = 0; i < std::size(DispatchMetrics::kBuckets); ++i)
      out << "ccm_event_delivery_latency_seconds_bucket{le=\"" << DispatchMetrics::kBuckets[i] << "\"} "
          << metrics_->latency_counts[i].load() << '\n';
    out << "ccm_event_delivery_latency_seconds_bucket{le=\"+Inf\"} " << metrics_->latency_count.load() << '\n'
        << "ccm_event_delivery_latency_seconds_sum " << static_cast<double>(metrics_->latency_sum_us.load()) / 1e6
        << '\n'
        << "ccm_event_delivery_latency_seconds_count " << metrics_->latency_count.load() << '\n';
  }
  if (received_) {
    out << "# HELP ccm_events_received_total Consumed CloudEvents by outcome.\n"
        << "# TYPE ccm_events_received_total counter\n";
    for (const auto& [outcome, n] : {std::pair{"applied", received_->applied.load()},
                                     {"duplicate", received_->duplicate.load()},
                                     {"ignored", received_->ignored.load()},
                                     {"stale", received_->stale.load()},
                                     {"rejected", received_->rejected.load()}})
      out << "ccm_events_received_total{outcome=\"" << outcome << "\"} " << n << '\n';
  }
  return out.str();
}

}  // namespace ccm::app
