#include "wire/assessment_events.h"

#include "cloudevents/cloud_event.h"
#include "wire/grading_score.h"

namespace ccm::wire {

using namespace ccm::domain;
using nlohmann::json;

namespace {

constexpr std::string_view kV1 = ".v1";

Result<double> Number(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Error::InvalidArgument(path + " is required", path);
  if (!it->is_number()) return Error::InvalidArgument(path + " must be a number", path);
  return it->get<double>();
}

// An optional string: absent or null is nullopt; anything else must be a non-empty string.
Result<std::optional<std::string>> OptionalText(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string() || it->get_ref<const std::string&>().empty())
    return Error::InvalidArgument(path + " must be a non-empty string when given", path);
  return std::optional<std::string>(it->get<std::string>());
}

// The same, but a value that breaks the rule is dropped instead of refused.
std::optional<std::string> LenientText(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return std::nullopt;
  return it->get<std::string>();
}

Result<std::string> Text(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Error::InvalidArgument(path + " is required", path);
  if (!it->is_string() || it->get_ref<const std::string&>().empty())
    return Error::InvalidArgument(path + " must be a non-empty string", path);
  return it->get<std::string>();
}

struct ReportedFailure {
  std::string code;
  std::string message;
};

// error_code (required) and error_message (optional) of a failure event.
Result<ReportedFailure> ReadFailure(const json& data) {
  auto code = Text(data, "error_code", "data.error_code");
  if (!code) return code.error();
  auto m = data.find("error_message");
  if (m != data.end() && !m->is_null() && !m->is_string())
    return Error::InvalidArgument("data.error_message must be a string", "data.error_message");
  return ReportedFailure{*code, m != data.end() && m->is_string() ? m->get<std::string>() : ""};
}

Result<AssessmentData> DecodeCollectionCompleted(const json& data) {
  auto collection_id = OptionalText(data, "collection_id", "data.collection_id");
  if (!collection_id) return collection_id.error();
  auto artifacts = OptionalText(data, "artifacts_uri", "data.artifacts_uri");
  if (!artifacts) return artifacts.error();
  return AssessmentData{CollectionCompleted{std::move(collection_id.value()), std::move(artifacts.value())}};
}

Result<AssessmentData> DecodeCollectionFailed(const json& data) {
  auto failure = ReadFailure(data);
  if (!failure) return failure.error();
  auto retry = data.find("retry_possible");
  if (retry != data.end() && !retry->is_boolean())
    return Error::InvalidArgument("data.retry_possible must be true or false", "data.retry_possible");
  return AssessmentData{
      CollectionFailed{std::move(failure->code), std::move(failure->message), retry != data.end() && retry->get<bool>()}};
}

Result<AssessmentData> DecodeGradingCompleted(const json& data) {
  auto score = ParseGradingScore(data);
  if (!score) return score.error();
  return AssessmentData{
      GradingCompleted{std::move(score.value()), LenientText(data, "collection_id"), LenientText(data, "artifacts_uri")}};
}

Result<AssessmentData> DecodeGradingFailed(const json& data) {
  auto failure = ReadFailure(data);
  if (!failure) return failure.error();
  return AssessmentData{GradingFailed{std::move(failure->code), std::move(failure->message)}};
}

}  // namespace

std::optional<AssessmentEventType> AssessmentEventTypeOf(std::string_view type) {
  if (type.ends_with(kV1)) type.remove_suffix(kV1.size());
  if (type == "assessment.collection.completed") return AssessmentEventType::kCollectionCompleted;
  if (type == "assessment.collection.failed") return AssessmentEventType::kCollectionFailed;
  if (type == "assessment.grading.completed") return AssessmentEventType::kGradingCompleted;
  if (type == "assessment.grading.failed") return AssessmentEventType::kGradingFailed;
  return std::nullopt;
}

Result<AssessmentEvent> DecodeAssessmentEvent(AssessmentEventType type, const cloudevents::CloudEvent& event) {
  if (!event.data || !event.data->is_object()) return Error::InvalidArgument("data must be a JSON object", "data");
  const json& data = *event.data;
  std::string instance_id;
  for (const char* key : {"instance_id", "aggregate_id"})
    if (auto it = data.find(key); it != data.end() && it->is_string()) instance_id = it->get<std::string>();
  if (instance_id.empty())
    return Error::InvalidArgument("data.instance_id (or aggregate_id) is required", "data.instance_id");
  switch (type) {
    case AssessmentEventType::kCollectionCompleted: return AssessmentEvent{std::move(instance_id), DecodeCollectionCompleted(data)};
    case AssessmentEventType::kCollectionFailed: return AssessmentEvent{std::move(instance_id), DecodeCollectionFailed(data)};
    case AssessmentEventType::kGradingCompleted: return AssessmentEvent{std::move(instance_id), DecodeGradingCompleted(data)};
    case AssessmentEventType::kGradingFailed: return AssessmentEvent{std::move(instance_id), DecodeGradingFailed(data)};
  }
  return Error::Internal("unknown assessment event type");
}

Result<GradingScore> ParseGradingScore(const json& data) {
  auto it = data.find("score");
  if (it == data.end() || !it->is_object()) return Error::InvalidArgument("data.score must be an object", "data.score");
  const json& s = *it;
  GradingScore score;
  const bool older = s.contains("total_points_earned") || s.contains("total_points_possible");
  const char* total_key = older ? "total_points_earned" : "total";
  const char* max_key = older ? "total_points_possible" : "max";
  const char* list_key = older ? "check_results" : "breakdown";
  const char* name_key = older ? "check_name" : "criterion";
  const char* points_key = older ? "points_earned" : "points";
  const char* cmax_key = older ? "points_possible" : "max";
  auto total = Number(s, total_key, std::string("data.score.") + total_key);
  if (!total) return total.error();
  auto max = Number(s, max_key, std::string("data.score.") + max_key);
  if (!max) return max.error();
  score.total = *total;
  score.max = *max;
  if (auto l = s.find(list_key); l != s.end() && !l->is_null()) {
    if (!l->is_array()) return Error::InvalidArgument(std::string("data.score.") + list_key + " must be an array",
                                                      std::string("data.score.") + list_key);
    for (size_t n = 0; n < l->size(); ++n) {
      const json& c = (*l)[n];
      const std::string at = std::string("data.score.") + list_key + "[" + std::to_string(n) + "]";
      if (!c.is_object()) return Error::InvalidArgument(at + " must be an object", at);
      auto name = Text(c, name_key, at + "." + name_key);
      if (!name) return name.error();
      auto points = Number(c, points_key, at + "." + points_key);
      if (!points) return points.error();
      auto cmax = Number(c, cmax_key, at + "." + cmax_key);
      if (!cmax) return cmax.error();
      score.breakdown.push_back({*name, *points, *cmax});
    }
  }
  for (const json* holder : {&s, &data}) {
    if (auto p = holder->find("passed"); p != holder->end() && !p->is_null()) {
      if (!p->is_boolean()) return Error::InvalidArgument("passed must be true or false", "data.passed");
      score.passed = p->get<bool>();
      break;
    }
  }
  if (auto v = Validate(score); !v) {
    Error e = v.error();
    // Name the field as the event spells it.
    if (older) {
      for (auto [from, to] : {std::pair{"score.total", "score.total_points_earned"}, {"score.max", "score.total_points_possible"},
                              {"score.breakdown", "score.check_results"}})
        if (e.field.rfind(from, 0) == 0) e.field = std::string(to) + e.field.substr(std::string(from).size());
      for (auto [from, to] : {std::pair{".points", ".points_earned"}, {".max", ".points_possible"}})
        if (e.field.size() > std::string(from).size() && e.field.ends_with(from) && e.field.find('[') != std::string::npos)
          e.field = e.field.substr(0, e.field.size() - std::string(from).size()) + to;
    }
    e.field = "data." + e.field;
    return e;
  }
  return score;
}

}  // namespace ccm::wire
