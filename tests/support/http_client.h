#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace ccm::transport {
class Connection;
}

namespace ccm::testing {

struct HttpResult {
  long status = 0;  // 0 when the request could not be sent
  std::string body;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string error;                           // the transport's message when status is 0

  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
  std::string ContentType() const {
    auto it = headers.find("content-type");
    return it == headers.end() ? "" : it->second;
  }
};

// A keep-alive HTTP/1.1 client on ccm_transport, for tests. One per thread.
class HttpClient {
 public:
  explicit HttpClient(std::string base_url);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpResult Get(const std::string& path);
  HttpResult Delete(const std::string& path);
  HttpResult Post(const std::string& path, const std::string& body,
                  const std::string& content_type = "application/json");
  HttpResult PostJson(const std::string& path, const nlohmann::json& body) { return Post(path, body.dump()); }
  // Any method, any headers ("Name: value").
  HttpResult Send(const std::string& method, const std::string& path, const std::string& body,
                  const std::map<std::string, std::string>& headers);
  // Sends "Authorization: Bearer <token>" with every request that sets no Authorization.
  void SetBearer(std::string token) { bearer_ = std::move(token); }

 private:
  std::string base_;
  std::string bearer_;
  std::unique_ptr<transport::Connection> connection_;
};

}  // namespace ccm::testing
