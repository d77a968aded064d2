#pragma once

#include <string>

#include "support/http_client.h"

namespace ccm::testing {

// A definition and a RUNNING worker with room for many instances, created through the API.
struct LabSeed {
  std::string definition_id;
  std::string worker_id;
};

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
