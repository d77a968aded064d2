#include "domain/worker.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <vector>

#include "domain/definition.h"
#include "domain/instance.h"

namespace ccm::domain {


namespace {

std::string Num(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

constexpr std::size_t kMaxCmlUrlBytes = 2048;

std::string Lower(std::string_view v) {
  std::string out(v);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// The host of `url` (brackets of an IPv6 literal dropped) after CheckCmlUrl's rule, or the
// broken rule. Shared by CheckCmlUrl and CmlUrlHost so that both read a URL the same way.
Result<std::string_view> SplitHost(std::string_view url) {
  const auto fail = [](const std::string& rule) -> Error { return Error::InvalidArgument("cml_url " + rule, "cml_url"); };
  if (url.size() > kMaxCmlUrlBytes) return fail("must be at most " + std::to_string(kMaxCmlUrlBytes) + " bytes");
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    // A backslash is read as a slash by some URL parsers and not by others.
    if (u <= 0x20 || u == 0x7f || c == '\\')
      return fail("must not contain whitespace, control characters or backslashes");
  }
  std::string_view rest;
  if (url.rfind("https://", 0) == 0) rest = url.substr(8);
  else if (url.rfind("http://", 0) == 0) rest = url.substr(7);
  else return fail("must be an http:// or https:// URL");
  if (url.find('#') != std::string_view::npos) return fail("must not have a fragment (#...)");
  if (url.find('?') != std::string_view::npos) return fail("must not have a query (?...)");
  const std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.find('@') != std::string_view::npos)
    return fail("must not carry credentials (user:pass@host): CML_USERNAME and CML_PASSWORD are used");
  std::string_view host = authority;
  std::optional<std::string_view> port;  // as written after the host's ':'
  if (!authority.empty() && authority[0] == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return fail("has an IPv6 host without its closing ]");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after[0] != ':') return fail("must have only a port after the host");
    if (!after.empty()) port = after.substr(1);
    for (char c : host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return fail("has an IPv6 host that is not an address");
  } else {
    if (const auto colon = authority.find(':'); colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    for (char c : host)
      if (!IsHostChar(c)) return fail("must have a host of letters, digits, '-', '_' and '.'");
  }
  if (host.empty()) return fail("must name a host");
  if (port) {
    int n = 0;
    bool digits = !port->empty() && port->size() <= 5;
    for (char c : *port) {
      if (!std::isdigit(static_cast<unsigned char>(c))) digits = false;
      else n = n * 10 + (c - '0');
    }
    if (!digits || n < 1 || n > 65535) return fail("must have a port from 1 to 65535");
  }
  return host;
}

}  // namespace

Status CheckCmlUrl(std::string_view url) {
  auto host = SplitHost(url);
  if (!host) return host.error();
  return {};
}

std::string CmlUrlHost(std::string_view url) {
  auto host = SplitHost(url);
  return host ? Lower(*host) : std::string();
}

Status CmlUrlAllowList::Check(std::string_view url) const {
  auto split = SplitHost(url);
  if (!split) return split.error();
  if (entries.empty()) return {};
  const std::string host = Lower(*split);
  for (const std::string& entry : entries) {
    const std::string e = Lower(entry);
    if (e.empty()) continue;
    if (e[0] == '.' ? host.size() > e.size() && host.compare(host.size() - e.size(), e.size(), e) == 0 : host == e)
      return {};
  }
  return Error::InvalidArgument("cml_url host " + host + " is not allowed by CML_URL_ALLOW", "cml_url");
}

Status CheckCaPem(std::string_view pem) {
  constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  const auto fail = [&](const std::string& why) -> Error {
    return Error::InvalidArgument("cml_ca_pem must be PEM certificates (" + std::string(kBegin) + " ... " +
                                      std::string(kEnd) + "): " + why,
                                  "cml_ca_pem");
  };
  if (pem.size() > kMaxCmlCaPemBytes)
    return fail("more than " + std::to_string(kMaxCmlCaPemBytes) + " bytes");
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  int certificates = 0;
  std::size_t at = 0;
  while (true) {
    while (at < pem.size() && is_space(pem[at])) ++at;
    if (at == pem.size()) break;
    if (pem.compare(at, kBegin.size(), kBegin) != 0) return fail("text outside a certificate block");
    at += kBegin.size();
    const auto end = pem.find(kEnd, at);
    if (end == std::string_view::npos) return fail("a certificate block without its end line");
    std::size_t symbols = 0;
    std::size_t padding = 0;
    for (char c : pem.substr(at, end - at)) {
      if (is_space(c)) continue;
      if (c == '=') {
        ++padding;
        ++symbols;
        continue;
      }
      if (padding > 0 || !(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/'))
        return fail("a certificate block that is not base64");
      ++symbols;
    }
    if (symbols == 0 || symbols % 4 != 0 || padding > 2) return fail("a certificate block that is not base64");
    ++certificates;
    at = end + kEnd.size();
  }
  if (certificates == 0) return fail("no certificate");
  return {};
}

int Worker::EffectiveMaxNodes() const {
  return license_type == LicenseType::kPersonal ? std::min(max_nodes, kPersonalMaxNodes) : max_nodes;
}

Reservation Worker::Allocated() const {
  Reservation sum;
  for (const auto& [_, r] : reservations) {
    sum.resources.cpu_cores += r.resources.cpu_cores;
    sum.resources.memory_gb += r.resources.memory_gb;
    sum.resources.storage_gb += r.resources.storage_gb;
    sum.nodes += r.nodes;
  }
  return sum;
}

int Worker::ActiveInstances() const {
  int n = static_cast<int>(reservations.size());
  for (const auto& [id, _] : port_allocations)
    if (!reservations.count(id)) ++n;
  return n;
}

int Worker::FreePorts() const {
  int used = 0;
  for (const auto& [_, ports] : port_allocations) used += static_cast<int>(ports.size());
  return (port_range_end - port_range_start + 1) - used;
}

Status Worker::CheckFits(const LabletDefinition& def) const {
  if (state != WorkerState::kRunning)
    return Error::FailedPrecondition("worker " + id.value + " is " + std::string(ToString(state)) +
                                     " and takes no new instances");
  if (std::find(def.license_affinity.begin(), def.license_affinity.end(), license_type) == def.license_affinity.end())
    return Error::FailedPrecondition("worker licence " + std::string(ToString(license_type)) +
                                     " is not in the definition's license_affinity");
  const Reservation used = Allocated();
  const Resources& need = def.resource_requirements;
  // A small tolerance keeps sums of fractional cores from failing on rounding.
  constexpr double kEps = 1e-9;
  if (used.resources.cpu_cores + need.cpu_cores > capacity.cpu_cores + kEps)
    return Error::FailedPrecondition("not enough cpu: " + Num(capacity.cpu_cores - used.resources.cpu_cores) +
                                     " cores free, " + Num(need.cpu_cores) + " needed");
  if (used.resources.memory_gb + need.memory_gb > capacity.memory_gb + kEps)
    return Error::FailedPrecondition("not enough memory: " + Num(capacity.memory_gb - used.resources.memory_gb) +
                                     " GB free, " + Num(need.memory_gb) + " needed");
  if (used.resources.storage_gb + need.storage_gb > capacity.storage_gb + kEps)
    return Error::FailedPrecondition("not enough storage: " + Num(capacity.storage_gb - used.resources.storage_gb) +
                                     " GB free, " + Num(need.storage_gb) + " needed");
  if (used.nodes + def.node_count > EffectiveMaxNodes())
    return Error::FailedPrecondition("node limit: " + std::to_string(EffectiveMaxNodes() - used.nodes) +
                                     " nodes free, " + std::to_string(def.node_count) + " needed");
  if (FreePorts() < static_cast<int>(def.port_template.size()))
    return Error::FailedPrecondition("ports exhausted: " + std::to_string(FreePorts()) + " free in " +
                                     std::to_string(port_range_start) + "-" + std::to_string(port_range_end) + ", " +
                                     std::to_string(def.port_template.size()) + " needed");
  return {};
}

Result<PortMap> Worker::Allocate(const InstanceId& instance, const LabletDefinition& def) {
  if (reservations.count(instance.value) || port_allocations.count(instance.value))
    return Error::Conflict("instance " + instance.value + " already holds an allocation on worker " + id.value);
  if (auto fits = CheckFits(def); !fits) return fits.error();

  std::vector<bool> used(static_cast<size_t>(port_range_end - port_range_start + 1), false);
  for (const auto& [_, ports] : port_allocations)
    for (const auto& [__, port] : ports)
      if (port >= port_range_start && port <= port_range_end) used[static_cast<size_t>(port - port_range_start)] = true;

  PortMap ports;
  size_t next = 0;
  for (const PortSpec& spec : def.port_template) {
    while (next < used.size() && used[next]) ++next;
    // CheckFits counted the free ports, so this cannot run out.
    ports[spec.name] = port_range_start + static_cast<int>(next);
    used[next] = true;
  }
  reservations[instance.value] = Reservation{def.resource_requirements, def.node_count};
  if (!ports.empty()) port_allocations[instance.value] = ports;
  return ports;
}

void Worker::ReleaseCapacity(const InstanceId& instance) { reservations.erase(instance.value); }
void Worker::ReleasePorts(const InstanceId& instance) { port_allocations.erase(instance.value); }

Result<WorkerChange> Worker::MoveTo(WorkerState to, Timestamp at, std::string reason, std::string actor) {
  if (!IsLegalMove(state, to)) return Error::Conflict(IllegalWorkerMove(state, to), "state");
  if (to == WorkerState::kStopping && ActiveInstances() > 0)
    return Error::FailedPrecondition("worker " + id.value + " still has " + std::to_string(ActiveInstances()) +
                                         " active instances",
                                     "state");
  WorkerChange change{state, to, at, std::move(reason), std::move(actor)};
  state = to;
  state_history.push_back(change);
  if (to == WorkerState::kRunning && ActiveInstances() == 0) idle_since = at;
  return change;
}

Worker RequestedWorker(WorkerId id, std::string template_name, Timestamp now) {
  Worker w;
  w.name = "scaled-" + id.value;
  w.id = std::move(id);
  w.template_name = std::move(template_name);
  w.created_at = now;
  w.scaled_up = true;
  return w;
}

Status Worker::Provisioned(const WorkerDraft& d) {
  if (d.hostname.empty()) return Error::InvalidArgument("hostname must not be empty", "hostname");
  if (auto s = CheckCmlUrl(d.cml_url); !s) return s;
  if (d.capacity.cpu_cores <= 0 || d.capacity.memory_gb <= 0 || d.max_nodes < 1)
    return Error::InvalidArgument("capacity must be greater than 0", "capacity");
  hostname = d.hostname;
  public_ip = d.public_ip;
  private_ip = d.private_ip;
  cml_url = d.cml_url;
  license_type = d.license_type;
  capacity = d.capacity;
  max_nodes = d.max_nodes;
  return {};
}

Result<Worker> NewWorker(WorkerDraft d, WorkerId id, Timestamp now, std::string actor) {
  if (d.name.empty() || d.name.size() > 128)
    return Error::InvalidArgument("name must be 1-128 characters", "name");
  if (d.hostname.empty()) return Error::InvalidArgument("hostname must not be empty", "hostname");
  if (auto s = CheckCmlUrl(d.cml_url); !s) return s.error();
  if (!d.cml_ca_pem.empty())
    if (auto s = CheckCaPem(d.cml_ca_pem); !s) return s.error();
  if (!std::isfinite(d.capacity.cpu_cores) || d.capacity.cpu_cores <= 0)
    return Error::InvalidArgument("cpu_cores must be greater than 0", "capacity.cpu_cores");
  if (!std::isfinite(d.capacity.memory_gb) || d.capacity.memory_gb <= 0)
    return Error::InvalidArgument("memory_gb must be greater than 0", "capacity.memory_gb");
  if (!std::isfinite(d.capacity.storage_gb) || d.capacity.storage_gb < 0)
    return Error::InvalidArgument("storage_gb must be 0 or more", "capacity.storage_gb");
  if (d.max_nodes < 1) return Error::InvalidArgument("max_nodes must be at least 1", "capacity.max_nodes");
  if (d.port_range_start < 1 || d.port_range_start > 65535)
    return Error::InvalidArgument("port range start must be 1-65535", "port_range.start");
  if (d.port_range_end < d.port_range_start || d.port_range_end > 65535)
    return Error::InvalidArgument("port range end must be between its start and 65535", "port_range.end");
  if (d.initial_state != WorkerState::kPending && d.initial_state != WorkerState::kRunning)
    return Error::InvalidArgument("a new worker starts PENDING or RUNNING", "state");

  Worker w;
  w.id = std::move(id);
  w.name = std::move(d.name);
  w.template_name = std::move(d.template_name);
  w.hostname = std::move(d.hostname);
  w.public_ip = std::move(d.public_ip);
  w.private_ip = std::move(d.private_ip);
  w.cml_url = std::move(d.cml_url);
  w.cml_ca_pem = std::move(d.cml_ca_pem);
  w.license_type = d.license_type;
  w.capacity = d.capacity;
  w.max_nodes = d.max_nodes;
  w.port_range_start = d.port_range_start;
  w.port_range_end = d.port_range_end;
  w.created_at = now;
  if (d.initial_state == WorkerState::kRunning) {
    // A host that is already up went through the same states, recorded at once.
    for (WorkerState s : {WorkerState::kProvisioning, WorkerState::kRunning}) {
      auto moved = w.MoveTo(s, now, "registered as running", actor);
      if (!moved) return moved.error();
    }
  }
  return w;
}

}  // namespace ccm::domain
