#pragma once

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "app/services.h"
#include "domain/pod.h"

namespace ccm::app {

// The JSON of a pod, as the Grading Engine's Pod schema wants it.
nlohmann::json ToJson(const domain::Pod& pod);

// Pods of instances for the Grading Engine. A definition's lab is parsed once (by its
// lab_yaml_hash) and kept, so a pod costs a map over the lab's nodes. Thread-safe.
class PodService {
 public:
  PodService(Store& store, std::string collector) : store_(store), collector_(std::move(collector)) {}

  // The pod of a scheduled (or later) instance: its lab with its ports, on its worker's
  // public address (public_ip, else hostname). Errors: not_found; failed_precondition before
  // the instance has a worker or after it is terminated; those of domain::BuildPod.
  Result<domain::Pod> ForInstance(const domain::InstanceId& id);
  // The same, from an instance and its worker already read.
  Result<domain::Pod> ForInstance(const domain::LabletInstance& instance, const domain::Worker& worker);

 private:
  Result<std::shared_ptr<const domain::LabInfo>> Lab(const domain::LabletDefinition& def);

  Store& store_;
  std::string collector_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const domain::LabInfo>> labs_;
};

}  // namespace ccm::app
