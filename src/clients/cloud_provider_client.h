#pragma once

#include <chrono>
#include <mutex>
#include <string>

#include "clients/http_post.h"
#include "ports/cloud_provider.h"
#include "ports/observers.h"

namespace ccm::clients {

// A cloud provider behind a small HTTP API (CLOUD_PROVIDER_URL); the only one here is
// sim/cml-sim's:
//   POST   /v1/workers {template, client_token} -> 201 worker (the same one for a token seen)
//   GET    /v1/workers/{id}         -> 200 worker
//   DELETE /v1/workers/{id}         -> 204
// where a worker is {id, state: provisioning | running | released, hostname, public_ip,
// private_ip, cml_url, license_type, capacity {cpu_cores, memory_gb, storage_gb}, max_nodes}.
// Thread-safe (one request at a time).
class CloudProviderClient final : public ports::CloudProvider {
 public:
  // `tag`: who counts each call, under the remote's metric name ("cloud_provider").
  explicit CloudProviderClient(std::string base_url, ports::RemoteTag tag = {}) : base_url_(std::move(base_url)) {
    http_.SetTag(std::move(tag));
  }
  Result<ports::CloudWorker> Launch(const std::string& template_name, const std::string& client_token) override;
  Result<ports::CloudWorker> Describe(const std::string& id) override;
  Status Release(const std::string& id) override;

 private:
  Result<std::string> Call(const std::string& method, const std::string& path, const std::string& body);

  std::string base_url_;
  std::mutex mu_;
  HttpPoster http_;
};

}  // namespace ccm::clients
