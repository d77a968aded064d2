#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>

#include "app/events.h"
#include "app/services.h"
#include "cloudevents/cloud_event.h"
#include "ports/clock.h"
#include "ports/store.h"
#include "runtime/background_loop.h"
#include "runtime/background_work.h"
#include "wire/assessment_events.h"

namespace ccm::app {

// Counters of consumed events, for /metrics. Thread-safe.
struct ReceiveMetrics {
  std::atomic<std::uint64_t> applied{0};
  std::atomic<std::uint64_t> duplicate{0};
  std::atomic<std::uint64_t> ignored{0};
  std::atomic<std::uint64_t> stale{0};
  std::atomic<std::uint64_t> rejected{0};
};

// Applies the events the Assessment Platform sends. Each event is processed durably: the
// change it causes, the events ccm publishes about it and its dedup key (source, id) are one
// commit, answered once it is on disk, so a redelivery (even after a restart) changes nothing.
// Thread-safe.
class EventReceiver {
 public:
  struct Options {
    std::chrono::hours dedup_ttl{24};  // EVENT_DEDUP_TTL_HOURS
    int max_collection_failures = 3;   // retryable failures tolerated; the next one stops the instance
  };
  enum class Outcome {
    kApplied,    // the event changed the instance
    kDuplicate,  // (source, id) was processed before: nothing changed
    kIgnored,    // no handler for the type: nothing changed, nothing recorded
    kStale,      // the instance is already past what the event reports: only its key recorded
  };

  // Why an event was refused for what it says, rather than failed by a store or a race.
  enum class Refusal {
    kUnprocessable,  // its data are invalid (field named) or its instance is unknown: 422
    kIllegalMove,    // its instance's state does not allow what it reports: 409
  };
  // The refusal `e` is, if it is one. A stale-version conflict is none (the event is decided
  // again), nor is a duplicate key (the event was taken before: an outcome, not an error).
  static std::optional<Refusal> RefusalOf(const Error& e);

  EventReceiver(Deps deps, Options options, ReceiveMetrics& metrics)
      : d_(deps), options_(options), metrics_(metrics) {}

  // Errors: invalid_argument (data invalid, field named) and not_found (unknown instance),
  // both answered 422; conflict when the instance's state does not allow the move (409);
  // unavailable.
  Result<Outcome> Receive(const cloudevents::CloudEvent& event);
  // Receive, without holding this thread while the change commits: `then` gets Receive's
  // result, on the thread that commits (Store::CommitThen), and must not block. One
  // difference: a commit that lost a race with another writer of the instance gives `then`
  // StaleVersion, where Receive decides again; the caller then calls Receive, on a thread
  // that may block.
  void ReceiveThen(const cloudevents::CloudEvent& event, std::function<void(Result<Outcome>)> then);

  // The operator's path to the same result as assessment.grading.completed: the first score
  // of a GRADING instance moves it to STOPPING; in any later state (until retention removes
  // it) the score is kept as the next revision and published again. Errors: not_found,
  // conflict (before GRADING), invalid_argument (bad score).
  Result<domain::LabletInstance> RecordGradingResult(const domain::InstanceId& id, const domain::GradingScore& score,
                                                     const std::string& actor);

 private:
  // What an event does, decided on the instance as stored now: its outcome, and what to
  // commit for it (nothing when the outcome is final without a commit: ignored, duplicate).
  struct Decision {
    Outcome outcome;
    ports::Changes changes;
  };
  Result<Decision> Decide(const cloudevents::CloudEvent& event);
  // Decide for an event of a known `type`, before its key is looked at.
  Result<Decision> DecideOn(wire::AssessmentEventType type, const cloudevents::CloudEvent& event);
  // The outcome once `committed` says how the decision's commit went (a concurrent delivery
  // of the same event that won is a duplicate).
  static Result<Outcome> Committed(Outcome outcome, const Status& committed);
  // Counts a final result in the metrics, and returns it.
  Result<Outcome> Counted(Result<Outcome> result);
  // Whether an instance in `state` is already past what the event reports: the event is a
  // stale no-op. One overload per event type.
  static bool IsPast(domain::InstanceState state, const wire::CollectionCompleted&);
  static bool IsPast(domain::InstanceState state, const wire::CollectionFailed&);
  static bool IsPast(domain::InstanceState state, const wire::GradingCompleted&);
  static bool IsPast(domain::InstanceState state, const wire::GradingFailed&);
  // Applies one event's data (decoded by wire/assessment_events.h) to the instance it names;
  // `event_id` is the event's id. One overload per event type.
  Result<Outcome> Apply(domain::LabletInstance&, const wire::CollectionCompleted&, const std::string& event_id,
                        const std::string& actor, ports::Changes&);
  Result<Outcome> Apply(domain::LabletInstance&, const wire::CollectionFailed&, const std::string& event_id,
                        const std::string& actor, ports::Changes&);
  Result<Outcome> Apply(domain::LabletInstance&, const wire::GradingCompleted&, const std::string& event_id,
                        const std::string& actor, ports::Changes&);
  Result<Outcome> Apply(domain::LabletInstance&, const wire::GradingFailed&, const std::string& event_id,
                        const std::string& actor, ports::Changes&);
  // Moves the instance and queues its event (and its worker when the move releases).
  Status Move(domain::LabletInstance& i, domain::InstanceState to, const std::string& reason, const std::string& actor,
              ports::Changes& changes);
  // Keeps `score` (carried by event `event_id`, empty for an operator's) as the instance's
  // next revision and queues its grading.completed; a GRADING instance then moves to STOPPING,
  // graded.
  Status RecordScore(domain::LabletInstance& i, const domain::GradingScore& score, const std::string& event_id,
                     const std::string& actor, ports::Changes& changes);

  Deps d_;
  Options options_;
  ReceiveMetrics& metrics_;
};

// Removes expired dedup keys every `interval` on a background thread, so that the keys of
// EVENT_DEDUP_TTL_HOURS do not pile up. Thread-safe.
class KeySweeper final : public runtime::BackgroundTask {
 public:
  KeySweeper(ports::Store& store, ports::Clock& clock, std::chrono::milliseconds interval)
      : store_(store), clock_(clock), loop_([this] {
          (void)SweepOnce();  // a failed sweep is tried again at the next interval
          return false;
        },
                                            interval) {}
  // One sweep now. Errors: those of the store.
  Status SweepOnce();
  std::string_view name() const override { return "key sweep"; }
  void Start() override { loop_.Start(); }
  void RequestStop() override { loop_.RequestStop(); }
  void Stop() override { loop_.Stop(); }
  void Wake() override {}  // a commit adds keys; none expires sooner for it

 private:
  ports::Store& store_;
  ports::Clock& clock_;
  runtime::BackgroundLoop loop_;
};

}  // namespace ccm::app
