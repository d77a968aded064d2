#include "app/events.h"

#include "app/json_codec.h"
#include "app/tracing.h"
#include "cloudevents/json_format.h"
#include "domain/lifecycle.h"

namespace ccm::app {

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

int DataSchemaVersion(std::string_view type) {
  // v2 adds outcome and failure (stopping, terminated) and revision (grading.completed).
  for (std::string_view v2 : {EventTypeOnEntering(InstanceState::kStopping), EventTypeOnEntering(InstanceState::kTerminated),
                              kGradingCompletedEventType})
    if (type == v2) return 2;
  return 1;
}

ports::OutboxEvent EventFactory::Make(std::string_view type, const std::string& subject, Timestamp time, json data,
                               const LabletInstance* instance) {
  ports::OutboxEvent e;
  e.id = ids_.NewId();
  e.subject = subject;
  e.type = std::string(type);
  e.time = time;
  cloudevents::CloudEvent ce;
  ce.id = e.id;
  ce.source = source_;
  ce.type = e.type;
  ce.subject = subject;
  ce.time = FormatRfc3339(time);
  ce.datacontenttype = "application/json";
  std::string base;
  {
    std::lock_guard lock(mu_);
    base = schema_base_;
  }
  if (!base.empty()) ce.dataschema = base + "/schemas/" + e.type + ".v" + std::to_string(DataSchemaVersion(e.type)) + ".json";
  ce.data = std::move(data);
  // Distributed Tracing extension: a span of its own, child of the work that publishes it.
  std::optional<trace::TraceContext> parent;
  if (const trace::TraceContext* current = trace::Current()) parent = *current;
  else if (instance) parent = TraceOf(*instance);
  if (parent) {
    const trace::TraceContext span = parent->Child();
    ce.extensions["traceparent"] = span.Format();
    if (!span.state.empty()) ce.extensions["tracestate"] = span.state;
  }
  e.json = cloudevents::ToJsonString(ce);
  return e;
}

ports::OutboxEvent EventFactory::InstanceCreated(const LabletInstance& i) {
  json data = InstanceCommon(i, std::nullopt, i.created_at);
  data["owner_id"] = i.owner_id;
  data["reservation_id"] = i.reservation_id ? json(*i.reservation_id) : json(nullptr);
  data["timeslot_start"] = FormatRfc3339(i.timeslot_start);
  data["timeslot_end"] = FormatRfc3339(i.timeslot_end);
  data["created_at"] = FormatRfc3339(i.created_at);
  return Make(EventTypeOnEntering(InstanceState::kPending), i.id.value, i.created_at, std::move(data), &i);
}

ports::OutboxEvent EventFactory::InstanceMoved(const LabletInstance& i, const InstanceChange& change, const Worker* worker,
                                        const LabletDefinition* def, const json& extra) {
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
      data["worker_hostname"] = worker ? json(worker->hostname) : json(nullptr);
      data["cml_lab_id"] = i.cml_lab_id ? json(*i.cml_lab_id) : json(nullptr);
      data["allocated_ports"] = ToJson(i.allocated_ports);
      data["started_at"] = OptionalTime(i.started_at);
      data["pod_assigned"] = i.pod_assigned;
      break;
    case InstanceState::kCollecting:
      data["triggered_by"] = change.actor;
      data["collection_reason"] = "manual";
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
  for (const auto& [k, v] : extra.items()) data[k] = v;
  return Make(EventTypeOnEntering(change.to), i.id.value, change.at, std::move(data), &i);
}

ports::OutboxEvent EventFactory::WorkerMoved(const Worker& w, const WorkerChange& change, const json& extra) {
  json data = {{"worker_id", w.id.value},
               {"name", w.name},
               {"previous_state", ToString(change.from)},
               {"new_state", ToString(change.to)},
               {"reason", change.reason},
               {"timestamp", FormatRfc3339(change.at)}};
  if (change.to == WorkerState::kDraining) data["running_instances_count"] = w.ActiveInstances();
  for (const auto& [k, v] : extra.items()) data[k] = v;
  return Make(EventTypeOnEntering(change.to), w.id.value, change.at, std::move(data));
}

std::string_view EventType(ScalingDecision d) {
  switch (d) {
    case ScalingDecision::kUpRequested: return "ccm.scaling.up.requested";
    case ScalingDecision::kUpCompleted: return "ccm.scaling.up.completed";
    case ScalingDecision::kDownRequested: return "ccm.scaling.down.requested";
    case ScalingDecision::kDownCompleted: return "ccm.scaling.down.completed";
  }
  return "ccm.scaling.up.requested";
}

ports::OutboxEvent EventFactory::GradingCompleted(const LabletInstance& i, const ScoreRecord& record,
                                           double grading_duration_seconds) {
  json data = InstanceCommon(i, i.state, record.at);
  data["score"] = ToJson(record.score);
  data["grading_duration_seconds"] = grading_duration_seconds;
  data["revision"] = record.revision;
  data["score_event_id"] = record.event_id.empty() ? json(nullptr) : json(record.event_id);
  return Make(kGradingCompletedEventType, i.id.value, record.at, std::move(data), &i);
}

ports::OutboxEvent EventFactory::PodAssigned(const LabletInstance& i, Timestamp at) {
  json data = InstanceCommon(i, i.state, at);
  data["session_id"] = i.assessment ? json(i.assessment->session_id) : json(nullptr);
  data["part_id"] = i.assessment ? json(i.assessment->part_id) : json(nullptr);
  data["failed_attempts"] = i.pod_failures;
  return Make(kPodAssignedEventType, i.id.value, at, std::move(data), &i);
}

ports::OutboxEvent EventFactory::Scaling(ScalingDecision decision, const std::string& subject, Timestamp at, json data) {
  data["timestamp"] = FormatRfc3339(at);
  return Make(EventType(decision), subject, at, std::move(data));
}

std::vector<ports::OutboxEvent> EventFactory::WorkerCreated(const Worker& w) {
  std::vector<ports::OutboxEvent> out;
  json data = {{"worker_id", w.id.value},
               {"name", w.name},
               {"previous_state", nullptr},
               {"new_state", "PENDING"},
               {"hostname", w.hostname},
               {"license_type", ToString(w.license_type)},
               {"timestamp", FormatRfc3339(w.created_at)}};
  out.push_back(Make(EventTypeOnEntering(WorkerState::kPending), w.id.value, w.created_at, std::move(data)));
  for (const auto& change : w.state_history) out.push_back(WorkerMoved(w, change));
  return out;
}

}  // namespace ccm::app
