#pragma once

#include <gtest/gtest.h>

#include "domain/definition.h"
#include "ports/cml.h"

namespace ccm::testing {

// CML for tests of the scheduler, which never calls it: any call is a failure of the test.
struct NoCml : ports::CmlWorkers {
  Result<std::string> ImportLab(const ports::CmlTarget&, const std::string&, const std::string&) override { return Refuse(); }
  Status StartLab(const ports::CmlTarget&, const std::string&) override { return Refuse(); }
  Result<ports::CmlLabState> LabState(const ports::CmlTarget&, const std::string&) override { return Refuse(); }
  Status StopLab(const ports::CmlTarget&, const std::string&) override { return Refuse(); }
  Status WipeLab(const ports::CmlTarget&, const std::string&) override { return Refuse(); }
  Status DeleteLab(const ports::CmlTarget&, const std::string&) override { return Refuse(); }
  Result<std::vector<ports::CmlLab>> ListLabs(const ports::CmlTarget&) override { return Refuse(); }
  static Error Refuse() {
    ADD_FAILURE() << "the scheduler called CML";
    return Error::Unavailable("no CML here");
  }
};

// A definition with two ports (serial and vnc) that needs `cpu` cores per instance.
inline domain::DefinitionDraft TwoPortDraft(double cpu) {
  domain::DefinitionDraft dd;
  dd.name = "lab";
  dd.version = "1.0.0";
  dd.lab_yaml = "nodes:\n  - id: n0\n    label: r1\n    tags: ['serial:${PORT_A}', 'vnc:${PORT_B}']\n";
  dd.resource_requirements = {cpu, cpu * 2, 0};
  dd.license_affinity = {domain::LicenseType::kEnterprise};
  dd.max_duration_minutes = 120;
  dd.created_by = "test";
  return dd;
}

}  // namespace ccm::testing
