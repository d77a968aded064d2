#pragma once

#include <string>
#include <variant>

// The data of the scaler's decisions, one struct per ccm.scaling.* event type; encoded by
// wire/event_data.h.
namespace ccm::wire {

// ccm.scaling.up.requested: pending instances fit no worker, so a worker was asked for.
struct ScaleUpRequested {
  std::string worker_id;      // the requested worker
  std::string template_name;  // `template`: the provider's template it is launched from
  std::string reason;
  int pending_instances = 0;  // the instances that fit no running worker
};
// ccm.scaling.up.completed: the requested worker is RUNNING.
struct ScaleUpCompleted {
  std::string worker_id;
  std::string template_name;
  std::string hostname;
};
// ccm.scaling.down.requested: an idle worker is to be drained.
struct ScaleDownRequested {
  std::string worker_id;
  std::string reason;
};
// ccm.scaling.down.completed: the drained worker is STOPPED.
struct ScaleDownCompleted {
  std::string worker_id;
};
using ScalingData = std::variant<ScaleUpRequested, ScaleUpCompleted, ScaleDownRequested, ScaleDownCompleted>;

}  // namespace ccm::wire
