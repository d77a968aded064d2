#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "domain/result.h"
#include "domain/states.h"
#include "domain/types.h"

namespace ccm::domain {

// Where the Grading Engine expects this instance's pod.
struct AssessmentRef {
  std::string session_id;
  std::string part_id;
  bool operator==(const AssessmentRef&) const = default;
};

// What the Assessment Platform collected; each part is known only when its
// collection.completed named it.
struct CollectionRef {
  std::optional<std::string> collection_id;
  std::optional<std::string> artifacts_uri;
  bool operator==(const CollectionRef&) const = default;
};

// One graded criterion.
struct CriterionScore {
  std::string criterion;
  double points = 0;
  double max = 0;
  bool operator==(const CriterionScore&) const = default;
};

// The normalized grading result.
struct GradingScore {
  double total = 0;
  double max = 0;
  std::optional<bool> passed;
  std::vector<CriterionScore> breakdown;
  bool operator==(const GradingScore&) const = default;
};
// 0 <= total <= max, max > 0, 0 <= points <= max for each criterion. Errors: invalid_argument
// naming the offending field ("score.total", "score.breakdown[2].points").
Status Validate(const GradingScore& score);

using InstanceChange = StateChange<InstanceState>;

// One score an instance received. A platform that grades again (an appeal, a fixed rubric)
// adds one; every one is kept, and the latest is the instance's score.
struct ScoreRecord {
  int revision = 1;      // 1 for the first score, then 2, 3, ... in the order they arrived
  GradingScore score;
  std::string event_id;  // id of the assessment event that carried it; empty for an operator's
  std::string actor;     // "event:<source>" or the operator
  Timestamp at;          // when ccm recorded it
  bool operator==(const ScoreRecord&) const = default;
};

// How a lablet ended, as its stopping and terminated events report it.
enum class Outcome {
  kGraded,               // it has a score
  kNotAssessed,          // it was never to be assessed (no assessment ids, no platform)
  kCollectionFailed,     // the platform reported the collection failed, or refused to collect
  kGradingFailed,        // the Grading Engine reported grading failed
  kTimedOut,             // COLLECTING or GRADING outlasted its time-out
  kInstantiationFailed,  // the lab could not be started on CML
  kCancelled,            // terminated or stopped by an operator
};
std::string_view ToString(Outcome o);
// The outcome ToString names; nullopt for any other text.
std::optional<Outcome> ParseOutcome(std::string_view text);

// Why a lablet ended, recorded where it is decided (the move that starts its end). For any
// outcome but kGraded, stage, code and message form the `failure` of its events.
struct Ending {
  Outcome outcome = Outcome::kGraded;
  // What the lablet was doing: "scheduling", "instantiation", "running", "collection",
  // "grading", or "stopping" (a cause not recorded when the instance stopped).
  std::string stage;
  std::string code;     // machine-readable: ccm's snake_case code, or the platform's error_code
  std::string message;  // for people
  bool operator==(const Ending&) const = default;
};
// The stage an instance in `s` is at (see Ending::stage).
std::string StageOf(InstanceState s);

// A failure the Assessment Platform or the Grading Engine reported for an instance.
struct FailureRecord {
  std::string stage;  // "collection" or "grading"
  std::string error_code;
  std::string error_message;
  bool retry_possible = false;
  Timestamp at;
  bool operator==(const FailureRecord&) const = default;
};

// "instance is RUNNING and cannot move to PENDING; allowed: COLLECTING, STOPPING".
std::string IllegalInstanceMove(InstanceState from, InstanceState to);
std::string IllegalWorkerMove(WorkerState from, WorkerState to);

// One lab topology instantiated for one candidate and one timeslot.
struct LabletInstance {
  InstanceId id;
  DefinitionId definition_id;
  std::string definition_version;  // pinned at creation
  std::string owner_id;
  std::optional<std::string> reservation_id;
  std::optional<AssessmentRef> assessment;
  Timestamp timeslot_start;
  Timestamp timeslot_end;
  InstanceState state = InstanceState::kPending;
  std::vector<InstanceChange> state_history;
  std::optional<WorkerId> worker_id;
  PortMap allocated_ports;
  std::optional<std::string> cml_lab_id;
  std::optional<CollectionRef> collection;
  std::optional<GradingScore> grading_score;  // the latest of `scores`
  std::vector<ScoreRecord> scores;            // every score received, oldest first
  // Why the lablet ended; set on the move to STOPPING (or straight to TERMINATED), and to
  // graded when a score arrives later.
  std::optional<Ending> ending;
  bool pod_assigned = false;
  std::string pod_error;  // why the pod could not be assigned; empty otherwise
  // While set, the pod is to be assigned on the Grading Engine at or after this time (on
  // entering RUNNING, after a failed attempt, on an operator's request); cleared once the
  // engine accepts it or refuses it for good.
  std::optional<Timestamp> pod_due_at;
  int pod_failures = 0;  // failed assignment attempts in a row (for backoff)
  std::optional<FailureRecord> last_failure;  // the latest collection or grading failure
  int collection_failures = 0;                 // collection failures reported so far
  // While set, the collection is to be requested from the Assessment Platform at or after
  // this time (on entering COLLECTING, after a failed request, after a retryable failure).
  std::optional<Timestamp> collection_due_at;
  int collection_request_failures = 0;    // failed requests in a row (for backoff)
  std::string collection_request_error;   // why the last request failed; empty once one succeeds
  std::optional<Timestamp> collection_requested_at;  // when the platform last accepted a request
  // The platform refused the collection request for good (a 4xx other than 408 and 429): no
  // more requests; the instance leaves COLLECTING by its time-out.
  bool collection_refused = false;
  bool termination_requested = false;  // DELETE was called; the lifecycle ends in TERMINATED
  // Failed steps on CML (import, start, stop, wipe, delete) in a row, why the last one failed,
  // and when the next attempt is due; reset by each state change.
  int cml_failures = 0;
  std::string cml_error;
  std::optional<Timestamp> cml_retry_at;
  Timestamp created_at;
  std::optional<Timestamp> scheduled_at;
  std::optional<Timestamp> started_at;
  std::optional<Timestamp> terminated_at;
  // The W3C trace context the lablet's work joins (app/tracing.h): a `traceparent` value
  // (trace id and the span that parents its later work) and its `tracestate`. Empty for a
  // lablet stored before traces were kept, until ccm next works on it.
  std::string traceparent;
  std::string tracestate;
  std::int64_t version = 0;  // optimistic concurrency: bumped by the store on every write

  // Moves to `to` if the state machine allows it, appending to state_history and setting
  // the matching timestamp. Errors: conflict naming the current state and the allowed moves.
  // Does not touch the worker: see MoveInstance in lifecycle.h.
  Result<InstanceChange> MoveTo(InstanceState to, Timestamp at, std::string reason, std::string actor);

  // Keeps `score` as the next revision and makes it the instance's score. Validates nothing
  // (see Validate). Returns the record added.
  const ScoreRecord& AddScore(GradingScore score, std::string event_id, std::string actor, Timestamp at);

  // When it entered its current state: the last entry of its history, else its creation.
  Timestamp EnteredAt() const { return state_history.empty() ? created_at : state_history.back().at; }
};

// What a caller supplies to create an instance.
struct InstanceDraft {
  DefinitionId definition_id;
  std::optional<std::string> definition_version;  // latest when absent
  std::string owner_id;
  std::optional<std::string> reservation_id;
  std::optional<AssessmentRef> assessment;
  Timestamp timeslot_start;
  Timestamp timeslot_end;
};

}  // namespace ccm::domain
