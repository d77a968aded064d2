#pragma once

#include <string>

#include "domain/result.h"

namespace ccm::ports {

// The Grading Engine (GRADING_ENGINE_URL). Thread-safe.
class GradingEngine {
 public:
  virtual ~GradingEngine() = default;
  // POST /api/v1/sessions/{session_id}/parts/{part_id}/pod with the pod (JSON) as the body.
  // Errors: unavailable, invalid_argument (refused, e.g. a pod that does not validate).
  virtual Status AssignPod(const std::string& session_id, const std::string& part_id, const std::string& pod_json) = 0;
};

}  // namespace ccm::ports
