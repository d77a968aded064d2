#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "domain/result.h"
#include "domain/types.h"

namespace ccm::domain {

// A semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] (semver.org 2.0.0).
struct SemVer {
  int major = 0, minor = 0, patch = 0;
  std::string prerelease;
};
std::optional<SemVer> ParseSemVer(std::string_view text);
// Semver precedence: <0, 0, >0. Build metadata is ignored.
int Compare(const SemVer& a, const SemVer& b);

// How the Grading Engine logs in to a device (its AuthenticationDefinition). A secret.
struct DeviceAuthentication {
  std::string scheme;                             // e.g. "password"; never empty
  std::map<std::string, std::string> properties;  // e.g. username, password, enable_secret
  bool operator==(const DeviceAuthentication&) const = default;
};

// What every interface of one device carries in the pod: how to log in and how the device is
// set up (the console's line settings, say). A secret, as a whole.
struct DeviceAccess {
  std::optional<DeviceAuthentication> authentication;
  // A JSON object as compact text (the domain holds no JSON library); empty for none. The
  // edge that reads it checks that it is an object.
  std::string configuration;
  bool operator==(const DeviceAccess&) const = default;
};

// The device access of a definition: a default for every device, and entries by node label
// that replace the default (as a whole) for that node's device. An entry with neither
// authentication nor configuration gives its device none.
struct DeviceAccessMap {
  std::optional<DeviceAccess> default_access;
  std::map<std::string, DeviceAccess> nodes;  // node label -> its access
  bool operator==(const DeviceAccessMap&) const = default;

  bool empty() const { return !default_access && nodes.empty(); }
  // The access of the device of the node labelled `label`, or null for none.
  const DeviceAccess* For(const std::string& label) const;
};

// A lab topology offered to candidates, immutable once a version is created. Versions of the
// same name share one id.
struct LabletDefinition {
  DefinitionId id;
  std::string name;
  std::string version;             // semver
  std::string lab_yaml;            // CML topology with ${PORT_<NAME>} placeholders
  std::string lab_yaml_hash;       // "sha256:<hex>" of lab_yaml
  Resources resource_requirements;
  bool nested_virt = false;
  std::vector<LicenseType> license_affinity;  // non-empty: the licences a worker may have
  int node_count = 0;                         // from the YAML
  std::vector<PortSpec> port_template;        // from the YAML placeholders
  int max_duration_minutes = 0;
  std::optional<std::string> grading_rules_uri;
  DeviceAccessMap device_access;  // secrets: see docs/assessment-integration.md
  std::string created_by;
  Timestamp created_at;
  bool deleted = false;  // soft delete: no new instances
};

// What a caller supplies to create a definition version.
struct DefinitionDraft {
  std::string name;
  std::string version;
  std::string lab_yaml;
  Resources resource_requirements;
  bool nested_virt = false;
  std::vector<LicenseType> license_affinity;
  int max_duration_minutes = 0;
  std::optional<std::string> grading_rules_uri;
  DeviceAccessMap device_access;
  std::string created_by;
};

inline constexpr int kMaxDurationMinutes = 7 * 24 * 60;

// Validates `draft` and derives node_count and port_template from its YAML. `lab_yaml_hash`
// is computed by the caller (hashing is not domain logic). Errors: invalid_argument naming
// the first offending field; for device access, an authentication without a scheme
// ("device_access.default.authentication.scheme"), an empty property name, or a node entry
// whose label no node of the lab has ("device_access.nodes.<label>"). Messages never hold a
// property's value.
Result<LabletDefinition> NewDefinition(DefinitionDraft draft, DefinitionId id, std::string lab_yaml_hash,
                                       Timestamp now);

}  // namespace ccm::domain
