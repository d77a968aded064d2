#include "wire/idempotency.h"

#include <nlohmann/json.hpp>

#include "wire/aggregates.h"

namespace ccm::wire {

using nlohmann::json;

std::string CanonicalDraft(const domain::InstanceDraft& d) {
  json j = {{"definition_id", d.definition_id.value},
            {"definition_version", d.definition_version ? json(*d.definition_version) : nullptr},
            {"owner_id", d.owner_id},
            {"reservation_id", d.reservation_id ? json(*d.reservation_id) : nullptr},
            {"timeslot_start", ToUnixMillis(d.timeslot_start)},
            {"timeslot_end", ToUnixMillis(d.timeslot_end)}};
  if (d.assessment) j["assessment"] = {d.assessment->session_id, d.assessment->part_id};
  return j.dump();
}

std::string EncodeKeptAnswer(const KeptAnswer& answer) {
  return json{{"digest", answer.digest}, {"instance", ToJson(answer.instance)}}.dump();
}

Result<KeptAnswer> DecodeKeptAnswer(std::string_view text) {
  const auto j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("instance"))
    return Error::Internal("the answer kept under an idempotency key does not read back");
  auto instance = InstanceFromJson(j.at("instance"));
  if (!instance) return instance.error();
  const auto digest = j.find("digest");
  return KeptAnswer{digest != j.end() && digest->is_string() ? digest->get<std::string>() : "",
                    std::move(instance.value())};
}

}  // namespace ccm::wire
