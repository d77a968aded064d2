#pragma once

#include <string>
#include <vector>

#include "domain/definition.h"
#include "domain/lab_yaml.h"
#include "domain/result.h"
#include "domain/types.h"
#include "domain/worker.h"

namespace ccm::domain {

// How the Grading Engine reaches one access port of a device.
struct PodInterface {
  std::string name;      // the allocated port's name ("serial_1")
  std::string protocol;  // console, vnc, ssh, telnet
  std::string host;      // the worker's address that graders reach (PodHost)
  int port = 0;
  // The device's access (the definition's device_access), the same on each of its
  // interfaces; secrets. Absent / empty when it has none.
  std::optional<DeviceAuthentication> authentication;
  std::string configuration;  // a JSON object as text, or empty
};

// One lab node the Grading Engine can reach (a node with at least one access tag).
struct PodDevice {
  std::string label;
  std::string hostname;
  std::string collector;
  std::vector<PodInterface> interfaces;
};

// What the Grading Engine grades against (components.schemas.Pod of its API).
struct Pod {
  std::string id;
  std::vector<PodDevice> devices;
};

// The Grading Engine protocol of a tag prefix: serial -> console, vnc, ssh, telnet; empty for
// any other prefix (such tags are not access ports).
std::string_view PodProtocol(std::string_view tag_prefix);

// Which of a worker's addresses graders reach.
enum class PodAddress {
  kPublic,   // public_ip, else private_ip, else hostname (graders outside the workers' network)
  kPrivate,  // private_ip, else hostname (graders inside it)
};

// The host of a pod's interfaces on `worker`: the first non-empty address `address` lists, or
// "" when the worker has none of them.
const std::string& PodHost(const Worker& worker, PodAddress address);

// Builds the pod of an instance from its lab (read from the definition's YAML; the tags'
// ${PORT_*} placeholders are resolved with `allocated_ports`, exactly as RewriteLab does),
// its worker's address `host`, and the `collector` name. Every interface of a node's device
// carries `access.For(node label)`, if any. Nodes without an access tag
// are left out; unknown tag prefixes are ignored. A tag with a fixed port (as in a rewritten
// lab) must name one of the allocated ports. Errors: invalid_argument for a tag port that has
// no allocation, a tag port that is not a number, or an empty host.
Result<Pod> BuildPod(const LabInfo& lab, const PortMap& allocated_ports, const std::string& host,
                     const std::string& pod_id, const std::string& collector, const DeviceAccessMap& access = {});

}  // namespace ccm::domain
