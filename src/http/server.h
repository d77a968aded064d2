#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "domain/result.h"
#include "http/message.h"

namespace ccm::http {

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;  // 0 picks a free port (tests)
  int io_threads = 2;         // network I/O
  int handler_threads = 32;   // run the handlers of writes, which may wait on a store commit
  int read_threads = 16;      // run the handlers of GET and HEAD, which may wait on a store read
  // Writes whose handler queues its commit and returns a deferred answer, settled by the
  // commit, instead of waiting for it: they run on a pool of their own of `queueing_threads`,
  // about one per core, so that each is decided by a thread already running rather than by a
  // thread woken for it, as a large pool of mostly idle threads does. Their handlers should
  // wait for nothing but a local store's reads (and, rarely, an issuer's keys fetched for an
  // unknown key id); a deferred answer's further work (Deferred::Continue), which may wait for
  // a commit, runs on the handler pool. Called on an I/O thread before the handler runs; it may
  // fill in what the handler reads of the request (Router::QueuesCommit resolves its route).
  // Null: there are none.
  std::function<bool(Request&)> queues_commit = nullptr;
  int queueing_threads = 2;
  // Paths (exact) whose handlers never block, for every method: answered on the I/O thread
  // that read the request, so that they answer while the pools are busy (a liveness probe),
  // and without a hop to a pool and back (a receiver that only acknowledges). Their handlers
  // answer at once: no deferred answer, no stream.
  std::vector<std::string> inline_paths = {};
  std::size_t body_limit = 1 << 20;       // larger bodies get 413
  std::size_t header_limit = 16 * 1024;   // larger header blocks (or chunk lines, trailers) get 431
  std::size_t max_header_count = 100;     // more header fields get 431
  std::chrono::milliseconds read_timeout{30'000};  // to read one request once it starts, or write one answer
  std::chrono::milliseconds idle_timeout{60'000};  // for the first byte of a request on an open connection
  std::size_t max_connections = 10'000;   // more get 503 (Retry-After: 1) and are closed
  // The kernel's send buffer of a connection writing a streamed body (Response::stream): what
  // a client that stops reading holds there at most.
  std::size_t stream_send_buffer = 64 * 1024;
  // Called once per answered request, on an I/O thread once the handler's answer is ready and
  // before it is written, with the time from the complete request to that moment. Must be
  // thread-safe. A streamed answer is observed once too, when it starts (its status and
  // headers), not when it ends.
  std::function<void(const Request&, const Response&, std::chrono::nanoseconds)> observe = nullptr;
};

// An HTTP/1.1 server (Boost.Beast, C++20 coroutines) with keep-alive. Requests are read and
// answers written on the I/O threads, which never run a handler that may block: GET and HEAD
// run on a bounded pool of read threads, other methods on a bounded pool of handler threads
// (those ServerOptions::queues_commit names on a small pool of their own),
// so that neither a read waiting on a slow store (or an issuer's keys) nor a write waiting for
// a group commit holds an I/O thread or a thread per connection, and reads do not queue behind
// writes (or the other way round). Only the `inline_paths`, whose handlers answer without
// waiting (a liveness probe), run on the I/O thread. Before the handler runs, a
// RequestReader (http/request_framing.h, where the rules are listed) refuses what ccm does
// not serve, each time followed by a close: bodies over the limit get 413, header blocks too
// large or with too many fields 431, malformed framing 400 (a NUL byte, a bare LF or an
// obs-fold in the header block, Content-Length with Transfer-Encoding, a Transfer-Encoding
// not ending in chunked, differing or non-decimal Content-Length, an HTTP/0.9 request line,
// anything else Beast's parser refuses). A connection that stays silent past the idle
// timeout, or takes longer than the read timeout to send a request, is closed; connections
// past the maximum get 503.
// Every 503, the handler's included, carries Retry-After (1 s unless the handler set one).
// When accept fails for lack of descriptors or memory, the server waits (10 ms doubling to
// 1 s) before the next one instead of spinning. All answers it makes itself are
// problem+json. The handler must be thread-safe.
//
// A handler may answer with a streamed body (Response::stream, http/message.h): the server
// writes it chunked as its source produces it, from the I/O threads without blocking them,
// each write bounded by the read timeout, and closes the connection when it ends. A streaming
// connection counts against the connection limit like any other.
//
// A graceful stop drains: BeginDrain (answers from then on carry `Connection: close`,
// connections waiting for a next request are closed, and streamed bodies end with their
// source's last bytes), CloseListener (new connections are refused), AwaitConnections (the
// requests in flight are answered), then Stop.
class Server {
 public:
  using HandlerFn = std::function<Response(Request&)>;

  Server(ServerOptions options, HandlerFn handler);
  ~Server();  // stops
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving. Errors: unavailable when the address cannot be bound.
  Status Start();
  // Stops accepting, closes connections and joins every thread. Idempotent.
  void Stop();

  // Starts a drain, at once and without blocking: the listener stays open, every answer
  // from now on carries `Connection: close`, a connection that has been answered is not
  // read again, and connections idle between requests (no byte of a next one received) are
  // closed. Requests already being read or handled go on. Idempotent.
  void BeginDrain();
  // Closes the listening socket: new connections are refused; those accepted go on. Closes
  // the connections idle between requests again, and a connection accepted that has sent
  // nothing yet is not waited for. Idempotent; blocks until the socket is closed.
  void CloseListener();
  // Waits until every connection has ended, or `timeout`. Returns how many are still open.
  std::size_t AwaitConnections(std::chrono::milliseconds timeout);
  // Whether BeginDrain was called.
  bool draining() const;
  // Connections open now.
  std::size_t open_connections() const;
  // Calls `fn` on an I/O thread every `period` from now until Stop (a heartbeat: when every
  // I/O thread is stuck, it stops being called). Call after Start.
  void Every(std::chrono::milliseconds period, std::function<void()> fn);
  // The bound port (useful with port 0), valid after Start.
  std::uint16_t port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ccm::http
