#include "wire/event_data.h"

#include <chrono>

#include "wire/aggregates.h"

namespace ccm::wire {

using nlohmann::json;
using namespace ccm::domain;

namespace {

json InstanceCommon(const LabletInstance& i, std::optional<InstanceState> previous, Timestamp at) {
  return {{"instance_id", i.id.value},
          {"definition_id", i.definition_id.value},
          {"definition_version", i.definition_version},
          {"previous_state", previous ? json(ToString(*previous)) : json(nullptr)},
          {"new_state", ToString(i.state)},
          {"worker_id", i.worker_id ? json(i.worker_id->value) : json(nullptr)},
          {"timestamp", FormatRfc3339(at)}};
}

// How a lablet ended: `outcome`, and `failure` unless it was graded.
void AddEnding(json& data, const LabletInstance& i, const InstanceChange& change) {
  const Ending ending = i.ending ? *i.ending : DefaultEnding(i, change.from, change.reason);
  data["outcome"] = ToString(ending.outcome);
  data["failure"] = ending.outcome == Outcome::kGraded
                        ? json(nullptr)
                        : json{{"stage", ending.stage}, {"code", ending.code}, {"message", ending.message}};
}

}  // namespace

json InstanceCreatedData(const LabletInstance& i) {
  json data = InstanceCommon(i, std::nullopt, i.created_at);
  data["owner_id"] = i.owner_id;
  data["reservation_id"] = i.reservation_id ? json(*i.reservation_id) : json(nullptr);
  data["timeslot_start"] = FormatRfc3339(i.timeslot_start);
  data["timeslot_end"] = FormatRfc3339(i.timeslot_end);
  data["created_at"] = FormatRfc3339(i.created_at);
  return data;
}

json InstanceMovedData(const LabletInstance& i, const InstanceChange& change, std::optional<std::string_view> worker_hostname,
                       const LabletDefinition* def, std::string_view collection_reason) {
  json data = InstanceCommon(i, change.from, change.at);
  switch (change.to) {
    case InstanceState::kScheduled:
      data["allocated_ports"] = ToJson(i.allocated_ports);
      break;
    case InstanceState::kInstantiating:
      data["allocated_ports"] = ToJson(i.allocated_ports);
      data["lab_yaml_hash"] = def ? json(def->lab_yaml_hash) : json(nullptr);
      break;
    case InstanceState::kRunning:
      data["worker_hostname"] = worker_hostname ? json(*worker_hostname) : json(nullptr);
      data["cml_lab_id"] = i.cml_lab_id ? json(*i.cml_lab_id) : json(nullptr);
      data["allocated_ports"] = ToJson(i.allocated_ports);
      data["started_at"] = OptionalTime(i.started_at);
      data["pod_assigned"] = i.pod_assigned;
      break;
    case InstanceState::kCollecting:
      data["triggered_by"] = change.actor;
      data["collection_reason"] = collection_reason;
      break;
    case InstanceState::kGrading:
      data["collection_id"] = i.collection && i.collection->collection_id ? json(*i.collection->collection_id) : json(nullptr);
      break;
    case InstanceState::kStopping:
      AddEnding(data, i, change);
      break;
    case InstanceState::kTerminated: {
      AddEnding(data, i, change);
      data["final_state"] = ToString(change.from);
      data["grading_score"] = i.grading_score ? ToJson(*i.grading_score) : json(nullptr);
      long minutes = 0;
      if (i.started_at && i.terminated_at)
        minutes = std::chrono::duration_cast<std::chrono::minutes>(*i.terminated_at - *i.started_at).count();
      data["duration_minutes"] = minutes;
      break;
    }
    default:
      break;
  }
  data["reason"] = change.reason;
  return data;
}

json GradingCompletedData(const LabletInstance& i, const ScoreRecord& record, double grading_duration_seconds) {
  json data = InstanceCommon(i, i.state, record.at);
  data["score"] = ToJson(record.score);
  data["grading_duration_seconds"] = grading_duration_seconds;
  data["revision"] = record.revision;
  data["score_event_id"] = record.event_id.empty() ? json(nullptr) : json(record.event_id);
  return data;
}

json PodAssignedData(const LabletInstance& i, Timestamp at) {
  json data = InstanceCommon(i, i.state, at);
  data["session_id"] = i.assessment ? json(i.assessment->session_id) : json(nullptr);
  data["part_id"] = i.assessment ? json(i.assessment->part_id) : json(nullptr);
  data["failed_attempts"] = i.pod_failures;
  return data;
}

json WorkerCreatedData(const Worker& w) {
  return {{"worker_id", w.id.value},
          {"name", w.name},
          {"previous_state", nullptr},
          {"new_state", "PENDING"},
          {"hostname", w.hostname},
          {"license_type", ToString(w.license_type)},
          {"timestamp", FormatRfc3339(w.created_at)}};
}

json WorkerMovedData(const Worker& w, const WorkerChange& change, std::optional<Timestamp> estimated_drain_completion) {
  json data = {{"worker_id", w.id.value},
               {"name", w.name},
               {"previous_state", ToString(change.from)},
               {"new_state", ToString(change.to)},
               {"reason", change.reason},
               {"timestamp", FormatRfc3339(change.at)}};
  if (change.to == WorkerState::kDraining) data["running_instances_count"] = w.ActiveInstances();
  if (estimated_drain_completion) data["estimated_drain_completion"] = FormatRfc3339(*estimated_drain_completion);
  return data;
}

namespace {

json ScalingFields(const ScaleUpRequested& d) {
  return {{"worker_id", d.worker_id},
          {"template", d.template_name},
          {"reason", d.reason},
          {"pending_instances", d.pending_instances}};
}
json ScalingFields(const ScaleUpCompleted& d) {
  return {{"worker_id", d.worker_id}, {"template", d.template_name}, {"hostname", d.hostname}};
}
json ScalingFields(const ScaleDownRequested& d) { return {{"worker_id", d.worker_id}, {"reason", d.reason}}; }
json ScalingFields(const ScaleDownCompleted& d) { return {{"worker_id", d.worker_id}}; }

}  // namespace

json ToJson(const ScalingData& data, Timestamp at) {
  json out = std::visit([](const auto& d) { return ScalingFields(d); }, data);
  out["timestamp"] = FormatRfc3339(at);
  return out;
}

}  // namespace ccm::wire
