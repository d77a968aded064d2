#pragma once

#include <string>

#include "support/http_client.h"

namespace ccm::testing {

// A definition and a RUNNING worker with room for many instances, created through the API.
struct LabSeed {
  std::string definition_id;
  std::string worker_id;
};

// A RUNNING enterprise worker `name` (hostname NAME.lab) whose CML answers at `cml_url`.
inline nlohmann::json WorkerBody(const std::string& name, const std::string& cml_url, int cpu_cores) {
  return {{"name", name},
          {"hostname", name + ".lab"},
          {"public_ip", "203.0.113.10"},
          {"cml_url", cml_url},
          {"license_type", "ENTERPRISE"},
          {"capacity", {{"cpu_cores", cpu_cores}, {"memory_gb", 256}, {"storage_gb", 500}, {"max_nodes", 40}}},
          {"state", "RUNNING"}};
}

// The sample lab as a definition: 4 cores, 8 GB and 20 GB each.
inline nlohmann::json SampleDefinitionBody(const std::string& lab_yaml) {
  return {{"name", "devasc-lab"},
          {"version", "1.0.0"},
          {"lab_yaml", lab_yaml},
          {"resource_requirements", {{"cpu_cores", 4}, {"memory_gb", 8}, {"storage_gb", 20}}},
          {"license_affinity", {"ENTERPRISE"}},
          {"max_duration_minutes", 120},
          {"created_by", "test"}};
}

inline LabSeed SeedLab(HttpClient& http, const std::string& lab_yaml) {
  nlohmann::json def = {{"name", "lab"},
                        {"version", "1.0.0"},
                        {"lab_yaml", lab_yaml},
                        {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}},
                        {"license_affinity", {"ENTERPRISE"}},
                        {"max_duration_minutes", 120},
                        {"created_by", "test"}};
  nlohmann::json worker = {{"name", "w1"},
                           {"hostname", "w1.example"},
                           {"cml_url", "http://w1"},
                           {"license_type", "ENTERPRISE"},
                           {"capacity", {{"cpu_cores", 64}, {"memory_gb", 256}, {"max_nodes", 100}}},
                           {"state", "RUNNING"}};
  return {http.PostJson("/api/v1/definitions", def).Json()["id"], http.PostJson("/api/v1/workers", worker).Json()["id"]};
}

}  // namespace ccm::testing
