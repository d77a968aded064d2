#pragma once

#include <string>

#include "domain/result.h"
#include "domain/worker.h"

namespace ccm::ports {

// What a cloud provider reports about a worker it runs for ccm.
struct CloudWorker {
  std::string id;     // the provider's id
  bool ready = false;  // up, with CML answering
  bool released = false;  // given back: the machine is gone or going
  std::string hostname;
  std::string public_ip;
  std::string private_ip;
  std::string cml_url;
  domain::LicenseType license_type = domain::LicenseType::kEnterprise;
  domain::Resources capacity;
  int max_nodes = 0;
};

// Where new workers come from and where idle ones go. Thread-safe.
// Errors of every call: unavailable when the provider cannot be reached or fails;
// invalid_argument when it refuses (an unknown template); not_found for an unknown id.
class CloudProvider {
 public:
  virtual ~CloudProvider() = default;
  // Starts a worker from `template_name`; it is not ready yet. The same `client_token` gives
  // the same worker, so that a launch retried after a crash starts no second machine.
  virtual Result<CloudWorker> Launch(const std::string& template_name, const std::string& client_token) = 0;
  virtual Result<CloudWorker> Describe(const std::string& id) = 0;
  // Stops the worker and gives its machine back.
  virtual Status Release(const std::string& id) = 0;
};

}  // namespace ccm::ports
