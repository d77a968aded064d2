#include "wire/overview.h"

namespace ccm::wire {

nlohmann::json ToJson(const Overview& o) {
  nlohmann::json per_state = nlohmann::json::object();
  for (const auto s : domain::kAllInstanceStates) {
    auto it = o.per_state.find(s);
    per_state[std::string(domain::ToString(s))] = it == o.per_state.end() ? 0 : it->second;
  }
  nlohmann::json stuck = nlohmann::json::array();
  for (const auto& i : o.stuck)
    stuck.push_back({{"id", i.id},
                     {"state", std::string(domain::ToString(i.state))},
                     {"since", FormatRfc3339(i.since)},
                     {"owner_id", i.owner_id},
                     {"worker_id", i.worker_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(i.worker_id)}});
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& [id, n] : o.per_worker) workers.push_back({{"worker_id", id}, {"lablets", n}});
  return {{"computed_at", FormatRfc3339(o.computed_at)},
          {"total", o.total},
          {"per_state", per_state},
          {"stuck", {{"total", o.stuck_total}, {"items", stuck}}},
          {"workers", workers}};
}

}  // namespace ccm::wire
