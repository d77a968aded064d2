#include "app/dispatcher.h"

#include <algorithm>
#include <set>

namespace ccm::app {

using namespace std::chrono;

void DispatchMetrics::ObserveLatency(milliseconds latency) {
  const double seconds = std::max<double>(0, static_cast<double>(latency.count()) / 1000.0);
  for (size_t i = 0; i < std::size(kBuckets); ++i)
    if (seconds <= kBuckets[i]) latency_counts[i]++;
  latency_count++;
  latency_sum_us += static_cast<std::uint64_t>(seconds * 1e6);
}

Dispatcher::Dispatcher(ports::Store& store, ports::Outbox& outbox, ports::EventSink& sink, ports::Clock& clock,
                       DispatcherOptions options, DispatchMetrics& metrics)
    : store_(store),
      outbox_(outbox),
      sink_(sink),
      clock_(clock),
      options_(options),
      metrics_(metrics),
      breaker_(options.breaker_threshold, options.breaker_cooldown),
      loop_([this] {
        auto delivered = RunOnce();
        return delivered && *delivered > 0;
      },
            options.idle_poll) {}

Dispatcher::~Dispatcher() { Stop(); }

milliseconds Dispatcher::Backoff(int attempts) {
  // Full jitter: uniform in [0, min(cap, base * 2^(attempts-1))].
  const int shift = std::min(attempts - 1, 30);
  const auto ceiling = std::min<std::int64_t>(options_.max_backoff.count(), options_.base_backoff.count() << shift);
  return milliseconds(std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(ceiling, 1))(rng_));
}

ports::DeliveryUpdate Dispatcher::DeadLetter(const ports::OutboxRecord& r, int attempts, std::string error, Timestamp now) {
  metrics_.dead_lettered++;
  return {r.seq, ports::DeliveryState::kDead, attempts, now, std::move(error), r.event.id};
}

ports::DeliveryUpdate Dispatcher::Failed(const ports::OutboxRecord& r, const ports::DeliveryOutcome& o, Timestamp now) {
  const int attempts = r.attempts + 1;
  std::string error =
      o.status ? "HTTP " + std::to_string(o.status) + (o.error.empty() ? "" : ": " + o.error) : o.error;
  if (o.kind == ports::DeliveryOutcome::kFinal) return DeadLetter(r, attempts, std::move(error), now);
  if (attempts >= options_.max_attempts) return DeadLetter(r, attempts, error + " (attempt limit reached)", now);
  if (now >= Deadline(r)) return DeadLetter(r, attempts, error + " (older than the age limit)", now);
  milliseconds wait = Backoff(attempts);
  // A sink may ask for any pause; one beyond the cap would park the subject for as long.
  if (o.retry_after) wait = std::max(wait, std::min(*o.retry_after, options_.max_retry_after));
  metrics_.retried++;
  // No attempt is scheduled past the age limit: the event is dead-lettered when it is due.
  return {r.seq, ports::DeliveryState::kPending, attempts, std::min(now + wait, Deadline(r)), std::move(error), r.event.id};
}

Result<int> Dispatcher::RunOnce() {
  const Timestamp now = clock_.Now();
  if (!breaker_.Allow(now)) {
    metrics_.breaker_state = static_cast<int>(breaker_.state());
    return 0;
  }
  const bool probing = breaker_.state() == runtime::CircuitBreaker::State::kHalfOpen;
  auto due = outbox_.DueEvents(now, probing ? 1 : options_.round_size);
  if (!due) return due.error();
  if (due->empty()) {
    if (probing) breaker_.OnSuccess();  // nothing to probe with: try again normally
    return 0;
  }

  ports::Changes changes;
  int delivered = 0;
  // Subjects that may not go on in this round: one of their events failed, so the later ones
  // wait behind it (a retry) or are held behind it (a dead letter).
  std::set<std::string> stopped_subjects;
  bool sent = false;
  const size_t batch = static_cast<size_t>(std::max(1, sink_.MaxBatch()));
  std::vector<ports::OutboxEvent> events;
  for (size_t start = 0; start < due->size();) {
    // Stopping (a graceful stop, or leadership lost): the deliveries made are recorded below,
    // and the events not sent yet stay pending for the next round or the next leader; none
    // is left half-way.
    if (loop_.StopRequested()) break;
    // The next group: events whose subject has not stopped in this round, up to the batch.
    // An event that failed before and is past the age limit goes no further.
    std::vector<const ports::OutboxRecord*> group;
    size_t next = start;
    for (; next < due->size() && group.size() < batch; ++next) {
      const ports::OutboxRecord& r = (*due)[next];
      if (stopped_subjects.count(r.event.subject)) continue;
      if (r.attempts > 0 && now >= Deadline(r)) {
        changes.deliveries.push_back(DeadLetter(r, r.attempts, r.last_error + " (older than the age limit)", now));
        stopped_subjects.insert(r.event.subject);
        continue;
      }
      group.push_back(&r);
    }
    start = next;
    if (group.empty()) continue;
    events.clear();
    for (const auto* r : group) events.push_back(r->event);
    sent = true;
    const ports::DeliveryOutcome outcome = sink_.Send(events);
    const Timestamp at = clock_.Now();
    if (outcome.kind == ports::DeliveryOutcome::kDelivered) {
      breaker_.OnSuccess();
      for (const auto* r : group) {
        changes.deliveries.push_back({r->seq, ports::DeliveryState::kDelivered, r->attempts + 1, at, "", r->event.id});
        metrics_.ObserveLatency(duration_cast<milliseconds>(at - r->event.time));
      }
      delivered += static_cast<int>(group.size());
      metrics_.delivered += group.size();
    } else {
      for (const auto* r : group) {
        changes.deliveries.push_back(Failed(*r, outcome, at));
        stopped_subjects.insert(r->event.subject);
      }
      if (outcome.kind == ports::DeliveryOutcome::kRetry) {
        breaker_.OnFailure(at);
        if (breaker_.state() != runtime::CircuitBreaker::State::kClosed) break;  // stop hammering
      }
    }
  }
  // A probe that only dead-lettered an event past its age never reached the sink: as with
  // nothing to probe with, try again normally rather than wait for a probe's answer for ever.
  if (probing && !sent) breaker_.OnSuccess();
  metrics_.breaker_state = static_cast<int>(breaker_.state());
  if (auto s = store_.Commit(changes); !s) return s.error();
  return delivered;
}

void Dispatcher::Start() { loop_.Start(); }
void Dispatcher::RequestStop() { loop_.RequestStop(); }
void Dispatcher::Stop() { loop_.Stop(); }
void Dispatcher::Wake() { loop_.Wake(); }

}  // namespace ccm::app
