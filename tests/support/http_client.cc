#include "support/http_client.h"

#include "transport/http_connection.h"

namespace ccm::testing {

namespace {

// The tests see the requests they send, not the trace of the thread that sends them.
transport::ConnectionOptions Options() {
  transport::ConnectionOptions o;
  o.propagate_trace = false;
  return o;
}

}  // namespace

HttpClient::HttpClient(std::string base_url)
    : base_(std::move(base_url)), connection_(std::make_unique<transport::Connection>(Options())) {}
HttpClient::~HttpClient() = default;

HttpResult HttpClient::Get(const std::string& path) { return Send("GET", path, "", {}); }
HttpResult HttpClient::Delete(const std::string& path) { return Send("DELETE", path, "", {}); }
HttpResult HttpClient::Post(const std::string& path, const std::string& body, const std::string& content_type) {
  std::map<std::string, std::string> headers;
  if (!content_type.empty()) headers["Content-Type"] = content_type;
  return Send("POST", path, body, headers);
}

HttpResult HttpClient::Send(const std::string& method, const std::string& path, const std::string& body,
                            const std::map<std::string, std::string>& headers) {
  transport::Headers sent = headers;
  // An absent Content-Type must stay absent, not become libcurl's form default.
  sent.try_emplace("Content-Type", "");
  if (!bearer_.empty() && !headers.count("Authorization")) sent["Authorization"] = "Bearer " + bearer_;
  transport::Request request;
  request.method = method;
  request.headers = &sent;
  request.body = body;
  request.total_timeout = std::chrono::seconds(30);
  request.want_headers = true;
  transport::Response answer = connection_->Send(base_ + path, request);
  HttpResult out;
  if (!answer.transport_error.empty()) {
    out.error = std::move(answer.transport_error);
    return out;
  }
  out.status = answer.status;
  out.body = std::move(answer.body);
  for (auto& [name, value] : answer.headers) out.headers[name] = std::move(value);  // the last one wins
  return out;
}

}  // namespace ccm::testing
