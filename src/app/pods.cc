#include "app/pods.h"

namespace ccm::app {

using namespace ccm::domain;
using nlohmann::json;

json ToJson(const Pod& pod) {
  json devices = json::array();
  for (const auto& d : pod.devices) {
    json interfaces = json::array();
    for (const auto& i : d.interfaces)
      interfaces.push_back({{"name", i.name}, {"protocol", i.protocol}, {"host", i.host}, {"port", i.port}});
    devices.push_back(
        {{"label", d.label}, {"hostname", d.hostname}, {"collector", d.collector}, {"interfaces", std::move(interfaces)}});
  }
  return {{"id", pod.id}, {"devices", std::move(devices)}};
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
  auto def = store_.GetDefinition(instance.definition_id, instance.definition_version);
  if (!def) return def.error();
  auto lab = Lab(*def);
  if (!lab) return lab.error();
  const std::string& host = !worker.public_ip.empty() ? worker.public_ip : worker.hostname;
  return BuildPod(**lab, instance.allocated_ports, host, instance.id.value, collector_);
}

}  // namespace ccm::app
