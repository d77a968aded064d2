#include "domain/pod.h"

#include <charconv>

namespace ccm::domain {

std::string_view PodProtocol(std::string_view prefix) {
  if (prefix == "serial") return "console";
  if (prefix == "vnc") return "vnc";
  if (prefix == "ssh") return "ssh";
  if (prefix == "telnet") return "telnet";
  return {};
}

const std::string& PodHost(const Worker& worker, PodAddress address) {
  if (address == PodAddress::kPublic && !worker.public_ip.empty()) return worker.public_ip;
  return !worker.private_ip.empty() ? worker.private_ip : worker.hostname;
}

Result<Pod> BuildPod(const LabInfo& lab, const PortMap& allocated, const std::string& host, const std::string& pod_id,
                     const std::string& collector, const DeviceAccessMap& access) {
  if (host.empty()) return Error::InvalidArgument("the worker has no address for the pod", "host");
  Pod pod;
  pod.id = pod_id;
  for (const LabNode& node : lab.nodes) {
    PodDevice device{node.label, node.label, collector, {}};
    for (const std::string& tag : node.tags) {
      const size_t colon = tag.find(':');
      if (colon == std::string::npos) continue;
      const std::string_view protocol = PodProtocol(std::string_view(tag).substr(0, colon));
      if (protocol.empty()) continue;
      const std::string_view value = std::string_view(tag).substr(colon + 1);
      PodInterface iface{"", std::string(protocol), host, 0, std::nullopt, {}};
      constexpr std::string_view kOpen = "${PORT_";
      if (value.rfind(kOpen, 0) == 0 && value.size() > kOpen.size() + 1 && value.back() == '}') {
        iface.name = PortNameFromPlaceholder(value.substr(kOpen.size(), value.size() - kOpen.size() - 1));
        const auto it = allocated.find(iface.name);
        if (it == allocated.end())
          return Error::InvalidArgument("node " + node.label + ": tag " + tag + " has no allocated port '" +
                                            iface.name + "'",
                                        "allocated_ports");
        iface.port = it->second;
      } else {
        // A fixed port must be one of the instance's allocations (a rewritten lab's are).
        const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), iface.port);
        if (ec != std::errc() || p != value.data() + value.size())
          return Error::InvalidArgument("node " + node.label + ": tag " + tag + " has no valid port", "lab_yaml");
        for (const auto& [name, port] : allocated)
          if (port == iface.port) iface.name = name;
        if (iface.name.empty())
          return Error::InvalidArgument("node " + node.label + ": tag " + tag + " names port " +
                                            std::to_string(iface.port) + ", which is not allocated to this instance",
                                        "allocated_ports");
      }
      device.interfaces.push_back(std::move(iface));
    }
    if (device.interfaces.empty()) continue;
    if (const DeviceAccess* a = access.For(node.label)) {
      for (PodInterface& iface : device.interfaces) {
        iface.authentication = a->authentication;
        iface.configuration = a->configuration;
      }
    }
    pod.devices.push_back(std::move(device));
  }
  return pod;
}

}  // namespace ccm::domain
