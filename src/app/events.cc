#include "app/events.h"

#include <nlohmann/json.hpp>

#include "app/tracing.h"
#include "cloudevents/json_format.h"
#include "domain/lifecycle.h"
#include "wire/event_data.h"

namespace ccm::app {

using nlohmann::json;
using namespace ccm::domain;

namespace {

// The event's envelope around `data` (built by wire/event_data.h); its traceparent (and
// tracestate) extension is a child span of the calling thread's current trace, else of
// `instance`'s, else absent.
ports::OutboxEvent Make(ports::IdGenerator& ids, const std::string& source, const std::string& schema_base, std::string_view type,
                 const std::string& subject, Timestamp time, json data, const LabletInstance* instance = nullptr) {
  ports::OutboxEvent e;
  e.id = ids.NewId();
  e.subject = subject;
  e.type = std::string(type);
  e.time = time;
  cloudevents::CloudEvent ce;
  ce.id = e.id;
  ce.source = source;
  ce.type = e.type;
  ce.subject = subject;
  ce.time = FormatRfc3339(time);
  ce.datacontenttype = "application/json";
  if (!schema_base.empty())
    ce.dataschema = schema_base + "/schemas/" + e.type + ".v" + std::to_string(DataSchemaVersion(e.type)) + ".json";
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

}  // namespace

int DataSchemaVersion(std::string_view type) {
  // v2 adds outcome and failure (stopping, terminated) and revision (grading.completed).
  for (std::string_view v2 : {EventTypeOnEntering(InstanceState::kStopping), EventTypeOnEntering(InstanceState::kTerminated),
                              kGradingCompletedEventType})
    if (type == v2) return 2;
  return 1;
}

std::string EventFactory::SchemaBase() {
  std::lock_guard lock(mu_);
  return schema_base_;
}

ports::OutboxEvent EventFactory::InstanceCreated(const LabletInstance& i) {
  return Make(ids_, source_, SchemaBase(), EventTypeOnEntering(InstanceState::kPending), i.id.value, i.created_at,
              wire::InstanceCreatedData(i), &i);
}

ports::OutboxEvent EventFactory::InstanceMoved(const LabletInstance& i, const InstanceChange& change,
                                        std::optional<std::string_view> worker_hostname, const LabletDefinition* def,
                                        std::string_view collection_reason) {
  return Make(ids_, source_, SchemaBase(), EventTypeOnEntering(change.to), i.id.value, change.at,
              wire::InstanceMovedData(i, change, worker_hostname, def, collection_reason), &i);
}

ports::OutboxEvent EventFactory::WorkerMoved(const Worker& w, const WorkerChange& change,
                                      std::optional<Timestamp> estimated_drain_completion) {
  return Make(ids_, source_, SchemaBase(), EventTypeOnEntering(change.to), w.id.value, change.at,
              wire::WorkerMovedData(w, change, estimated_drain_completion));
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

ScalingDecision DecisionOf(const wire::ScalingData& data) {
  struct Of {
    ScalingDecision operator()(const wire::ScaleUpRequested&) const { return ScalingDecision::kUpRequested; }
    ScalingDecision operator()(const wire::ScaleUpCompleted&) const { return ScalingDecision::kUpCompleted; }
    ScalingDecision operator()(const wire::ScaleDownRequested&) const { return ScalingDecision::kDownRequested; }
    ScalingDecision operator()(const wire::ScaleDownCompleted&) const { return ScalingDecision::kDownCompleted; }
  };
  return std::visit(Of{}, data);
}

ports::OutboxEvent EventFactory::GradingCompleted(const LabletInstance& i, const ScoreRecord& record,
                                           double grading_duration_seconds) {
  return Make(ids_, source_, SchemaBase(), kGradingCompletedEventType, i.id.value, record.at,
              wire::GradingCompletedData(i, record, grading_duration_seconds), &i);
}

ports::OutboxEvent EventFactory::PodAssigned(const LabletInstance& i, Timestamp at) {
  return Make(ids_, source_, SchemaBase(), kPodAssignedEventType, i.id.value, at, wire::PodAssignedData(i, at), &i);
}

ports::OutboxEvent EventFactory::Scaling(const wire::ScalingData& data, const std::string& subject, Timestamp at) {
  return Make(ids_, source_, SchemaBase(), EventType(DecisionOf(data)), subject, at, wire::ToJson(data, at));
}

std::vector<ports::OutboxEvent> EventFactory::WorkerCreated(const Worker& w) {
  std::vector<ports::OutboxEvent> out;
  out.push_back(Make(ids_, source_, SchemaBase(), EventTypeOnEntering(WorkerState::kPending), w.id.value, w.created_at,
                     wire::WorkerCreatedData(w)));
  for (const auto& change : w.state_history) out.push_back(WorkerMoved(w, change));
  return out;
}

}  // namespace ccm::app
