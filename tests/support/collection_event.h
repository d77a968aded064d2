#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace ccm::testing {

// A structured assessment.collection.completed for `instance`, with the id `id` (and a
// collection id and artifacts URI made from it), as the Assessment Platform sends it.
inline nlohmann::json CollectionCompleted(const std::string& id, const std::string& instance) {
  return {{"specversion", "1.0"}, {"id", id}, {"source", "assessment"}, {"type", "assessment.collection.completed"},
          {"datacontenttype", "application/json"},
          {"data", {{"instance_id", instance}, {"collection_id", "c-" + id}, {"artifacts_uri", "s3://b/" + id}}}};
}

}  // namespace ccm::testing
