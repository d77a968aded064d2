#include "wire/pod.h"

#include "wire/aggregates.h"

namespace ccm::wire {

using namespace ccm::domain;
using nlohmann::json;

json ToJson(const Pod& pod, Secrets secrets) {
  json devices = json::array();
  for (const auto& d : pod.devices) {
    json interfaces = json::array();
    for (const auto& i : d.interfaces) {
      json iface = {{"name", i.name}, {"protocol", i.protocol}, {"host", i.host}, {"port", i.port}};
      if (i.authentication || !i.configuration.empty()) {
        json access = ToJson(DeviceAccess{i.authentication, i.configuration}, secrets);
        for (auto& [key, value] : access.items()) iface[key] = std::move(value);
      }
      interfaces.push_back(std::move(iface));
    }
    devices.push_back(
        {{"label", d.label}, {"hostname", d.hostname}, {"collector", d.collector}, {"interfaces", std::move(interfaces)}});
  }
  return {{"id", pod.id}, {"devices", std::move(devices)}};
}

std::string EncodePodForGradingEngine(const Pod& pod) { return ToJson(pod, Secrets::kShown).dump(); }

}  // namespace ccm::wire
