#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "domain/definition.h"
#include "domain/instance.h"
#include "domain/lifecycle.h"
#include "domain/worker.h"
#include "wire/scaling.h"

// The data of every event ccm publishes, one function per shape, with the fields SYSTEM.md
// and docs/schemas list per type. app/events.h wraps them in CloudEvents; nothing else builds
// event data.
namespace ccm::wire {

// ccm.lablet.instance.pending, for a new instance.
nlohmann::json InstanceCreatedData(const domain::LabletInstance& instance);
// The data of `change`, which `instance` (as it is after the move) just made.
// `worker_hostname` is its worker's hostname if known (RUNNING names it), `def` its definition
// (INSTANTIATING names its lab_yaml_hash); either may be absent, then those fields are null.
// `collection_reason` is what a move to COLLECTING says (its `triggered_by` is the change's
// actor).
nlohmann::json InstanceMovedData(const domain::LabletInstance& instance, const domain::InstanceChange& change,
                                 std::optional<std::string_view> worker_hostname, const domain::LabletDefinition* def,
                                 std::string_view collection_reason = "manual");
// ccm.lablet.instance.grading.completed, for `record`, a score the instance just received.
nlohmann::json GradingCompletedData(const domain::LabletInstance& instance, const domain::ScoreRecord& record,
                                    double grading_duration_seconds);
// ccm.lablet.instance.pod.assigned, at `at`, after instance.pod_failures failed attempts.
nlohmann::json PodAssignedData(const domain::LabletInstance& instance, Timestamp at);
// ccm.worker.pending, for a new worker.
nlohmann::json WorkerCreatedData(const domain::Worker& worker);
// The data of `change`, which `worker` just made. A move to DRAINING carries
// running_instances_count and `estimated_drain_completion` (which its schema requires).
nlohmann::json WorkerMovedData(const domain::Worker& worker, const domain::WorkerChange& change,
                               std::optional<Timestamp> estimated_drain_completion = std::nullopt);
// A scaling decision made at `at`.
nlohmann::json ToJson(const ScalingData& data, Timestamp at);

}  // namespace ccm::wire
