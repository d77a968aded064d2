#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "domain/instance.h"
#include "domain/result.h"

namespace ccm::cloudevents {
struct CloudEvent;
}

// The events the Assessment Platform sends (SYSTEM.md, "Receiving"), decoded once into typed
// values: one struct per type, so that the handlers read fields, not JSON. Unknown extra
// fields are ignored.
namespace ccm::wire {

// The types ccm consumes. Each may carry the suffix ".v1" (e.g.
// assessment.grading.completed.v1), which names the same type.
enum class AssessmentEventType {
  kCollectionCompleted,  // assessment.collection.completed: the lab's configurations are collected
  kCollectionFailed,     // assessment.collection.failed: they could not be
  kGradingCompleted,     // assessment.grading.completed: the Grading Engine scored the lablet
  kGradingFailed,        // assessment.grading.failed: it could not
};
// The type `type` names; nullopt for any other (an event ccm ignores).
std::optional<AssessmentEventType> AssessmentEventTypeOf(std::string_view type);

// assessment.collection.completed. Both ids are optional; when given, non-empty strings.
struct CollectionCompleted {
  std::optional<std::string> collection_id;
  std::optional<std::string> artifacts_uri;
};
// assessment.collection.failed: `error_code` (required, a non-empty string), `error_message`
// (optional, a string; empty when absent), `retry_possible` (optional, a boolean; false when
// absent).
struct CollectionFailed {
  std::string error_code;
  std::string error_message;
  bool retry_possible = false;
};
// assessment.grading.completed: the score (ParseGradingScore's rules); the collection ids it
// may carry are kept when they are non-empty strings and otherwise dropped, never refused
// (they are not its subject).
struct GradingCompleted {
  domain::GradingScore score;
  std::optional<std::string> collection_id;
  std::optional<std::string> artifacts_uri;
};
// assessment.grading.failed: `error_code` and `error_message` as for CollectionFailed.
struct GradingFailed {
  std::string error_code;
  std::string error_message;
};
using AssessmentData = std::variant<CollectionCompleted, CollectionFailed, GradingCompleted, GradingFailed>;

// One assessment event's data. The instance it names and its other fields are decoded apart,
// so that the receiver reports an unknown instance before bad fields.
struct AssessmentEvent {
  std::string instance_id;      // data.instance_id, else data.aggregate_id: non-empty
  Result<AssessmentData> data;  // the type's fields, or the first rule they break
};

// Decodes the data of `event`, an event of `type`. Errors: invalid_argument with field "data"
// when the data is not a JSON object, and "data.instance_id" when it names no instance
// (neither instance_id nor aggregate_id is a non-empty string). The error in `data` is an
// invalid_argument whose field is the path in the event ("data.score.total",
// "data.error_code").
Result<AssessmentEvent> DecodeAssessmentEvent(AssessmentEventType type, const cloudevents::CloudEvent& event);

}  // namespace ccm::wire
