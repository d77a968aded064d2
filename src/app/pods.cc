#include "app/pods.h"

#include <algorithm>
#include <cstring>

#include "log/log_context.h"
#include "wire/secrets.h"

namespace ccm::app {

using namespace ccm::domain;

std::vector<std::string> SecretValues(const Pod& pod) {
  std::vector<std::string> out;
  for (const auto& d : pod.devices)
    for (const auto& i : d.interfaces)
      if (i.authentication)
        for (const auto& [_, v] : i.authentication->properties)
          if (!v.empty() && std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  return out;
}

std::string Scrub(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets)
    for (auto pos = text.find(s); pos != std::string::npos; pos = text.find(s, pos + std::strlen(wire::kRedactedValue)))
      text.replace(pos, s.size(), wire::kRedactedValue);
  return text;
}

Result<std::shared_ptr<const LabInfo>> PodService::Lab(const LabletDefinition& def) {
  {
    std::lock_guard lock(mu_);
    if (auto it = labs_.find(def.lab_yaml_hash); it != labs_.end()) return it->second;
  }
  auto lab = ParseLab(def.lab_yaml);  // outside the lock: parsing a large lab takes a while
  if (!lab) return lab.error();
  auto shared = std::make_shared<const LabInfo>(std::move(lab.value()));
  std::lock_guard lock(mu_);
  constexpr size_t kMaxLabs = 1024;
  if (labs_.size() >= kMaxLabs) labs_.clear();
  labs_.emplace(def.lab_yaml_hash, shared);
  return shared;
}

Result<Pod> PodService::ForInstance(const InstanceId& id) {
  auto instance = store_.GetInstance(id);
  if (!instance) return instance.error();
  if (!instance->worker_id || instance->state == InstanceState::kTerminated)
    return Error::FailedPrecondition("instance " + id.value + " is " + std::string(ToString(instance->state)) +
                                     ": a pod exists from SCHEDULED until it is terminated");
  auto worker = store_.GetWorker(*instance->worker_id);
  if (!worker) return worker.error();
  return ForInstance(*instance, *worker);
}

Result<Pod> PodService::ForInstance(const LabletInstance& instance, const Worker& worker) {
  log::Scope about({.lablet_id = instance.id.value, .worker_id = worker.id.value});
  auto def = store_.GetDefinition(instance.definition_id, instance.definition_version);
  if (!def) return def.error();
  auto lab = Lab(*def);
  if (!lab) return lab.error();
  return BuildPod(**lab, instance.allocated_ports, PodHost(worker, address_), instance.id.value, collector_,
                  def->device_access);
}

}  // namespace ccm::app
