// The handlers of the events the Assessment Platform sends, one per type (decoded by
// wire/assessment_events.h): what each does to the instance it names (SYSTEM.md, "Receiving").
#include "app/collection.h"
#include "app/receiver.h"
#include "app/tracing.h"
#include "ports/store.h"

namespace ccm::app {

using namespace ccm::domain;

namespace {

// The instance states after `s` in the lifecycle (for stale no-ops).
int Rank(InstanceState s) { return static_cast<int>(s); }
bool Past(InstanceState s, InstanceState than) { return Rank(s) > Rank(than); }

// Whether an instance in `s` takes a score: GRADING and every state after it.
bool IsGradedOrLater(InstanceState s) { return Rank(s) >= Rank(InstanceState::kGrading); }

Error WrongState(const LabletInstance& i, std::string_view event, std::string_view needs) {
  return Error::Conflict("instance " + i.id.value + " is " + std::string(ToString(i.state)) + "; " +
                             std::string(event) + " needs " + std::string(needs),
                         "state");
}

}  // namespace

bool EventReceiver::IsPast(InstanceState state, const wire::CollectionCompleted&) {
  return Past(state, InstanceState::kCollecting);
}
bool EventReceiver::IsPast(InstanceState state, const wire::CollectionFailed&) {
  return Past(state, InstanceState::kCollecting);
}
// Every score is kept, also one that comes after the instance ended (RecordScore).
bool EventReceiver::IsPast(InstanceState, const wire::GradingCompleted&) { return false; }
bool EventReceiver::IsPast(InstanceState state, const wire::GradingFailed&) {
  return Past(state, InstanceState::kGrading);
}

Status EventReceiver::Move(LabletInstance& i, InstanceState to, const std::string& reason, const std::string& actor,
                           ports::Changes& changes) {
  const bool releases = (HoldsCapacity(i.state) && !HoldsCapacity(to)) || (HoldsPorts(i.state) && !HoldsPorts(to));
  std::optional<Worker> worker;
  if (i.worker_id && releases) {
    // Only a release touches the worker, and the receiver's moves never release.
    auto w = d_.store.GetWorker(*i.worker_id);
    if (!w) return w.error();
    worker = std::move(w.value());
  }
  auto change = MoveInstance(i, worker ? &*worker : nullptr, to, d_.clock.Now(), reason, actor);
  if (!change) return change.error();
  changes.events.push_back(
      d_.events.InstanceMoved(i, *change, worker ? std::optional<std::string_view>(worker->hostname) : std::nullopt, nullptr));
  if (worker) changes.workers.push_back(*worker);
  return {};
}

Status EventReceiver::RecordScore(LabletInstance& i, const GradingScore& score, const std::string& event_id,
                                  const std::string& actor, ports::Changes& changes) {
  const Timestamp now = d_.clock.Now();
  const ScoreRecord& record = i.AddScore(score, event_id, actor, now);
  double seconds = 0;
  for (auto h = i.state_history.rbegin(); h != i.state_history.rend(); ++h)
    if (h->to == InstanceState::kGrading) {
      seconds = std::chrono::duration<double>(now - h->at).count();
      break;
    }
  changes.events.push_back(d_.events.GradingCompleted(i, record, seconds));
  if (i.state != InstanceState::kGrading) {
    // A re-grade, or a score after the instance ended otherwise (a time-out, an operator): it
    // has a score now, and its terminated event says so.
    if (!i.ending || i.ending->outcome != domain::Outcome::kGraded)
      i.ending = Ending{domain::Outcome::kGraded, StageOf(i.state), "graded_late",
                        i.ending ? "scored after the lablet ended (" + std::string(ToString(i.ending->outcome)) + ")"
                                 : "scored after the lablet ended"};
    return {};
  }
  i.ending = Ending{domain::Outcome::kGraded, "grading", "graded", "graded"};
  return Move(i, InstanceState::kStopping, "graded", actor, changes);
}

Result<EventReceiver::Outcome> EventReceiver::Apply(LabletInstance& i, const wire::CollectionCompleted& data,
                                                     const std::string&, const std::string& actor, ports::Changes& changes) {
  if (IsPast(i.state, data)) return Outcome::kStale;
  if (i.state != InstanceState::kCollecting) return WrongState(i, "assessment.collection.completed", "COLLECTING");
  if (data.collection_id || data.artifacts_uri) i.collection = CollectionRef{data.collection_id, data.artifacts_uri};
  if (auto s = Move(i, InstanceState::kGrading, "collection completed", actor, changes); !s) return s.error();
  return Outcome::kApplied;
}

Result<EventReceiver::Outcome> EventReceiver::Apply(LabletInstance& i, const wire::GradingCompleted& data,
                                                     const std::string& event_id, const std::string& actor,
                                                     ports::Changes& changes) {
  if (i.state == InstanceState::kCollecting) {
    // Arrived before collection.completed: the collection is evidently done. Collection ids it
    // happens to carry are kept (odd ones were dropped when it was decoded).
    if (data.collection_id || data.artifacts_uri) i.collection = CollectionRef{data.collection_id, data.artifacts_uri};
    if (auto s = Move(i, InstanceState::kGrading, "graded before collection was reported", actor, changes); !s)
      return s.error();
  }
  // From GRADING on, every score is kept: the first ends grading, a later one (another event
  // id) is a re-grade, until retention removes the instance.
  if (!IsGradedOrLater(i.state))
    return WrongState(i, "assessment.grading.completed", "COLLECTING, GRADING or a later state");
  if (auto s = RecordScore(i, data.score, event_id, actor, changes); !s) return s.error();
  return Outcome::kApplied;
}

Result<EventReceiver::Outcome> EventReceiver::Apply(LabletInstance& i, const wire::CollectionFailed& data,
                                                     const std::string&, const std::string& actor, ports::Changes& changes) {
  if (IsPast(i.state, data)) return Outcome::kStale;
  if (i.state != InstanceState::kCollecting) return WrongState(i, "assessment.collection.failed", "COLLECTING");
  i.last_failure = FailureRecord{"collection", data.error_code, data.error_message, data.retry_possible, d_.clock.Now()};
  ++i.collection_failures;
  if (data.retry_possible && i.collection_failures <= options_.max_collection_failures) {
    // Stays COLLECTING, with the failure on the instance; the collection reconciler requests
    // it again after a backoff. A failure past the bound stops the instance.
    i.collection_due_at = d_.clock.Now() + CollectionBackoff(i.collection_failures);
    changes.instances.push_back(i);
    return Outcome::kApplied;
  }
  std::string message = data.error_message.empty() ? "the platform reported " + data.error_code : data.error_message;
  if (data.retry_possible) message += " (" + std::to_string(i.collection_failures) + " failures, no more retries)";
  i.ending = Ending{domain::Outcome::kCollectionFailed, "collection", data.error_code, std::move(message)};
  if (auto s = Move(i, InstanceState::kStopping, "collection failed: " + data.error_code, actor, changes); !s)
    return s.error();
  return Outcome::kApplied;
}

Result<EventReceiver::Outcome> EventReceiver::Apply(LabletInstance& i, const wire::GradingFailed& data,
                                                     const std::string&, const std::string& actor, ports::Changes& changes) {
  if (IsPast(i.state, data)) return Outcome::kStale;
  if (i.state == InstanceState::kCollecting) {
    if (auto s = Move(i, InstanceState::kGrading, "grading reported before collection", actor, changes); !s)
      return s.error();
  }
  if (i.state != InstanceState::kGrading) return WrongState(i, "assessment.grading.failed", "COLLECTING or GRADING");
  i.last_failure = FailureRecord{"grading", data.error_code, data.error_message, false, d_.clock.Now()};
  i.ending = Ending{domain::Outcome::kGradingFailed, "grading", data.error_code,
                    data.error_message.empty() ? "the Grading Engine reported " + data.error_code : data.error_message};
  if (auto s = Move(i, InstanceState::kStopping, "grading failed: " + data.error_code, actor, changes); !s)
    return s.error();
  return Outcome::kApplied;
}

Result<LabletInstance> EventReceiver::RecordGradingResult(const InstanceId& id, const GradingScore& score,
                                                          const std::string& actor) {
  if (auto v = Validate(score); !v) return v.error();
  return RetryStale([&]() -> Result<LabletInstance> {
    auto instance = d_.store.GetInstance(id);
    if (!instance) return instance;
    if (!IsGradedOrLater(instance->state))
      return WrongState(*instance, "a grading result", "GRADING or a later state");
    trace::Scope scope(WorkTrace(*instance));
    RecordTrace(*instance);
    ports::Changes changes;
    if (auto s = RecordScore(*instance, score, "", actor, changes); !s) return s.error();
    changes.instances.push_back(*instance);
    if (auto s = d_.store.Commit(changes); !s) return s.error();
    ++instance->version;
    return instance;
  });
}

}  // namespace ccm::app
