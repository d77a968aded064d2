#include "clients/assessment_platform_client.h"

#include <nlohmann/json.hpp>

#include "wire/pod.h"

namespace ccm::clients {

Status AssessmentPlatformClient::TriggerCollection(const ports::CollectionRequest& request) {
  return caller_.Post("/api/v1/collections", nlohmann::json{{"instance_id", request.instance_id},
                                                             {"cml_lab_id", request.cml_lab_id},
                                                             {"worker_hostname", request.worker_hostname}}
                                                 .dump());
}

Status GradingEngineClient::AssignPod(const std::string& session_id, const std::string& part_id,
                                      const domain::Pod& pod) {
  return caller_.Post("/api/v1/sessions/" + UrlEscape(session_id) + "/parts/" + UrlEscape(part_id) + "/pod",
                      wire::EncodePodForGradingEngine(pod));
}

}  // namespace ccm::clients
