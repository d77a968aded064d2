#include "domain/lifecycle.h"

#include <algorithm>
#include <utility>

#include "domain/time.h"

namespace ccm::domain {

Result<LabletInstance> NewInstance(const InstanceDraft& draft, const LabletDefinition& def, InstanceId id,
                                   Timestamp now, std::string actor) {
  if (def.deleted)
    return Error::FailedPrecondition("definition " + def.id.value + " is deleted and takes no new instances",
                                     "definition_id");
  if (draft.owner_id.empty()) return Error::InvalidArgument("owner_id must not be empty", "owner_id");
  const std::pair<Timestamp, const char*> timeslot[] = {{draft.timeslot_start, "timeslot_start"},
                                                        {draft.timeslot_end, "timeslot_end"}};
  for (const auto& [t, field] : timeslot)
    if (t < now - kTimeslotHorizon || t > now + kTimeslotHorizon)
      return Error::InvalidArgument(std::string(field) + " must lie within " + std::to_string(kTimeslotHorizonYears) +
                                        " years of now (" + FormatRfc3339(now) + "), not " + FormatRfc3339(t),
                                    field);
  if (draft.timeslot_end <= draft.timeslot_start)
    return Error::InvalidArgument("timeslot_end must be after timeslot_start", "timeslot_end");
  const auto minutes = std::chrono::duration_cast<std::chrono::minutes>(draft.timeslot_end - draft.timeslot_start);
  if (minutes.count() > def.max_duration_minutes)
    return Error::InvalidArgument("timeslot is longer than the definition's max_duration_minutes (" +
                                      std::to_string(def.max_duration_minutes) + ")",
                                  "timeslot_end");
  if (draft.reservation_id && draft.reservation_id->empty())
    return Error::InvalidArgument("reservation_id must not be empty when given", "reservation_id");
  if (draft.assessment) {
    if (draft.assessment->session_id.empty())
      return Error::InvalidArgument("session_id must not be empty", "assessment.session_id");
    if (draft.assessment->part_id.empty())
      return Error::InvalidArgument("part_id must not be empty", "assessment.part_id");
  }

  LabletInstance i;
  i.id = std::move(id);
  i.definition_id = def.id;
  i.definition_version = def.version;
  i.owner_id = draft.owner_id;
  i.reservation_id = draft.reservation_id;
  i.assessment = draft.assessment;
  i.timeslot_start = draft.timeslot_start;
  i.timeslot_end = draft.timeslot_end;
  i.state = InstanceState::kPending;
  i.created_at = now;
  (void)actor;  // PENDING is the initial state: no move to record, the pending event says who.
  return i;
}

Result<InstanceChange> ScheduleInstance(LabletInstance& instance, Worker& worker, const LabletDefinition& def,
                                        Timestamp now, std::string actor) {
  if (def.id != instance.definition_id || def.version != instance.definition_version)
    return Error::InvalidArgument("definition does not match the instance's pinned definition");
  if (!IsLegalMove(instance.state, InstanceState::kScheduled))
    return Error::Conflict(IllegalInstanceMove(instance.state, InstanceState::kScheduled), "state");
  auto ports = worker.Allocate(instance.id, def);
  if (!ports) return ports.error();
  instance.worker_id = worker.id;
  instance.allocated_ports = std::move(ports.value());
  return instance.MoveTo(InstanceState::kScheduled, now, "scheduled on worker " + worker.id.value, std::move(actor));
}

Ending DefaultEnding(const LabletInstance& instance, InstanceState from, const std::string& reason) {
  if (instance.grading_score) return Ending{Outcome::kGraded, StageOf(from), "graded", reason};
  const bool before_stopping = static_cast<int>(from) < static_cast<int>(InstanceState::kStopping);
  // An instance that stopped before endings were recorded, after a reported failure.
  if (const auto& f = instance.last_failure; !before_stopping && f && (f->stage == "collection" || f->stage == "grading"))
    return Ending{f->stage == "collection" ? Outcome::kCollectionFailed : Outcome::kGradingFailed, f->stage,
                  f->error_code, f->error_message.empty() ? reason : f->error_message};
  return Ending{Outcome::kCancelled, StageOf(from), before_stopping ? "operator_move" : "not_recorded", reason};
}

Result<InstanceChange> MoveInstance(LabletInstance& instance, Worker* worker, InstanceState to, Timestamp now,
                                    std::string reason, std::string actor) {
  const InstanceState from = instance.state;
  if ((to == InstanceState::kStopping || to == InstanceState::kTerminated) && !instance.ending &&
      IsLegalMove(from, to))
    instance.ending = DefaultEnding(instance, from, reason);
  auto change = instance.MoveTo(to, now, std::move(reason), std::move(actor));
  if (!change) return change;
  instance.cml_failures = 0;
  instance.cml_error.clear();
  instance.cml_retry_at.reset();
  if (worker) {
    if (!HoldsCapacity(to)) worker->ReleaseCapacity(instance.id);
    if (!HoldsPorts(to)) worker->ReleasePorts(instance.id);
    if (worker->ActiveInstances() == 0) worker->idle_since = now;
  }
  return change;
}

std::optional<InstanceState> NextStepToTermination(InstanceState s) {
  switch (s) {
    case InstanceState::kPending:
    case InstanceState::kScheduled:
    case InstanceState::kInstantiating:
      return InstanceState::kTerminated;
    case InstanceState::kRunning:
    case InstanceState::kCollecting:
    case InstanceState::kGrading:
      return InstanceState::kStopping;
    case InstanceState::kStopping:
      return InstanceState::kStopped;
    case InstanceState::kStopped:
      return InstanceState::kArchived;
    case InstanceState::kArchived:
      return InstanceState::kTerminated;
    case InstanceState::kTerminated:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace ccm::domain
