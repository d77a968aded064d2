#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/result.h"
#include "domain/states.h"
#include "domain/types.h"

namespace ccm::domain {

struct LabletDefinition;
struct WorkerDraft;

// What an instance holds on its worker while it is active.
struct Reservation {
  Resources resources;
  int nodes = 0;
  bool operator==(const Reservation&) const = default;
};

using WorkerChange = StateChange<WorkerState>;

inline constexpr int kDefaultPortRangeStart = 2000;
inline constexpr int kDefaultPortRangeEnd = 9999;

// A CML host. Capacity and ports are accounted per instance, so that releasing an instance
// gives back exactly what it took.
struct Worker {
  WorkerId id;
  std::string name;
  std::string template_name;
  std::string hostname;
  std::string public_ip;
  std::string private_ip;
  std::string cml_url;
  // PEM certificates that verify this worker's CML over https (instead of CML_CA_FILE or the
  // system's store); empty for those.
  std::string cml_ca_pem;
  LicenseType license_type = LicenseType::kEnterprise;
  WorkerState state = WorkerState::kPending;
  std::vector<WorkerChange> state_history;
  Resources capacity;  // declared
  int max_nodes = 0;   // declared; a PERSONAL licence caps it at 20
  int port_range_start = kDefaultPortRangeStart;
  int port_range_end = kDefaultPortRangeEnd;  // inclusive
  std::map<std::string, Reservation> reservations;  // instance id -> capacity it holds
  std::map<std::string, PortMap> port_allocations;  // instance id -> its ports
  Timestamp created_at;
  // The cloud provider's id of a worker ccm launched (scaling up); empty for one registered.
  std::string cloud_id;
  // When the last instance gave back what it held here (or when the worker became RUNNING, if
  // later): an idle worker is drained after a grace period from this time.
  std::optional<Timestamp> idle_since;
  bool scaled_up = false;   // asked for by the scaler
  bool scale_down = false;  // drained by the scaler, to be released once STOPPED
  std::int64_t version = 0;

  // The node limit in force: max_nodes, capped at 20 under a PERSONAL licence.
  int EffectiveMaxNodes() const;
  // The sum of all reservations.
  Reservation Allocated() const;
  // Instances that hold capacity or ports here.
  int ActiveInstances() const;
  int FreePorts() const;

  // Whether an instance of `def` fits: RUNNING, licence in the affinity, cpu, memory,
  // storage, nodes and ports. Errors: failed_precondition saying which one is short.
  Status CheckFits(const LabletDefinition& def) const;
  // Reserves capacity and the lowest free ports for `instance`, one per entry of the port
  // template. Errors: those of CheckFits; conflict if `instance` already holds an allocation.
  Result<PortMap> Allocate(const InstanceId& instance, const LabletDefinition& def);
  // Give back what `instance` holds; doing it twice is harmless.
  void ReleaseCapacity(const InstanceId& instance);
  void ReleasePorts(const InstanceId& instance);

  // Moves to `to` if the state machine allows it. DRAINING -> STOPPING (and RUNNING ->
  // STOPPING) needs no active instance. Errors: conflict naming the current state and the
  // allowed moves; failed_precondition when instances are still active.
  // Moving to RUNNING with nothing on the worker makes it idle from `at`.
  Result<WorkerChange> MoveTo(WorkerState to, Timestamp at, std::string reason, std::string actor);

  // Takes the address, licence and capacity of a machine a cloud provider started for this
  // worker (the draft's name, template, ports, state and CA are not used). Errors:
  // invalid_argument naming the field (cml_url: the rule of CheckCmlUrl).
  Status Provisioned(const WorkerDraft& d);
};

// The rule every worker's cml_url follows, wherever it comes from (registration, a cloud
// provider's answer): an absolute `http://` or `https://` URL (scheme in lower case) with a
// host, an optional port 1-65535 and an optional path; no userinfo (`user:pass@`), no query,
// no fragment, no whitespace or control characters, at most 2048 bytes. ccm appends
// `/api/v0/...` to it, which is why a query or a fragment is refused too. Errors:
// invalid_argument, field "cml_url", the message naming the rule broken.
Status CheckCmlUrl(std::string_view url);

// The host of a cml_url that CheckCmlUrl accepts, in lower case, without brackets for an IPv6
// literal; "" for any other text.
std::string CmlUrlHost(std::string_view url);

// Which hosts a worker's cml_url may name (CML_URL_ALLOW). An entry starting with "." is a
// suffix: ".lab.example.com" allows "cml1.lab.example.com" (not "lab.example.com" itself);
// any other entry is one exact host name or IP literal. Compared without regard to case. An
// empty list allows every host.
struct CmlUrlAllowList {
  std::vector<std::string> entries;

  // Errors: those of CheckCmlUrl; invalid_argument, field "cml_url", when the list is not
  // empty and no entry allows the URL's host.
  Status Check(std::string_view url) const;
};

// The largest cml_ca_pem accepted: a bundle of a few certificates.
inline constexpr std::size_t kMaxCmlCaPemBytes = 64 * 1024;

// Whether `pem` is a PEM bundle of certificates: one or more "-----BEGIN CERTIFICATE-----"
// ... "-----END CERTIFICATE-----" blocks of base64 text, nothing but whitespace between
// them, at most kMaxCmlCaPemBytes. Structure only: whether the certificates are sound is
// decided by TLS when the worker is called. Errors: invalid_argument, field "cml_ca_pem".
Status CheckCaPem(std::string_view pem);

// What a caller supplies to register a worker.
struct WorkerDraft {
  std::string name;
  std::string template_name;
  std::string hostname;
  std::string public_ip;
  std::string private_ip;
  std::string cml_url;
  // PEM certificates that verify this worker's CML over https instead of CML_CA_FILE or the
  // system's store; empty for those. Checked with CheckCaPem.
  std::string cml_ca_pem;
  LicenseType license_type = LicenseType::kEnterprise;
  Resources capacity;
  int max_nodes = 0;
  int port_range_start = kDefaultPortRangeStart;
  int port_range_end = kDefaultPortRangeEnd;
  // The state a registered worker starts in: PENDING for one still to be provisioned, or
  // RUNNING for a host that is already up.
  WorkerState initial_state = WorkerState::kPending;
};

// A PENDING worker the scaler asks for: only its template is known until a cloud provider
// starts a machine for it (Worker::Provisioned).
Worker RequestedWorker(WorkerId id, std::string template_name, Timestamp now);

// Validates the draft (cml_url by CheckCmlUrl, cml_ca_pem by CheckCaPem when not empty).
// Errors: invalid_argument naming the field.
Result<Worker> NewWorker(WorkerDraft draft, WorkerId id, Timestamp now, std::string actor);

}  // namespace ccm::domain
