#include "ports/outbox.h"

namespace ccm::ports {

std::string_view ToString(DeliveryState s) {
  switch (s) {
    case DeliveryState::kPending: return "pending";
    case DeliveryState::kDelivered: return "delivered";
    case DeliveryState::kDead: return "dead";
    case DeliveryState::kHeld: return "held";
  }
  return "pending";
}

std::optional<DeliveryState> ParseDeliveryState(std::string_view name) {
  if (name == "pending") return DeliveryState::kPending;
  if (name == "delivered") return DeliveryState::kDelivered;
  if (name == "dead") return DeliveryState::kDead;
  if (name == "held") return DeliveryState::kHeld;
  return std::nullopt;
}

}  // namespace ccm::ports
