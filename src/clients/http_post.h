#pragma once

#include <chrono>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <string>
#include <vector>

#include "ports/observers.h"
#include "transport/http_connection.h"

namespace ccm::clients {

// Percent-encodes a URL path segment or a form value (libcurl's escaping).
using transport::UrlEscape;

// `text` with every occurrence of each non-empty secret replaced by "[redacted]": for error
// messages that quote what a remote answered, in case it echoes a token or a password.
std::string Redact(std::string text, std::initializer_list<std::string_view> secrets);

// What came back from one request: status, body, Retry-After, or the transport error.
using HttpAnswer = transport::Response;

// The certificates that verify a server over https. Verification itself (the peer's chain
// and its name) is always on: there is no setting that turns it off.
struct TlsTrust {
  std::string ca_file;  // a PEM bundle on disk; empty: the system's CA store
  std::string ca_pem;   // PEM text; when set, used instead of ca_file (CURLOPT_CAINFO_BLOB)
};

// A transport::Connection for the clients: the remote's metrics tag and TLS trust in the
// clients' terms. Not thread-safe: one request at a time.
class HttpPoster {
 public:
  HttpPoster() = default;
  HttpPoster(const HttpPoster&) = delete;
  HttpPoster& operator=(const HttpPoster&) = delete;

  HttpAnswer Post(const std::string& url, const std::map<std::string, std::string>& headers, const std::string& body,
                  std::chrono::milliseconds connect_timeout, std::chrono::milliseconds total_timeout) {
    return Send("POST", url, headers, body, connect_timeout, total_timeout);
  }
  // Any method; `body` is sent when it is not empty (or the method is POST or PUT).
  HttpAnswer Send(const std::string& method, const std::string& url, const std::map<std::string, std::string>& headers,
                  const std::string& body, std::chrono::milliseconds connect_timeout,
                  std::chrono::milliseconds total_timeout);

  // The certificates later requests over https are verified with.
  void SetTrust(TlsTrust trust);
  // Who is told of each call from now on (its outcome and duration), under which remote name.
  void SetTag(ports::RemoteTag tag);

 private:
  transport::Connection connection_;
};

// Keep-alive connections for calls made side by side to one remote: Take hands out an idle
// connection (a new one, prepared by `setup`, when none is idle) and Give takes it back for
// the next call. So there are as many connections as calls were ever in flight at once, each
// used by one call at a time, and no lock is held across a request. Thread-safe.
class HttpPosterPool {
 public:
  explicit HttpPosterPool(std::function<void(HttpPoster&)> setup = {}) : setup_(std::move(setup)) {}
  HttpPosterPool(const HttpPosterPool&) = delete;
  HttpPosterPool& operator=(const HttpPosterPool&) = delete;

  std::unique_ptr<HttpPoster> Take();
  void Give(std::unique_ptr<HttpPoster> http);

 private:
  std::function<void(HttpPoster&)> setup_;
  std::mutex mu_;
  std::vector<std::unique_ptr<HttpPoster>> idle_;
};

}  // namespace ccm::clients
