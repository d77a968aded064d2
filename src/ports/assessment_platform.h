#pragma once

#include <string>

#include "domain/result.h"

namespace ccm::ports {

// What the Assessment Platform needs to collect an instance's work.
struct CollectionRequest {
  std::string instance_id;
  std::string cml_lab_id;
  std::string worker_hostname;
};

// The Assessment Platform (ASSESSMENT_PLATFORM_URL). Thread-safe.
class AssessmentPlatform {
 public:
  virtual ~AssessmentPlatform() = default;
  // POST /api/v1/collections. Errors: unavailable when the platform cannot be reached or
  // keeps failing (the message names the remote, the call and the status); invalid_argument
  // when it refuses the request for good.
  virtual Status TriggerCollection(const CollectionRequest& request) = 0;
};

}  // namespace ccm::ports
