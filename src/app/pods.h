#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "app/services.h"
#include "domain/pod.h"
#include "ports/store.h"

namespace ccm::app {

// A pod's JSON, for the Grading Engine and the API, is wire/pod.h's.

// Every authentication property value of `pod` that is not empty: what must not leave ccm
// but to the Grading Engine (used to scrub the engine's answers before they are kept).
std::vector<std::string> SecretValues(const domain::Pod& pod);
// `text` with every occurrence of each of `secrets` replaced by wire::kRedactedValue.
std::string Scrub(std::string text, const std::vector<std::string>& secrets);

// Pods of instances for the Grading Engine. A definition's lab is parsed once (by its
// lab_yaml_hash) and kept, so a pod costs a map over the lab's nodes. Thread-safe.
class PodService {
 public:
  PodService(ports::Store& store, std::string collector, domain::PodAddress address = domain::PodAddress::kPublic)
      : store_(store), collector_(std::move(collector)), address_(address) {}

  // The pod of a scheduled (or later) instance: its lab with its ports and its definition's
  // device access, on the worker's address that graders reach (domain::PodHost of `address`:
  // POD_HOST_ADDRESS). Errors: not_found; failed_precondition before
  // the instance has a worker or after it is terminated; those of domain::BuildPod.
  Result<domain::Pod> ForInstance(const domain::InstanceId& id);
  // The same, from an instance and its worker already read.
  Result<domain::Pod> ForInstance(const domain::LabletInstance& instance, const domain::Worker& worker);

 private:
  Result<std::shared_ptr<const domain::LabInfo>> Lab(const domain::LabletDefinition& def);

  ports::Store& store_;
  std::string collector_;
  domain::PodAddress address_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const domain::LabInfo>> labs_;
};

}  // namespace ccm::app
