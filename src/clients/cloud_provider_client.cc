#include "clients/cloud_provider_client.h"

#include <nlohmann/json.hpp>

#include "cloudevents/json_parse.h"
#include "transport/retry.h"

namespace ccm::clients {

using nlohmann::json;

namespace {

Result<ports::CloudWorker> ParseWorker(const std::string& body) {
  const json j = cloudevents::ParseJsonOrDiscarded(body);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string())
    return Error::Unavailable("cloud provider: the answer is not a worker");
  ports::CloudWorker w;
  w.id = j["id"];
  const std::string state = j.value("state", "");
  w.ready = state == "running";
  w.released = state == "released" || state == "terminated";
  w.hostname = j.value("hostname", "");
  w.public_ip = j.value("public_ip", "");
  w.private_ip = j.value("private_ip", "");
  w.cml_url = j.value("cml_url", "");
  w.license_type = domain::ParseLicenseType(j.value("license_type", "ENTERPRISE")).value_or(domain::LicenseType::kEnterprise);
  const json capacity = j.value("capacity", json::object());
  w.capacity.cpu_cores = capacity.value("cpu_cores", 0.0);
  w.capacity.memory_gb = capacity.value("memory_gb", 0.0);
  w.capacity.storage_gb = capacity.value("storage_gb", 0.0);
  w.max_nodes = j.value("max_nodes", 0);
  return w;
}

}  // namespace

Result<std::string> CloudProviderClient::Call(const std::string& method, const std::string& path,
                                              const std::string& body) {
  const std::string call = "cloud provider " + method + " " + path;
  std::lock_guard lock(mu_);
  const HttpAnswer a = http_.Send(method, base_url_ + path, {{"content-type", "application/json"}}, body,
                                  std::chrono::seconds(2), std::chrono::seconds(10));
  if (!a.transport_error.empty()) return Error::Unavailable(call + ": " + a.transport_error);
  if (a.status >= 200 && a.status < 300) return a.body;
  const std::string status = "HTTP " + std::to_string(a.status);
  if (transport::IsRetryableStatus(a.status)) return Error::Unavailable(call + ": " + status);
  if (a.status == 404) return Error::NotFound(call + ": " + status);
  return Error::InvalidArgument(call + ": " + status + ": " + a.body.substr(0, 200));
}

Result<ports::CloudWorker> CloudProviderClient::Launch(const std::string& template_name, const std::string& client_token) {
  auto body = Call("POST", "/v1/workers", json{{"template", template_name}, {"client_token", client_token}}.dump());
  if (!body) return body.error();
  return ParseWorker(*body);
}

Result<ports::CloudWorker> CloudProviderClient::Describe(const std::string& id) {
  auto body = Call("GET", "/v1/workers/" + UrlEscape(id), "");
  if (!body) return body.error();
  return ParseWorker(*body);
}

Status CloudProviderClient::Release(const std::string& id) {
  auto body = Call("DELETE", "/v1/workers/" + UrlEscape(id), "");
  if (!body) return body.error();
  return {};
}

}  // namespace ccm::clients
