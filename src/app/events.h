#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "domain/definition.h"
#include "domain/instance.h"
#include "domain/worker.h"
#include "ports/clock.h"
#include "ports/outbox.h"
#include "wire/scaling.h"

namespace ccm::app {

// The four scaling decisions and their event types.
enum class ScalingDecision {
  kUpRequested,    // ccm.scaling.up.requested: pending instances fit no worker
  kUpCompleted,    // ccm.scaling.up.completed: the requested worker is RUNNING
  kDownRequested,  // ccm.scaling.down.requested: an idle worker is to be drained
  kDownCompleted,  // ccm.scaling.down.completed: the drained worker is STOPPED
};
std::string_view EventType(ScalingDecision d);
// The decision whose data `data` is.
ScalingDecision DecisionOf(const wire::ScalingData& data);

// The version of the JSON Schema of `type`'s data that ccm publishes now: the N of the
// `{type}.vN.json` its dataschema names (docs/schemas). 2 for stopping, terminated and
// grading.completed, 1 for every other type.
int DataSchemaVersion(std::string_view type);

// Builds the outbox rows that report state changes: one CloudEvent per state entered, with
// the data fields SYSTEM.md lists per type, encoded by wire/event_data.h. This is the one
// place that maps a move to its event; use cases never build events by hand. Each event carries the CloudEvents Distributed
// Tracing extension (`traceparent`, and `tracestate` when known) of a new span whose parent is
// the calling thread's trace (trace::Current()), or for a lablet's event with no such trace,
// the lablet's own (app/tracing.h). Thread-safe if the IdGenerator is.
class EventFactory {
 public:
  // With `schema_base` (an absolute URL, e.g. ccm's own), each event's dataschema is
  // `{schema_base}/schemas/{type}.v{DataSchemaVersion(type)}.json`, the JSON Schema of its
  // data that ccm serves.
  EventFactory(ports::IdGenerator& ids, std::string source, std::string schema_base = "")
      : ids_(ids), source_(std::move(source)), schema_base_(std::move(schema_base)) {}

  // `ccm.lablet.instance.pending` for a new instance.
  ports::OutboxEvent InstanceCreated(const domain::LabletInstance& instance);
  // The event of `change`, which `instance` (as it is after the move) just made.
  // `worker_hostname` is its worker's hostname if known (a move to RUNNING names it); `def` its
  // definition (needed for provisioning.started); `collection_reason` is what a move to
  // COLLECTING says (manual, timeslot_end, assessment_request), its `triggered_by` being the
  // change's actor.
  ports::OutboxEvent InstanceMoved(const domain::LabletInstance& instance, const domain::InstanceChange& change,
                            std::optional<std::string_view> worker_hostname, const domain::LabletDefinition* def,
                            std::string_view collection_reason = "manual");
  // The event of each entry of a new worker's history, or `ccm.worker.pending` if it has none.
  std::vector<ports::OutboxEvent> WorkerCreated(const domain::Worker& worker);
  // The event of `change`, which `worker` just made; a move to DRAINING gives when the drain
  // is expected to end (its schema requires it).
  ports::OutboxEvent WorkerMoved(const domain::Worker& worker, const domain::WorkerChange& change,
                          std::optional<Timestamp> estimated_drain_completion = std::nullopt);
  // `ccm.lablet.instance.grading.completed` for `record`, a score the instance just received:
  // its first (written just before the move to STOPPING), or a later one (a re-grade, or a
  // score after a time-out) with its revision, in whatever state the instance is.
  ports::OutboxEvent GradingCompleted(const domain::LabletInstance& instance, const domain::ScoreRecord& record,
                               double grading_duration_seconds);
  // `ccm.lablet.instance.pod.assigned`: the Grading Engine took the RUNNING instance's pod
  // (after `failures` failed attempts).
  ports::OutboxEvent PodAssigned(const domain::LabletInstance& instance, Timestamp at);
  // A scaling decision about `subject` (the worker's id), made at `at`; its type is
  // EventType(DecisionOf(data)).
  ports::OutboxEvent Scaling(const wire::ScalingData& data, const std::string& subject, Timestamp at);

  const std::string& source() const { return source_; }
  // Replaces the base of the dataschema URIs (when ccm's address is known only once it listens).
  void SetSchemaBase(std::string base) {
    std::lock_guard lock(mu_);
    schema_base_ = std::move(base);
  }

 private:
  // The base of the dataschema URIs, read under the lock.
  std::string SchemaBase();

  ports::IdGenerator& ids_;
  std::string source_;
  std::mutex mu_;
  std::string schema_base_;  // guarded by mu_
};

}  // namespace ccm::app
