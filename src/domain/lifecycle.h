#pragma once

#include <chrono>

#include "domain/definition.h"
#include "domain/instance.h"
#include "domain/worker.h"

namespace ccm::domain {

// How far from now, either way, a timeslot may lie: a booking, not a date in another era
// (years 0000 and 9999 are valid RFC 3339). Wide enough for fixed dates in tests and for
// bookings made long ahead.
inline constexpr int kTimeslotHorizonYears = 10;
inline constexpr auto kTimeslotHorizon = std::chrono::years(kTimeslotHorizonYears);

// Validates a draft against its (already resolved) definition and builds a PENDING
// instance. Errors: invalid_argument naming the field (timeslot_start and timeslot_end must
// lie within kTimeslotHorizon of `now`, the end after the start, the length within the
// definition's max_duration_minutes); failed_precondition when the definition is deleted.
Result<LabletInstance> NewInstance(const InstanceDraft& draft, const LabletDefinition& def, InstanceId id,
                                   Timestamp now, std::string actor);

// PENDING -> SCHEDULED on `worker`: reserves capacity, allocates ports, records both on the
// instance. Changes nothing on error. Errors: those of MoveTo and Worker::Allocate;
// invalid_argument if `def` is not the instance's pinned definition.
Result<InstanceChange> ScheduleInstance(LabletInstance& instance, Worker& worker, const LabletDefinition& def,
                                        Timestamp now, std::string actor);

// Any legal move of `instance`, releasing on `worker` what the new state no longer holds
// (capacity on ARCHIVED or TERMINATED, ports on TERMINATED; the worker is idle from `now`
// when nothing is left on it), and clearing the instance's CML failure count. `worker` is null
// when the instance has none. A move to STOPPING or TERMINATED of an instance whose ending the
// caller did not record records DefaultEnding. Errors: those of MoveTo.
Result<InstanceChange> MoveInstance(LabletInstance& instance, Worker* worker, InstanceState to, Timestamp now,
                                    std::string reason, std::string actor);

// The ending of an instance that leaves `from` for STOPPING or TERMINATED when no one recorded
// why (an operator's move, or an instance stopped before endings were recorded): graded when
// it has a score; (past GRADING) the reported failure when one ended collection or grading; otherwise
// cancelled, code "operator_move" (from a state before STOPPING) or "not_recorded", with
// `reason` as the message.
Ending DefaultEnding(const LabletInstance& instance, InstanceState from, const std::string& reason);

// The first move of the legal path that ends an instance: straight to TERMINATED from
// PENDING, SCHEDULED and INSTANTIATING; to STOPPING from RUNNING, COLLECTING and GRADING;
// then STOPPED, ARCHIVED, TERMINATED. nullopt for a TERMINATED instance.
std::optional<InstanceState> NextStepToTermination(InstanceState s);

}  // namespace ccm::domain
