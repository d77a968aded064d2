#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cloudevents/cloud_event.h"

namespace ccm::cloudevents {

// The JSON event format (CloudEvents JSON Format 1.0).
nlohmann::json ToJson(const CloudEvent& event);
std::string ToJsonString(const CloudEvent& event);

// Reads one event from a JSON object and validates it (Validate). Takes the object: its
// members are moved into the event, not copied (pass std::move(j), or a copy on purpose).
// Errors: invalid_argument naming the attribute and the rule (a context attribute that is not
// a string, an upper-case name, both data and data_base64, a required attribute set to null,
// ...). An attribute whose value is null is unset (JSON format §2.2); `data: null` is an
// explicit null payload and stays in `data`.
Result<CloudEvent> FromJson(nlohmann::json&& object);
// Parses `text` as one event (ParseJson, then FromJson). Errors: those of FromJson, "not
// JSON", an attribute nesting deeper than MaxJsonDepth() (field: the attribute), "not an
// object".
Result<CloudEvent> ParseEvent(std::string_view text);
// Parses a batch: a JSON array of event objects, moved out of the parsed array. Errors: "not
// JSON", an attribute nesting deeper than MaxJsonDepth() (field "[i].attribute"), "not an
// array"; an element that is not a valid event is left for the caller to report (FromJson).
Result<std::vector<nlohmann::json>> ParseBatchArray(std::string_view text);
std::string ToBatchJsonString(const std::vector<CloudEvent>& events);

}  // namespace ccm::cloudevents
