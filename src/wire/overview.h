#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "domain/states.h"
#include "domain/time.h"

// GET /api/v1/overview: the figures of the operator console's overview, computed by
// app::OverviewService from every instance in the store.
namespace ccm::wire {

// An instance past its state's time-out (the reconcilers will end it).
struct StuckInstance {
  std::string id;
  domain::InstanceState state = domain::InstanceState::kPending;
  Timestamp since;        // when it entered `state`
  std::string owner_id;
  std::string worker_id;  // empty when it has none
};

struct Overview {
  Timestamp computed_at;
  int total = 0;                                    // instances in the store, every state
  std::map<domain::InstanceState, int> per_state;   // every state, 0 included
  std::vector<StuckInstance> stuck;                 // the oldest first, at most kMaxStuckListed
  int stuck_total = 0;                              // all of them, listed or not
  std::map<std::string, int> per_worker;            // worker id -> its instances not TERMINATED
};
inline constexpr int kMaxStuckListed = 50;

// {computed_at, total, per_state: {STATE: n}, stuck: {total, items: [{id, state, since,
// owner_id, worker_id (null when none)}]}, workers: [{worker_id, lablets}]}.
nlohmann::json ToJson(const Overview& o);

}  // namespace ccm::wire
