#include "clients/assessment_platform_client.h"

#include <curl/curl.h>

#include <nlohmann/json.hpp>

namespace ccm::clients {

namespace {

std::string PathSegment(const std::string& v) {
  char* e = curl_easy_escape(nullptr, v.c_str(), static_cast<int>(v.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

}  // namespace

Status AssessmentPlatformClient::TriggerCollection(const app::CollectionRequest& request) {
  return caller_.Post("/api/v1/collections", nlohmann::json{{"instance_id", request.instance_id},
                                                             {"cml_lab_id", request.cml_lab_id},
                                                             {"worker_hostname", request.worker_hostname}}
                                                 .dump());
}

Status GradingEngineClient::AssignPod(const std::string& session_id, const std::string& part_id,
                                      const std::string& pod_json) {
  return caller_.Post("/api/v1/sessions/" + PathSegment(session_id) + "/parts/" + PathSegment(part_id) + "/pod",
                      pod_json);
}

}  // namespace ccm::clients
