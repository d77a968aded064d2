#pragma once

#include <string>
#include <vector>

#include "domain/lab_yaml.h"
#include "domain/result.h"
#include "domain/types.h"

namespace ccm::domain {

// How the Grading Engine reaches one access port of a device.
struct PodInterface {
  std::string name;      // the allocated port's name ("serial_1")
  std::string protocol;  // console, vnc, ssh, telnet
  std::string host;      // the worker's public address
  int port = 0;
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

// Builds the pod of an instance from its lab (read from the definition's YAML; the tags'
// ${PORT_*} placeholders are resolved with `allocated_ports`, exactly as RewriteLab does),
// its worker's public address `host`, and the `collector` name. Nodes without an access tag
// are left out; unknown tag prefixes are ignored. A tag with a fixed port (as in a rewritten
// lab) must name one of the allocated ports. Errors: invalid_argument for a tag port that has
// no allocation, a tag port that is not a number, or an empty host.
Result<Pod> BuildPod(const LabInfo& lab, const PortMap& allocated_ports, const std::string& host,
                     const std::string& pod_id, const std::string& collector);

}  // namespace ccm::domain
