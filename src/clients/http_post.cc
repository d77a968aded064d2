#include "clients/http_post.h"

namespace ccm::clients {

std::string Redact(std::string text, std::initializer_list<std::string_view> secrets) {
  for (std::string_view secret : secrets) {
    if (secret.empty()) continue;
    for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos))
      text.replace(pos, secret.size(), "[redacted]");
  }
  return text;
}

HttpAnswer HttpPoster::Send(const std::string& method, const std::string& url,
                            const std::map<std::string, std::string>& headers, const std::string& body,
                            std::chrono::milliseconds connect_timeout, std::chrono::milliseconds total_timeout) {
  transport::Request request;
  request.method = method;
  request.headers = &headers;
  request.body = body;
  request.connect_timeout = connect_timeout;
  request.total_timeout = total_timeout;
  return connection_.Send(url, request);
}

void HttpPoster::SetTrust(TlsTrust trust) {
  transport::TlsOptions tls;
  tls.ca_file = std::move(trust.ca_file);
  tls.ca_pem = std::move(trust.ca_pem);
  connection_.SetTls(std::move(tls));
}

void HttpPoster::SetTag(ports::RemoteTag tag) {
  if (!tag.observer) {
    connection_.SetObserver({});
    return;
  }
  connection_.SetObserver([tag = std::move(tag)](long status, bool transport_failed, std::chrono::nanoseconds took) {
    tag.Observe(ports::RemoteOutcomeOf(status, transport_failed), took);
  });
}

std::unique_ptr<HttpPoster> HttpPosterPool::Take() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto http = std::move(idle_.back());
      idle_.pop_back();
      return http;
    }
  }
  auto http = std::make_unique<HttpPoster>();
  if (setup_) setup_(*http);
  return http;
}

void HttpPosterPool::Give(std::unique_ptr<HttpPoster> http) {
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(http));
}

}  // namespace ccm::clients
