#include "app/dispatcher.h"

#include <algorithm>
#include <functional>
#include <future>
#include <iterator>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>

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
      lanes_(options.concurrency),
      loop_([this] {
        auto delivered = RunOnce();
        return delivered && *delivered > 0;
      },
            options.idle_poll) {}

Dispatcher::~Dispatcher() { Stop(); }

milliseconds Dispatcher::Backoff(int attempts) {
  // Full jitter: uniform in [1 ms, min(cap, base * 2^(attempts-1))]; never 0, so that a failed
  // event is not due again in the instant it failed.
  const int shift = std::min(attempts - 1, 30);
  const auto ceiling = std::min<std::int64_t>(options_.max_backoff.count(), options_.base_backoff.count() << shift);
  return milliseconds(std::uniform_int_distribution<std::int64_t>(1, std::max<std::int64_t>(ceiling, 1))(rng_));
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

std::vector<std::vector<const ports::OutboxRecord*>> Dispatcher::ShareOut(const std::vector<ports::OutboxRecord>& due,
                                                                          int lanes) {
  std::unordered_map<std::string_view, std::size_t> lane_of;  // subject -> events, then -> lane
  for (const auto& r : due) ++lane_of[r.event.subject];
  const std::size_t n = std::min(lane_of.size(), static_cast<std::size_t>(std::max(1, lanes)));
  if (n <= 1) {
    std::vector<std::vector<const ports::OutboxRecord*>> one(1);
    for (const auto& r : due) one[0].push_back(&r);
    return one;
  }
  // The busiest subjects first, each to the lane with the fewest events so far: the lanes
  // end about together even when a few subjects hold most of the round.
  std::vector<std::pair<std::size_t, std::string_view>> by_size;
  by_size.reserve(lane_of.size());
  for (const auto& [subject, count] : lane_of) by_size.emplace_back(count, subject);
  std::sort(by_size.begin(), by_size.end(), std::greater<>());
  std::vector<std::size_t> load(n, 0);
  for (const auto& [count, subject] : by_size) {
    const auto lane = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    load[lane] += count;
    lane_of[subject] = lane;
  }
  std::vector<std::vector<const ports::OutboxRecord*>> out(n);
  for (std::size_t k = 0; k < n; ++k) out[k].reserve(load[k]);
  for (const auto& r : due) out[lane_of[r.event.subject]].push_back(&r);
  return out;
}

Dispatcher::LaneResult Dispatcher::RunLane(const std::vector<const ports::OutboxRecord*>& records, Timestamp now) {
  LaneResult out;
  // Subjects that may not go on in this round: one of their events failed, so the later ones
  // wait behind it (a retry) or are held behind it (a dead letter). A subject has one lane, so
  // the lane's own set is the whole truth.
  std::unordered_set<std::string_view>& stopped_subjects = out.stopped_subjects;
  const size_t batch = static_cast<size_t>(std::max(1, sink_.MaxBatch()));
  std::vector<const ports::OutboxRecord*> group;
  std::vector<ports::OutboxEvent> events;
  for (size_t start = 0; start < records.size();) {
    // Stopping (a graceful stop, leadership lost, or the breaker opened on any lane): the
    // deliveries made are recorded, and the events not sent yet stay pending for the next
    // round or the next leader; none is left half-way.
    if (loop_.StopRequested() || halted_.load()) break;
    // The next group: events whose subject has not stopped in this round, up to the batch.
    // An event that failed before and is past the age limit goes no further.
    group.clear();
    size_t next = start;
    for (; next < records.size() && group.size() < batch; ++next) {
      const ports::OutboxRecord& r = *records[next];
      if (stopped_subjects.count(r.event.subject)) continue;
      if (r.attempts > 0 && now >= Deadline(r)) {
        out.deliveries.push_back(DeadLetter(r, r.attempts, r.last_error + " (older than the age limit)", now));
        stopped_subjects.insert(r.event.subject);
        continue;
      }
      group.push_back(&r);
    }
    start = next;
    if (group.empty()) continue;
    events.clear();
    for (const auto* r : group) events.push_back(r->event);
    out.sent = true;
    const ports::DeliveryOutcome outcome = sink_.Send(events);
    const Timestamp at = clock_.Now();
    if (outcome.kind == ports::DeliveryOutcome::kDelivered) {
      {
        // An answer that was in flight when another lane opened the breaker does not close it.
        std::lock_guard lock(mu_);
        if (!halted_.load()) breaker_.OnSuccess();
      }
      for (const auto* r : group) {
        out.deliveries.push_back({r->seq, ports::DeliveryState::kDelivered, r->attempts + 1, at, "", r->event.id});
        metrics_.ObserveLatency(duration_cast<milliseconds>(at - r->event.time));
      }
      out.delivered += static_cast<int>(group.size());
      metrics_.delivered += group.size();
    } else {
      {
        std::lock_guard lock(mu_);  // Failed draws the backoff from the shared generator
        for (const auto* r : group) {
          out.deliveries.push_back(Failed(*r, outcome, at));
          stopped_subjects.insert(r->event.subject);
        }
        if (outcome.kind == ports::DeliveryOutcome::kRetry) {
          // Answers that were in flight when another lane opened the breaker do not push its
          // cool-down further out.
          if (!halted_.load()) {
            breaker_.OnFailure(at);
            if (breaker_.state() != runtime::CircuitBreaker::State::kClosed) halted_ = true;  // stop hammering
          }
        } else if (!halted_.load()) {
          // A final refusal is an answer: the sink is up. A probe answered so closes the
          // breaker rather than leave it waiting for a probe's answer for ever.
          breaker_.OnSuccess();
        }
      }
      if (halted_.load()) break;
    }
  }
  return out;
}

Dispatcher::Round Dispatcher::SendRound(const std::vector<ports::OutboxRecord>& due, Timestamp now) {
  halted_ = false;
  const auto shares = ShareOut(due, lanes_.size());
  std::vector<LaneResult> results(shares.size());
  lanes_.Run(shares.size(), [&](size_t k) { results[k] = RunLane(shares[k], now); });

  // Every lane's outcomes in one commit, in the round's order (as one lane would have them).
  Round round;
  for (auto& r : results) {
    round.delivered += r.delivered;
    round.sent = round.sent || r.sent;
    std::move(r.deliveries.begin(), r.deliveries.end(), std::back_inserter(round.changes.deliveries));
    for (const auto subject : r.stopped_subjects) round.stopped_subjects.emplace(subject);
  }
  if (shares.size() > 1)
    std::sort(round.changes.deliveries.begin(), round.changes.deliveries.end(),
              [](const ports::DeliveryUpdate& a, const ports::DeliveryUpdate& b) { return a.seq < b.seq; });
  for (const auto& r : due) round.seqs.insert(r.seq);
  return round;
}

Result<int> Dispatcher::RunOnce() {
  Timestamp now = clock_.Now();
  bool probing = false;
  {
    std::lock_guard lock(mu_);
    if (!breaker_.Allow(now)) {
      metrics_.breaker_state = static_cast<int>(breaker_.state());
      return 0;
    }
    probing = breaker_.state() == runtime::CircuitBreaker::State::kHalfOpen;
  }
  auto due = outbox_.DueEvents(now, probing ? 1 : options_.round_size);
  if (!due) {
    // The probe never went out: open again, and probe after the cool-down.
    if (probing) {
      std::lock_guard lock(mu_);
      breaker_.OnFailure(now);
    }
    return due.error();
  }
  if (due->empty()) {
    std::lock_guard lock(mu_);
    if (probing) breaker_.OnSuccess();  // nothing to probe with: try again normally
    return 0;
  }

  int delivered = 0;
  // The outcomes of the round before, while this one is sent, and their commit.
  ports::Changes outcomes;
  std::future<Status> committing;
  for (int n = 1;; ++n) {
    Round round = SendRound(*due, now);
    delivered += round.delivered;
    {
      std::lock_guard lock(mu_);
      // A probe that only dead-lettered an event past its age never reached the sink: as with
      // nothing to probe with, try again normally rather than wait for a probe's answer for ever.
      if (probing && !round.sent) breaker_.OnSuccess();
      metrics_.breaker_state = static_cast<int>(breaker_.state());
    }
    // This round's outcomes are committed only after the round before's: a failed commit is
    // not followed by a later one, so every event of both whose outcome was not recorded is
    // sent again, in order.
    if (committing.valid())
      if (auto s = committing.get(); !s) return s.error();
    const bool full = static_cast<int>(due->size()) >= options_.round_size;
    if (probing || !full || n == kRoundsPerRun || loop_.StopRequested() || halted_.load()) {
      if (auto s = store_.Commit(round.changes); !s) return s.error();
      return delivered;
    }
    outcomes = std::move(round.changes);  // the commit before is over: get() above
    try {
      committing = std::async(std::launch::async, [this, &outcomes] { return store_.Commit(outcomes); });
    } catch (const std::system_error&) {  // no thread to be had: this round's commit, then the next round
      if (auto s = store_.Commit(outcomes); !s) return s.error();
    }
    // The next round, without the events this one took up or the subjects it stopped: the
    // store has them pending until the commit above is over, and on a store whose read is not
    // one snapshot (etcd's, in chunks) some may read as committed and others not.
    now = clock_.Now();
    due = outbox_.DueEvents(now, options_.round_size + static_cast<int>(round.seqs.size()));
    if (due)
      std::erase_if(*due, [&](const ports::OutboxRecord& r) {
        return round.seqs.count(r.seq) > 0 || round.stopped_subjects.count(r.event.subject) > 0;
      });
    if (!due || due->empty()) {
      if (committing.valid())
        if (auto s = committing.get(); !s) return s.error();
      if (!due) return due.error();
      return delivered;
    }
    if (static_cast<int>(due->size()) > options_.round_size) due->resize(static_cast<std::size_t>(options_.round_size));
  }
}

void Dispatcher::Start() { loop_.Start(); }
void Dispatcher::RequestStop() { loop_.RequestStop(); }
void Dispatcher::Stop() { loop_.Stop(); }
void Dispatcher::Wake() { loop_.Wake(); }

}  // namespace ccm::app
