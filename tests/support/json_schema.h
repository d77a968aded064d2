#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ccm::testing {

// Validates `value` against a schema of an OpenAPI 3.0/3.1 document (`document` holds
// components.schemas for $ref). Covers what the Grading Engine's Pod schema and CML's
// Topology schema and the events' data schemas (docs/schemas) use: type (a name or a list,
// null included), nullable, required, properties,
// additionalProperties (false, true or a schema), items, minLength, maxLength, pattern,
// minimum, exclusiveMinimum, maximum, enum, const, anyOf, oneOf (with a discriminator's mapping), minItems,
// format int32, $ref. Returns one message per violation, with its path.
std::vector<std::string> ValidateSchema(const nlohmann::json& document, const nlohmann::json& schema,
                                        const nlohmann::json& value, const std::string& path = "$");

}  // namespace ccm::testing
