#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ports/clock.h"
#include "ports/event_sink.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "runtime/background_loop.h"
#include "runtime/background_work.h"
#include "runtime/circuit_breaker.h"
#include "runtime/lanes.h"

namespace ccm::app {

struct DispatcherOptions {
  int max_attempts = 12;                              // then dead-lettered
  // A failed event is dead-lettered once it is this old, even while it waits for its next
  // attempt: no retry is scheduled past it. An event not yet tried (new, replayed, released)
  // gets its attempt whatever its age.
  std::chrono::milliseconds max_age{24 * 3600 * 1000};
  std::chrono::milliseconds base_backoff{500};
  std::chrono::milliseconds max_backoff{5 * 60 * 1000};
  std::chrono::milliseconds max_retry_after{5 * 60 * 1000};  // a longer Retry-After counts as this
  int round_size = 500;                               // events fetched per round
  // Lanes: requests in flight to the sink at once (CLOUDEVENTS_SINK_CONCURRENCY). A round's
  // subjects are shared out among them, each subject to one lane, which sends its events in
  // their order; below 1 counts as 1 (one request at a time).
  int concurrency = 8;
  int breaker_threshold = 5;
  std::chrono::milliseconds breaker_cooldown{10'000};
  std::chrono::milliseconds idle_poll{250};           // sleep when nothing was due
};

// Counters for /metrics. Thread-safe.
struct DispatchMetrics {
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> dead_lettered{0};
  std::atomic<int> breaker_state{0};  // 0 closed, 1 open, 2 half-open
  // Delivery latency (event time to acknowledgement), cumulative buckets in seconds.
  static constexpr double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  std::atomic<std::uint64_t> latency_counts[std::size(kBuckets)] = {};
  std::atomic<std::uint64_t> latency_count{0};
  std::atomic<std::uint64_t> latency_sum_us{0};
  void ObserveLatency(std::chrono::milliseconds latency);
};

// Delivers the outbox to the sink: at least once, in order per subject, retrying with
// exponential backoff and full jitter (honouring Retry-After up to max_retry_after),
// dead-lettering after the attempt or age limit or on a final refusal, behind a circuit
// breaker. A dead letter holds its subject's later events (the store keeps them held until
// it is replayed), so a subject is never delivered out of order. Every outcome is recorded
// in the store, so a restart resumes where it stopped.
//
// A round is sent on up to `concurrency` lanes at once, a fixed set of threads the
// dispatcher owns: each subject of the round goes to one lane, which sends that subject's
// events one request after the other in their order (in batch mode a lane's batches hold
// its own subjects' events), so the order per subject is the same as with one lane. A failure
// stops its own subject for the round; the breaker is shared, and once it opens every lane
// stops before its next request. The sink must take calls from several threads at once.
class Dispatcher final : public runtime::BackgroundTask {
 public:
  // Reads what is due from `outbox` and records the outcomes through `store`'s commits: the
  // same store's two ports (a leader commits through its fenced store).
  Dispatcher(ports::Store& store, ports::Outbox& outbox, ports::EventSink& sink, ports::Clock& clock,
             DispatcherOptions options, DispatchMetrics& metrics);
  ~Dispatcher();  // stops

  // One run: sends what is due and records the outcomes, a commit per round. While rounds
  // come full (round_size events), up to kRoundsPerRun of them follow one another, each sent
  // while the outcomes of the one before are committed: the events and subjects of that round
  // are left out of the next until its commit is over, so the order per subject is as with
  // one round at a time. A short round, the last of kRoundsPerRun, a probe, a stop or an open
  // breaker ends the run; every round's outcomes are committed, in the rounds' order, before
  // it returns. Returns the number delivered. Errors: those of the store (a failed commit is
  // not followed by the next round's, so every event whose outcome was not recorded is sent
  // again, in order). One caller at a time (the background thread, or a test that does not
  // Start).
  Result<int> RunOnce();
  static constexpr int kRoundsPerRun = 8;

  // Runs rounds on a background thread until Stop: at once while there is work, every
  // idle_poll otherwise, or when woken.
  std::string_view name() const override { return "dispatcher"; }
  void Start() override;
  void RequestStop() override;
  // Ends the round in progress after the sends in flight (their answers are awaited, never
  // cut off), records the outcomes of the sends made, and joins the thread. The events the round
  // had not sent yet stay pending, untouched. Call it while the store still takes this
  // process's commits (a leader before it resigns), or those outcomes are retried by the
  // next round or leader (delivered twice, never lost).
  void Stop() override;
  void Wake() override;

 private:
  std::chrono::milliseconds Backoff(int attempts);
  ports::DeliveryUpdate Failed(const ports::OutboxRecord& r, const ports::DeliveryOutcome& o, Timestamp now);
  // When `r` stops being retried: its time plus the age limit.
  Timestamp Deadline(const ports::OutboxRecord& r) const { return r.event.time + options_.max_age; }
  ports::DeliveryUpdate DeadLetter(const ports::OutboxRecord& r, int attempts, std::string error, Timestamp now);

  // What one lane did in a round.
  struct LaneResult {
    std::vector<ports::DeliveryUpdate> deliveries;
    int delivered = 0;
    bool sent = false;  // a request went out
    std::unordered_set<std::string_view> stopped_subjects;  // see RunLane
  };
  // What a round did: its outcomes, and what the next round leaves alone while they are
  // committed (until then the store still has those events pending).
  struct Round {
    ports::Changes changes;  // the outcomes, in seq order
    int delivered = 0;
    bool sent = false;
    std::unordered_set<std::int64_t> seqs;             // every event the round took up
    std::unordered_set<std::string> stopped_subjects;  // a failure or a dead letter stopped them
  };
  // Sends `due` on the lanes and gathers their outcomes.
  Round SendRound(const std::vector<ports::OutboxRecord>& due, Timestamp now);
  // Sends `records` (one lane's share of the round, in seq order) in groups of up to the
  // sink's batch, until they are done, the breaker opens or a stop is requested.
  LaneResult RunLane(const std::vector<const ports::OutboxRecord*>& records, Timestamp now);
  // The round's records shared out among at most `lanes` lanes, each subject to one lane
  // (the busiest subjects first, each to the lane with the fewest events so far), each lane's
  // records in the round's order.
  static std::vector<std::vector<const ports::OutboxRecord*>> ShareOut(const std::vector<ports::OutboxRecord>& due,
                                                                       int lanes);

  ports::Store& store_;
  ports::Outbox& outbox_;
  ports::EventSink& sink_;
  ports::Clock& clock_;
  DispatcherOptions options_;
  DispatchMetrics& metrics_;
  std::mutex mu_;  // guards breaker_ and rng_, which the lanes share
  runtime::CircuitBreaker breaker_;
  std::mt19937_64 rng_{std::random_device{}()};
  // Set when the breaker opens during a round: the lanes send nothing more in it.
  std::atomic<bool> halted_{false};
  runtime::Lanes lanes_;

  runtime::BackgroundLoop loop_;
};

}  // namespace ccm::app
