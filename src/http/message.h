#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "auth/jwt.h"

namespace ccm::http {

// A request as handlers see it, independent of the HTTP library.
struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // without the query, percent-decoded
  std::map<std::string, std::string> query;    // decoded query parameters (last one wins)
  std::map<std::string, std::string> headers;  // names in lower case
  std::map<std::string, std::string> params;   // path parameters filled in by the router
  std::string body;
  std::string subject;  // who the verified bearer token names; empty without authentication
  // The verified caller and its roles; nullopt without authentication (--insecure-no-auth),
  // when nobody is known to hold any role.
  std::optional<auth::Principal> principal = std::nullopt;
  // The path as sent, still percent-encoded: the router splits it into segments before it
  // decodes each, so that %2F is a slash inside a segment. Empty: split `path`.
  std::string raw_path = {};
  // The pattern of the route that matched ("/api/v1/instances/{id}"), set by the router;
  // empty when none did. Labels metrics and the access log without unbounded values.
  std::string route = {};
  // 1 + the index of that route among the router's, once Router::Resolve found it; kNoRoute
  // once it found none; 0: not looked for yet. Set it back to 0 before changing `path` or
  // `method` of a request resolved already.
  static constexpr std::size_t kNoRoute = static_cast<std::size_t>(-1);
  std::size_t route_index = 0;
  // This request's id: the client's X-Request-Id when it is a short token, else one the
  // server made. Sent back in X-Request-Id and named in the access log.
  std::string id = {};

  // The header's value, or "" when absent. `name` in lower case.
  std::string_view Header(std::string_view name) const;
};

// A response body written as it is produced (Server-Sent Events), for as long as it lasts.
// The server writes it chunked on the connection's I/O strand and closes the connection when
// it ends. Implementations are thread-safe: Start and Read run on an I/O thread, Drain and
// Stop on an I/O thread or the thread that stops the server.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // Called once before the first Read. `wake` is cheap, callable from any thread any number of
  // times until Stop returns, and makes the server call Read again soon.
  virtual void Start(std::function<void()> wake) = 0;
  // Appends the body's next bytes to `out` (nothing when none are ready). Returns false once
  // the body is complete: what `out` got is its end, and Read is not called again.
  virtual bool Read(std::string& out) = 0;
  // The server is draining: returns the body's last bytes; Read is not called again.
  virtual std::string Drain() = 0;
  // The connection ended, however it ended (body complete, client gone, write timeout,
  // drain, server stopped): `wake` is never called once this returns. Idempotent.
  virtual void Stop() = 0;
};

class Deferred;

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::map<std::string, std::string> headers;
  std::string body;
  // When set, the body is this stream and `body` is ignored. The server calls its Stop once,
  // whatever happens to the connection (also when it is never started, as for HEAD).
  std::shared_ptr<BodyStream> stream = nullptr;
  // When set, the answer is not ready yet and every other member is ignored: the server sends
  // what `deferred` is settled with, and holds no thread while it waits.
  std::shared_ptr<Deferred> deferred = nullptr;
};

// An answer its handler gives later, from another thread (a store's committer). It is settled
// once: with the answer (Complete), or with work the server runs on its handler threads and
// whose answer it sends (Continue), for what must block, such as deciding again on a fresh
// read. Dropped unsettled, it answers 500, so that no connection waits for it forever.
// Thread-safe.
class Deferred {
 public:
  using Work = std::function<Response()>;
  using Outcome = std::variant<Response, Work>;

  Deferred() = default;
  ~Deferred();
  Deferred(const Deferred&) = delete;
  Deferred& operator=(const Deferred&) = delete;

  void Complete(Response response) { Settle(std::move(response)); }
  void Continue(Work work) { Settle(std::move(work)); }
  // The server's side: `then` gets the outcome once, on the thread that settles it (this
  // one, before Then returns, when it is settled already).
  void Then(std::function<void(Outcome)> then);

 private:
  void Settle(Outcome outcome);

  std::mutex mu_;
  std::optional<Outcome> outcome_;
  std::function<void(Outcome)> then_;
  bool settled_ = false;
};

// Decodes %XX escapes (and '+' as space when `plus_as_space`). Malformed escapes are kept.
std::string PercentDecode(std::string_view in, bool plus_as_space);

// Splits "a=1&b=x%20y" into decoded pairs.
std::map<std::string, std::string> ParseQuery(std::string_view query);

}  // namespace ccm::http
