#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "app/background_loop.h"
#include "app/background_work.h"
#include "app/ports.h"

namespace ccm::app {

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

// Stops hammering a sink that keeps failing: after `threshold` failures in a row it opens
// and refuses attempts for `cooldown`; then it lets one probe through (half-open), which
// closes it on success or opens it again on failure. Not thread-safe.
class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };
  CircuitBreaker(int threshold, std::chrono::milliseconds cooldown) : threshold_(threshold), cooldown_(cooldown) {}
  // Whether an attempt may go out now; in half-open, only the first caller gets true.
  bool Allow(Timestamp now);
  void OnSuccess();
  void OnFailure(Timestamp now);
  State state() const { return state_; }

 private:
  int threshold_;
  std::chrono::milliseconds cooldown_;
  State state_ = State::kClosed;
  int failures_ = 0;
  Timestamp open_until_;
  bool probe_out_ = false;
};
std::string_view ToString(CircuitBreaker::State s);

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
class Dispatcher final : public BackgroundTask {
 public:
  Dispatcher(Store& store, EventSink& sink, Clock& clock, DispatcherOptions options, DispatchMetrics& metrics);
  ~Dispatcher();  // stops

  // One round: sends what is due and records the outcomes. Returns the number delivered.
  // Errors: those of the store.
  Result<int> RunOnce();

  // Runs rounds on a background thread until Stop: at once while there is work, every
  // idle_poll otherwise, or when woken.
  std::string_view name() const override { return "dispatcher"; }
  void Start() override;
  void RequestStop() override;
  // Ends the round in progress after the send in flight (its answer is awaited, never cut
  // off), records the outcomes of the sends made, and joins the thread. The events the round
  // had not sent yet stay pending, untouched. Call it while the store still takes this
  // process's commits (a leader before it resigns), or those outcomes are retried by the
  // next round or leader (delivered twice, never lost).
  void Stop() override;
  void Wake() override;

 private:
  std::chrono::milliseconds Backoff(int attempts);
  DeliveryUpdate Failed(const OutboxRecord& r, const DeliveryOutcome& o, Timestamp now);
  // When `r` stops being retried: its time plus the age limit.
  Timestamp Deadline(const OutboxRecord& r) const { return r.event.time + options_.max_age; }
  DeliveryUpdate DeadLetter(const OutboxRecord& r, int attempts, std::string error, Timestamp now);

  Store& store_;
  EventSink& sink_;
  Clock& clock_;
  DispatcherOptions options_;
  DispatchMetrics& metrics_;
  CircuitBreaker breaker_;
  std::mt19937_64 rng_{std::random_device{}()};

  BackgroundLoop loop_;
};

}  // namespace ccm::app
