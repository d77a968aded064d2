#pragma once

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
  std::string created_by;
};

inline constexpr int kMaxDurationMinutes = 7 * 24 * 60;

// Validates `draft` and derives node_count and port_template from its YAML. `lab_yaml_hash`
// is computed by the caller (hashing is not domain logic). Errors: invalid_argument naming
// the first offending field.
Result<LabletDefinition> NewDefinition(DefinitionDraft draft, DefinitionId id, std::string lab_yaml_hash,
                                       Timestamp now);

}  // namespace ccm::domain
