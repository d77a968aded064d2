#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// The one HTTP client of ccm, over libcurl: the clients, the CLI and the tests send their
// requests through a Connection (the etcd store speaks gRPC). Nothing else includes libcurl.
namespace ccm::transport {

// Percent-encodes `v` for a URL path segment or a form value (libcurl's escaping).
std::string UrlEscape(std::string_view v);

// Request headers by name. A header with an empty value is not sent, and removes one that
// libcurl would add by default (`{"Content-Type", ""}`: no form content type on a POST).
using Headers = std::map<std::string, std::string>;

// The certificates of TLS (https:// URLs), as PEM. Verification of the server's chain and
// host name is always on: there is no setting that turns it off.
struct TlsOptions {
  std::string ca_file{};    // a CA bundle on disk; empty: the system's CA store
  std::string ca_pem{};     // CA certificates as text; when set, used instead of ca_file
  std::string cert_file{};  // the client certificate to present; empty: none
  std::string key_file{};   // the client certificate's private key
};

// Why no HTTP answer came back, for callers that explain a failure (the etcd client tells an
// operator which setting to check).
enum class Failure {
  kNone,               // an HTTP answer came back (whatever its status)
  kTimedOut,           // the connect or the total timeout elapsed
  kTlsPeerUnverified,  // the server's certificate is not signed by a trusted CA, or does not name its host
  kTlsLocalFiles,      // the CA file, the client certificate or its key could not be read or used
  kAborted,            // the caller stopped a streamed answer (Request::on_chunk or keep_going)
  kOther,              // anything else: refused, unreachable, reset, a TLS alert, ...
};

// One request. Nothing is owned: what `headers` points to and what `body` views must live
// until Send returns.
struct Request {
  // Any method. GET sends no body; other methods send `body` when it is not empty or the
  // method is POST or PUT (then with a Content-Length, 0 for an empty body).
  std::string method = "POST";
  const Headers* headers = nullptr;  // null: none but libcurl's own
  std::string_view body = {};
  std::chrono::milliseconds connect_timeout{0};  // 0: libcurl's default (300 s)
  std::chrono::milliseconds total_timeout{0};    // 0: none (a stream may last for ever)
  bool want_headers = false;                     // fill Response::headers
  // Streaming: when set, each piece of the answer's body is handed to `on_chunk` as it
  // arrives, instead of being collected in Response::body; returning false aborts the
  // transfer (Failure::kAborted). `keep_going` (optional) is polled about once a second
  // while nothing arrives, and aborts the transfer when it returns false. Called on the
  // thread that called Send.
  std::function<bool(std::string_view chunk)> on_chunk = {};
  std::function<bool()> keep_going = {};
};

// What came back from one request.
struct Response {
  // Empty when an HTTP answer came back; else libcurl's reason, followed by the detail of
  // its error buffer in parentheses when there is one (for TLS: which certificate was
  // refused, or the server's alert).
  std::string transport_error;
  Failure failure = Failure::kNone;
  long status = 0;   // 0 when no HTTP answer came back
  std::string body;  // empty when streamed
  std::string retry_after;  // the Retry-After header, trimmed, if any
  // With Request::want_headers: every header of the final answer in the order received,
  // names in lower case, values trimmed. Empty otherwise.
  std::vector<std::pair<std::string, std::string>> headers;
};

// How each request ended, for metrics: the status (0 when none), whether no HTTP answer came
// back, and how long the request took. Called on the thread that called Send.
using Observer = std::function<void(long status, bool transport_failed, std::chrono::nanoseconds took)>;

// Settings of a connection that hold for all its requests.
struct ConnectionOptions {
  TlsOptions tls{};
  // Sends the calling thread's trace (trace::Current()) as a child span in `traceparent` and
  // `tracestate`, unless the request sets `traceparent` itself.
  bool propagate_trace = true;
  Observer observer{};  // none: nothing is told
};

// One keep-alive libcurl handle: requests to the same host reuse its connection. Not
// thread-safe: one request at a time; a pool of connections serves several threads. "Expect:
// 100-continue" is never sent (one round trip less for bodies over 1 KiB).
class Connection {
 public:
  explicit Connection(ConnectionOptions options = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends `request` to `url` and waits for the whole answer (or the end of the stream).
  // Never throws for what the network does: a failure is in Response::transport_error.
  Response Send(const std::string& url, const Request& request);

  // Settings for later requests.
  void SetTls(TlsOptions tls) { options_.tls = std::move(tls); }
  void SetObserver(Observer observer) { options_.observer = std::move(observer); }
  const ConnectionOptions& options() const { return options_; }

 private:
  void* curl_;  // CURL*, kept out of this header so that no caller includes libcurl
  ConnectionOptions options_;
};

}  // namespace ccm::transport
