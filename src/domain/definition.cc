#include "domain/definition.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "domain/lab_yaml.h"

namespace ccm::domain {

namespace {

bool ParseNumber(std::string_view s, int& out) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool ValidIdentifiers(std::string_view s) {
  if (s.empty()) return false;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t dot = std::min(s.find('.', start), s.size());
    const auto part = s.substr(start, dot - start);
    if (part.empty()) return false;
    for (char c : part)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    start = dot + 1;
  }
  return true;
}

bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
  });
}

bool FiniteNonNegative(double v) { return std::isfinite(v) && v >= 0; }

Status CheckAccess(const DeviceAccess& access, const std::string& field) {
  if (!access.authentication) return {};
  if (access.authentication->scheme.empty())
    return Error::InvalidArgument(field + ".authentication.scheme is required", field + ".authentication.scheme");
  for (const auto& [name, _] : access.authentication->properties)
    if (name.empty())
      return Error::InvalidArgument(field + ".authentication.properties must not have an empty name",
                                    field + ".authentication.properties");
  return {};
}

Status CheckDeviceAccess(const DeviceAccessMap& access, const LabInfo& lab) {
  if (access.default_access)
    if (auto s = CheckAccess(*access.default_access, "device_access.default"); !s) return s;
  for (const auto& [label, entry] : access.nodes) {
    const std::string field = "device_access.nodes." + label;
    const bool known = std::any_of(lab.nodes.begin(), lab.nodes.end(), [&](const LabNode& n) { return n.label == label; });
    if (!known) return Error::InvalidArgument(field + " names no node of lab_yaml (node labels are matched exactly)", field);
    if (auto s = CheckAccess(entry, field); !s) return s;
  }
  return {};
}

}  // namespace

const DeviceAccess* DeviceAccessMap::For(const std::string& label) const {
  if (auto it = nodes.find(label); it != nodes.end()) return &it->second;
  return default_access ? &*default_access : nullptr;
}

std::optional<SemVer> ParseSemVer(std::string_view text) {
  std::string_view core = text;
  std::string_view pre, build;
  if (const auto plus = core.find('+'); plus != std::string_view::npos) {
    build = core.substr(plus + 1);
    core = core.substr(0, plus);
    if (!ValidIdentifiers(build)) return std::nullopt;
  }
  if (const auto dash = core.find('-'); dash != std::string_view::npos) {
    pre = core.substr(dash + 1);
    core = core.substr(0, dash);
    if (!ValidIdentifiers(pre)) return std::nullopt;
  }
  SemVer v;
  const auto d1 = core.find('.');
  if (d1 == std::string_view::npos) return std::nullopt;
  const auto d2 = core.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return std::nullopt;
  if (!ParseNumber(core.substr(0, d1), v.major) || !ParseNumber(core.substr(d1 + 1, d2 - d1 - 1), v.minor) ||
      !ParseNumber(core.substr(d2 + 1), v.patch))
    return std::nullopt;
  v.prerelease = std::string(pre);
  return v;
}

int Compare(const SemVer& a, const SemVer& b) {
  if (a.major != b.major) return a.major < b.major ? -1 : 1;
  if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
  if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
  if (a.prerelease == b.prerelease) return 0;
  if (a.prerelease.empty()) return 1;  // a release outranks its pre-releases
  if (b.prerelease.empty()) return -1;
  // Dot-separated identifiers compared left to right; numeric ones numerically and below
  // alphanumeric ones.
  std::string_view x = a.prerelease, y = b.prerelease;
  while (!x.empty() && !y.empty()) {
    const auto xd = std::min(x.find('.'), x.size());
    const auto yd = std::min(y.find('.'), y.size());
    const auto xs = x.substr(0, xd), ys = y.substr(0, yd);
    int xn, yn;
    const bool xnum = ParseNumber(xs, xn), ynum = ParseNumber(ys, yn);
    if (xnum && ynum && xn != yn) return xn < yn ? -1 : 1;
    if (xnum != ynum) return xnum ? -1 : 1;
    if (!xnum && xs != ys) return xs < ys ? -1 : 1;
    x = xd < x.size() ? x.substr(xd + 1) : std::string_view{};
    y = yd < y.size() ? y.substr(yd + 1) : std::string_view{};
  }
  if (x.empty() && y.empty()) return 0;
  return x.empty() ? -1 : 1;
}

Result<LabletDefinition> NewDefinition(DefinitionDraft draft, DefinitionId id, std::string lab_yaml_hash,
                                       Timestamp now) {
  if (!ValidName(draft.name))
    return Error::InvalidArgument("name must be 1-128 characters of letters, digits, '-', '_' or '.'", "name");
  if (!ParseSemVer(draft.version))
    return Error::InvalidArgument("version must be a semantic version such as 1.2.0", "version");
  const Resources& r = draft.resource_requirements;
  if (!std::isfinite(r.cpu_cores) || r.cpu_cores <= 0)
    return Error::InvalidArgument("cpu_cores must be greater than 0", "resource_requirements.cpu_cores");
  if (!std::isfinite(r.memory_gb) || r.memory_gb <= 0)
    return Error::InvalidArgument("memory_gb must be greater than 0", "resource_requirements.memory_gb");
  if (!FiniteNonNegative(r.storage_gb))
    return Error::InvalidArgument("storage_gb must be 0 or more", "resource_requirements.storage_gb");
  if (draft.license_affinity.empty())
    return Error::InvalidArgument("license_affinity must name at least one licence", "license_affinity");
  if (draft.max_duration_minutes < 1 || draft.max_duration_minutes > kMaxDurationMinutes)
    return Error::InvalidArgument("max_duration_minutes must be between 1 and " + std::to_string(kMaxDurationMinutes),
                                  "max_duration_minutes");
  if (draft.created_by.empty()) return Error::InvalidArgument("created_by must not be empty", "created_by");
  if (draft.grading_rules_uri && draft.grading_rules_uri->empty())
    return Error::InvalidArgument("grading_rules_uri must not be empty when given", "grading_rules_uri");

  auto lab = ParseLab(draft.lab_yaml);
  if (!lab) return lab.error();
  if (auto s = CheckDeviceAccess(draft.device_access, *lab); !s) return s.error();

  LabletDefinition d;
  d.id = std::move(id);
  d.name = std::move(draft.name);
  d.version = std::move(draft.version);
  d.lab_yaml = std::move(draft.lab_yaml);
  d.lab_yaml_hash = std::move(lab_yaml_hash);
  d.resource_requirements = r;
  d.nested_virt = draft.nested_virt;
  d.license_affinity = std::move(draft.license_affinity);
  d.node_count = static_cast<int>(lab->nodes.size());
  d.port_template = std::move(lab->port_template);
  d.max_duration_minutes = draft.max_duration_minutes;
  d.grading_rules_uri = std::move(draft.grading_rules_uri);
  d.device_access = std::move(draft.device_access);
  d.created_by = std::move(draft.created_by);
  d.created_at = now;
  return d;
}

}  // namespace ccm::domain
