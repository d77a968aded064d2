#pragma once

#include "domain/definition.h"
#include "domain/instance.h"
#include "domain/worker.h"

namespace ccm::domain {

// Validates a draft against its (already resolved) definition and builds a PENDING
// instance. Errors: invalid_argument naming the field; failed_precondition when the
// definition is deleted.
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
// when the instance has none. Errors: those of MoveTo.
Result<InstanceChange> MoveInstance(LabletInstance& instance, Worker* worker, InstanceState to, Timestamp now,
                                    std::string reason, std::string actor);

// The first move of the legal path that ends an instance: straight to TERMINATED from
// PENDING, SCHEDULED and INSTANTIATING; to STOPPING from RUNNING, COLLECTING and GRADING;
// then STOPPED, ARCHIVED, TERMINATED. nullopt for a TERMINATED instance.
std::optional<InstanceState> NextStepToTermination(InstanceState s);

}  // namespace ccm::domain
