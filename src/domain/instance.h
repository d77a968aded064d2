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

// What the Assessment Platform collected.
struct CollectionRef {
  std::string collection_id;
  std::string artifacts_uri;
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
  std::optional<GradingScore> grading_score;
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
  std::int64_t version = 0;  // optimistic concurrency: bumped by the store on every write

  // Moves to `to` if the state machine allows it, appending to state_history and setting
  // the matching timestamp. Errors: conflict naming the current state and the allowed moves.
  // Does not touch the worker: see MoveInstance in lifecycle.h.
  Result<InstanceChange> MoveTo(InstanceState to, Timestamp at, std::string reason, std::string actor);
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
