#pragma once

#include <gtest/gtest.h>

#include "app/ports.h"
#include "domain/definition.h"

namespace ccm::testing {

// CML for tests of the scheduler, which never calls it: any call is a failure of the test.
struct NoCml : app::CmlWorkers {
  Result<std::string> ImportLab(const app::CmlTarget&, const std::string&, const std::string&) override { return Refuse(); }
  Status StartLab(const app::CmlTarget&, const std::string&) override { return Refuse(); }
  Result<app::CmlLabState> LabState(const app::CmlTarget&, const std::string&) override { return Refuse(); }
  Status StopLab(const app::CmlTarget&, const std::string&) override { return Refuse(); }
  Status WipeLab(const app::CmlTarget&, const std::string&) override { return Refuse(); }
  Status DeleteLab(const app::CmlTarget&, const std::string&) override { return Refuse(); }
  Result<std::vector<app::CmlLab>> ListLabs(const app::CmlTarget&) override { return Refuse(); }
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
