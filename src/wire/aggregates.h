#pragma once

#include <nlohmann/json.hpp>

#include "domain/definition.h"
#include "domain/instance.h"
#include "domain/result.h"
#include "domain/worker.h"
#include "wire/secrets.h"

// The storage format and the API's shapes of the aggregates: one JSON shape per aggregate,
// written by the stores and by the API alike.
namespace ccm::wire {

// The JSON shape of each aggregate: what the API returns and what the store keeps. Derived
// fields (a worker's `allocated`) are written but ignored when read back. A definition's
// `device_access` is null when it has none, else {"default"?: ACCESS, "nodes": {label: ACCESS}}
// with ACCESS = {"authentication"?: {"scheme", "properties"}, "configuration"?: {...}}.
nlohmann::json ToJson(const domain::LabletDefinition& d, Secrets secrets);
// One ACCESS, as above.
nlohmann::json ToJson(const domain::DeviceAccess& a, Secrets secrets);
nlohmann::json ToJson(const domain::LabletInstance& i);
nlohmann::json ToJson(const domain::Worker& w);
nlohmann::json ToJson(const domain::GradingScore& s);
// {revision, score, event_id (null for an operator's), actor, at}.
nlohmann::json ToJson(const domain::ScoreRecord& r);
// {outcome, stage, code, message}.
nlohmann::json ToJson(const domain::Ending& e);
nlohmann::json ToJson(const domain::PortMap& ports);

// Reads back what ToJson wrote. Errors: internal (stored data that does not read back is a
// bug or corruption, never user input).
Result<domain::LabletDefinition> DefinitionFromJson(const nlohmann::json& j);
Result<domain::LabletInstance> InstanceFromJson(const nlohmann::json& j);
Result<domain::Worker> WorkerFromJson(const nlohmann::json& j);

// null for an absent optional.
nlohmann::json OptionalTime(const std::optional<Timestamp>& t);

}  // namespace ccm::wire
