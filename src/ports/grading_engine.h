#pragma once

#include <string>

#include "domain/pod.h"
#include "domain/result.h"

namespace ccm::ports {

// The Grading Engine (GRADING_ENGINE_URL). Thread-safe.
class GradingEngine {
 public:
  virtual ~GradingEngine() = default;
  // POST /api/v1/sessions/{session_id}/parts/{part_id}/pod with `pod` as the body, secrets
  // shown (the Grading Engine's Pod schema). Errors: unavailable, invalid_argument (refused,
  // e.g. a pod that does not validate).
  virtual Status AssignPod(const std::string& session_id, const std::string& part_id, const domain::Pod& pod) = 0;
};

}  // namespace ccm::ports
