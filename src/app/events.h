#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "app/ports.h"

namespace ccm::app {

// Builds the outbox rows that report state changes: one CloudEvent per state entered, with
// the data fields SYSTEM.md lists per type. This is the one place that maps a move to its
// event; use cases never build events by hand. Thread-safe if the IdGenerator is.
class EventFactory {
 public:
  EventFactory(IdGenerator& ids, std::string source) : ids_(ids), source_(std::move(source)) {}

  // `ccm.lablet.instance.pending` for a new instance.
  OutboxEvent InstanceCreated(const domain::LabletInstance& instance);
  // The event of `change`, which `instance` (as it is after the move) just made. `worker` is
  // the instance's worker if it has one; `def` its definition (needed for
  // provisioning.started); `extra` adds type-specific fields (triggered_by, collection_reason).
  OutboxEvent InstanceMoved(const domain::LabletInstance& instance, const domain::InstanceChange& change,
                            const domain::Worker* worker, const domain::LabletDefinition* def,
                            const nlohmann::json& extra = nlohmann::json::object());
  // The event of each entry of a new worker's history, or `ccm.worker.pending` if it has none.
  std::vector<OutboxEvent> WorkerCreated(const domain::Worker& worker);
  OutboxEvent WorkerMoved(const domain::Worker& worker, const domain::WorkerChange& change,
                          const nlohmann::json& extra = nlohmann::json::object());

  const std::string& source() const { return source_; }

 private:
  OutboxEvent Make(std::string_view type, const std::string& subject, Timestamp time, nlohmann::json data);

  IdGenerator& ids_;
  std::string source_;
};

}  // namespace ccm::app
