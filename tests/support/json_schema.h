#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ccm::testing {

// Validates `value` against a schema of an OpenAPI 3.0 document (`document` holds
// components.schemas for $ref). Covers what the Grading Engine's Pod schema uses: type,
// nullable, required, properties, additionalProperties (false, true or a schema), items,
// minLength, minItems, format int32, $ref. Returns one message per violation, with its path.
std::vector<std::string> ValidateSchema(const nlohmann::json& document, const nlohmann::json& schema,
                                        const nlohmann::json& value, const std::string& path = "$");

}  // namespace ccm::testing
