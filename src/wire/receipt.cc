#include "wire/receipt.h"

namespace ccm::wire {

using nlohmann::json;

json ToJson(const EventReceipt& r) {
  if (r.accepted()) return {{"id", r.id}, {"status", r.status}, {"outcome", r.outcome}};
  json out = {{"id", r.id}, {"status", r.status}, {"title", r.title}, {"detail", r.detail}};
  if (!r.field.empty()) out["field"] = r.field;
  if (!r.code.empty()) out["code"] = r.code;
  return out;
}

json ToJson(const std::vector<EventReceipt>& receipts) {
  json results = json::array();
  for (const auto& r : receipts) results.push_back(ToJson(r));
  return {{"results", std::move(results)}};
}

}  // namespace ccm::wire
