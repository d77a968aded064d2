#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/time.h"

namespace ccm::domain {

// A string id that cannot be mixed up with an id of another kind.
template <typename Tag>
struct Id {
  std::string value;
  auto operator<=>(const Id&) const = default;
  bool empty() const { return value.empty(); }
};
using DefinitionId = Id<struct DefinitionTag>;
using InstanceId = Id<struct InstanceTag>;
using WorkerId = Id<struct WorkerTag>;

// CML licence kinds. PERSONAL caps a worker at 20 nodes.
enum class LicenseType {
  kPersonal,    // PERSONAL: at most 20 running nodes
  kEnterprise,  // ENTERPRISE
  kEvaluation,  // EVALUATION
};
std::string_view ToString(LicenseType t);
std::optional<LicenseType> ParseLicenseType(std::string_view name);
inline constexpr int kPersonalMaxNodes = 20;

// Compute resources, as needed by a definition or held by a worker.
struct Resources {
  double cpu_cores = 0;
  double memory_gb = 0;
  double storage_gb = 0;
  bool operator==(const Resources&) const = default;
};

// One `${PORT_<NAME>}` placeholder of a lab: `serial:${PORT_SERIAL_1}` gives name
// `serial_1` and protocol `serial`.
struct PortSpec {
  std::string name;
  std::string protocol;
  bool operator==(const PortSpec&) const = default;
};

// Port name -> port number, ordered by name.
using PortMap = std::map<std::string, int>;

// One entry of an aggregate's state history.
template <typename State>
struct StateChange {
  State from;
  State to;
  Timestamp at;
  std::string reason;
  std::string actor;
  bool operator==(const StateChange&) const = default;
};

}  // namespace ccm::domain
