#pragma once

#include <string>

#include "domain/lifecycle.h"
#include "ports/outbox.h"
#include "ports/store.h"

namespace ccm::testing {

// Domain objects valid as they come, for tests that need one and do not care about details.
inline domain::LabletDefinition MakeDefinition(const std::string& id, const std::string& name,
                                               const std::string& version, int ports = 2) {
  domain::LabletDefinition d;
  d.id = {id};
  d.name = name;
  d.version = version;
  d.lab_yaml = "nodes: [{id: n0, label: r1}]\n";
  d.lab_yaml_hash = "sha256:00";
  d.resource_requirements = {1, 2, 0};
  d.license_affinity = {domain::LicenseType::kEnterprise};
  d.node_count = 1;
  for (int i = 0; i < ports; ++i) d.port_template.push_back({"serial_" + std::to_string(i + 1), "serial"});
  d.max_duration_minutes = 120;
  d.created_by = "test";
  d.created_at = FromUnixMillis(1000);
  return d;
}

inline domain::Worker MakeWorker(const std::string& id, domain::WorkerState state = domain::WorkerState::kRunning) {
  domain::Worker w;
  w.id = {id};
  w.name = id;
  w.hostname = id + ".example";
  w.cml_url = "http://" + id + ".example";
  w.license_type = domain::LicenseType::kEnterprise;
  w.state = state;
  w.capacity = {64, 256, 1000};
  w.max_nodes = 200;
  w.created_at = FromUnixMillis(1000);
  return w;
}

// A valid draft of a RUNNING worker named `name` with the given capacity.
inline domain::WorkerDraft MakeWorkerDraft(const std::string& name, domain::Resources capacity = {32, 128, 500},
                                           int max_nodes = 100) {
  domain::WorkerDraft d;
  d.name = name;
  d.hostname = name + ".example";
  d.cml_url = "https://" + name + ".example";
  d.capacity = capacity;
  d.max_nodes = max_nodes;
  d.initial_state = domain::WorkerState::kRunning;
  return d;
}

inline domain::LabletInstance MakeInstance(const std::string& id, const std::string& owner = "owner-1",
                                           const std::string& definition_id = "def-1") {
  domain::LabletInstance i;
  i.id = {id};
  i.definition_id = {definition_id};
  i.definition_version = "1.0.0";
  i.owner_id = owner;
  i.timeslot_start = FromUnixMillis(1'000'000);
  i.timeslot_end = FromUnixMillis(4'600'000);
  i.created_at = FromUnixMillis(1000);
  return i;
}

// An outbox event of type ccm.test about `subject`, whose whole JSON names its id.
// Commits `i` at its version and bumps that as the store does. Errors: the commit's.
inline Status CommitInstance(ports::Store& store, domain::LabletInstance& i) {
  ports::Changes c;
  c.instances = {i};
  auto s = store.Commit(c);
  if (s) ++i.version;
  return s;
}

inline ports::OutboxEvent MakeEvent(const std::string& id, const std::string& subject) {
  return {id, subject, "ccm.test", FromUnixMillis(5), "{\"id\":\"" + id + "\"}"};
}

}  // namespace ccm::testing
