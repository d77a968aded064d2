// Asio in Boost 1.74 uses std::exchange in awaitable.hpp without including <utility>.
#include <utility>

#include "http/server.h"

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "http/problem.h"
#include "http/request_framing.h"
#include "log/log_context.h"

namespace ccm::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

// The client's X-Request-Id when it is 1 to 64 characters of [A-Za-z0-9._-], else 16 random
// hex digits: a value that is safe to log and to send back.
std::string RequestIdFor(const Request& request) {
  const std::string_view given = request.Header("x-request-id");
  const bool usable = !given.empty() && given.size() <= 64 && std::all_of(given.begin(), given.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  if (usable) return std::string(given);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  std::uint64_t bits = rng();
  for (char& c : id) {
    c = kHex[bits & 0xf];
    bits >>= 4;
  }
  return id;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// What every 503 tells the client (Retry-After, in seconds) unless its handler said otherwise.
constexpr const char* kRetryAfterSeconds = "1";

bhttp::response<bhttp::string_body> ToBeast(Response&& resp, unsigned version, bool keep_alive, bool head) {
  if (resp.status == 503 && std::none_of(resp.headers.begin(), resp.headers.end(),
                                         [](const auto& h) { return Lower(h.first) == "retry-after"; }))
    resp.headers["Retry-After"] = kRetryAfterSeconds;
  bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(resp.status), version};
  out.set(bhttp::field::server, "ccm");
  if (!resp.body.empty() || resp.status != 204) out.set(bhttp::field::content_type, resp.content_type);
  for (const auto& [k, v] : resp.headers) out.set(k, v);
  out.body() = std::move(resp.body);
  out.keep_alive(keep_alive);
  out.prepare_payload();
  // HEAD: the GET's headers, Content-Length included, and no body (RFC 9110, 9.3.2).
  if (head) out.body().clear();
  return out;
}

// Accept errors that mean the process (or the system) has no descriptor or memory for a new
// connection: the pending connection stays queued, and retrying at once would spin.
bool IsOutOfResources(const beast::error_code& ec) {
  namespace errc = boost::system::errc;
  return ec == errc::too_many_files_open || ec == errc::too_many_files_open_in_system ||
         ec == errc::no_buffer_space || ec == errc::not_enough_memory;
}

// The wait between accepts while out of descriptors: doubles from the first to the last.
constexpr std::chrono::milliseconds kFirstAcceptBackoff{10};
constexpr std::chrono::milliseconds kLastAcceptBackoff{1000};
// At most one warning per this period while accepts fail.
constexpr std::chrono::seconds kAcceptWarningEvery{10};

}  // namespace

class Server::Impl {
 public:
  Impl(ServerOptions options, HandlerFn handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        ioc_(options_.io_threads),
        pool_(static_cast<std::size_t>(std::max(1, options_.handler_threads))),
        read_pool_(static_cast<std::size_t>(std::max(1, options_.read_threads))),
        strand_(asio::make_strand(ioc_)),
        acceptor_(strand_),
        accept_backoff_(strand_) {
    if (options_.queues_commit) queueing_pool_.emplace(static_cast<std::size_t>(std::max(1, options_.queueing_threads)));
  }

  ~Impl() { Stop(); }

  Status Start() {
    beast::error_code ec;
    const auto address = asio::ip::make_address(options_.address, ec);
    if (ec) return Error::InvalidArgument("bad listen address " + options_.address + ": " + ec.message());
    const tcp::endpoint endpoint{address, options_.port};
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return Error::Unavailable("cannot listen on " + options_.address + ":" + std::to_string(options_.port) + ": " +
                                ec.message());
    port_ = acceptor_.local_endpoint().port();
    // The I/O threads run until Stop, also once the listener is closed and no connection is left.
    work_.emplace(ioc_.get_executor());
    // The acceptor lives on a strand: Stop closes it there, never while an accept starts.
    asio::co_spawn(strand_, Accept(), asio::detached);
    for (int i = 0; i < std::max(1, options_.io_threads); ++i) threads_.emplace_back([this] { ioc_.run(); });
    return {};
  }

  void Stop() {
    if (stopped_.exchange(true)) return;
    CloseListener();
    ioc_.stop();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    // No request starts now. One in a handler, or with a deferred answer that another thread
    // (a commit's) settles later, still refers to this server: wait for each while the pools
    // run, so that deferred work runs too (an answer then goes nowhere: ioc_ is stopped).
    for (auto waited = std::chrono::seconds(0); in_flight_.load() > 0; waited += std::chrono::seconds(1)) {
      if (waited.count() > 0 && waited.count() % 10 == 0)
        spdlog::warn("stopping: {} requests are still being answered (in a handler, or waiting for a commit)",
                     in_flight_.load());
      for (int n = 0; n < 1000 && in_flight_.load() > 0; ++n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    pool_.join();
    read_pool_.join();
    if (queueing_pool_) queueing_pool_->join();
    // No I/O thread runs now. A streamed body's source may still wake its connection, which
    // posts to ioc_: stop every one before ioc_ goes with the coroutines' frames.
    std::lock_guard lock(connections_mu_);
    for (auto& c : connections_)
      if (c->body) c->body->Stop();
  }

  void BeginDrain() {
    if (draining_.exchange(true)) return;
    CloseIdleConnections();
    EndStreams();
  }

  void CloseListener() {
    if (listener_closed_.exchange(true)) return;
    std::promise<void> closed;
    asio::post(strand_, [this, &closed] {
      beast::error_code ec;
      acceptor_.close(ec);
      accept_backoff_.cancel();
      closed.set_value();
    });
    if (!threads_.empty()) closed.get_future().wait();
    CloseIdleConnections();
  }

  std::size_t AwaitConnections(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (open_connections_.load() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return open_connections_.load();
  }

  bool draining() const { return draining_.load(); }
  std::size_t open_connections() const { return open_connections_.load(); }

  void Every(std::chrono::milliseconds period, std::function<void()> fn) {
    asio::co_spawn(ioc_, Heartbeat(period, std::move(fn)), asio::detached);
  }

  std::uint16_t port() const { return port_; }

 private:
  awaitable<void> Accept() {
    std::chrono::milliseconds backoff{0};
    std::chrono::steady_clock::time_point last_warning;
    for (;;) {
      beast::error_code ec;
      // Each connection gets its own strand, so that its timer and its reads never run at once.
      tcp::socket socket =
          co_await acceptor_.async_accept(asio::make_strand(ioc_), asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (!acceptor_.is_open()) co_return;
        // A failed accept must not stop the server. Out of descriptors, the connection stays
        // queued and the listening socket stays readable: wait (longer each time) for a
        // connection to close instead of spinning on it.
        if (!IsOutOfResources(ec)) continue;
        backoff = backoff.count() == 0 ? kFirstAcceptBackoff : std::min(backoff * 2, kLastAcceptBackoff);
        if (const auto now = std::chrono::steady_clock::now(); now - last_warning >= kAcceptWarningEvery) {
          last_warning = now;
          // strerror, not ec.message(): the system category's object, from Boost's shared
          // library, fails UBSan's vptr check when its message is asked for.
          spdlog::warn("cannot accept a connection ({}) with {} open: accepting again in {} ms, then up to every {} ms",
                       std::strerror(ec.value()), open_connections_.load(), backoff.count(),
                       kLastAcceptBackoff.count());
        }
        accept_backoff_.expires_after(backoff);
        co_await accept_backoff_.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      backoff = std::chrono::milliseconds{0};
      socket.set_option(tcp::no_delay(true), ec);
      auto executor = socket.get_executor();
      if (open_connections_.fetch_add(1) >= options_.max_connections) {
        asio::co_spawn(executor, Refuse(beast::tcp_stream(std::move(socket))), asio::detached);
        continue;
      }
      asio::co_spawn(executor, Serve(beast::tcp_stream(std::move(socket))), asio::detached);
    }
  }

  // Counts a connection out when its coroutine ends, however it ends.
  struct ConnectionSlot {
    std::atomic<std::size_t>& open;
    ~ConnectionSlot() { --open; }
  };

  // A connection being served, as a drain sees it. Its members are read and written on the
  // connection's strand only.
  struct Connection {
    asio::any_io_executor executor;  // the connection's strand
    beast::tcp_stream* stream;       // null once its coroutine has ended
    bool idle = false;               // waiting for the first byte of a next request
    // While it writes a streamed body: the stream, and what makes its coroutine look again.
    std::shared_ptr<BodyStream> body = nullptr;
    std::function<void()> wake_body = nullptr;
    bool writing_body = false;  // in a write of the streamed body
  };

  // Enters a connection in the set a drain goes through, and takes it out when its coroutine
  // ends, however it ends.
  class Registration {
   public:
    Registration(Impl& server, beast::tcp_stream& stream)
        : server_(server), connection_(std::make_shared<Connection>(Connection{stream.get_executor(), &stream, false})) {
      std::lock_guard lock(server_.connections_mu_);
      server_.connections_.insert(connection_);
    }
    ~Registration() {
      connection_->stream = nullptr;
      connection_->wake_body = nullptr;
      std::lock_guard lock(server_.connections_mu_);
      server_.connections_.erase(connection_);
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    Connection& operator*() const { return *connection_; }
    Connection* operator->() const { return connection_.get(); }

   private:
    Impl& server_;
    std::shared_ptr<Connection> connection_;
  };

  // Closes every connection idle between requests: each is visited on its own strand, so that
  // a request that has started meanwhile goes on.
  void CloseIdleConnections() {
    std::vector<std::shared_ptr<Connection>> all;
    {
      std::lock_guard lock(connections_mu_);
      all.assign(connections_.begin(), connections_.end());
    }
    for (auto& c : all)
      asio::post(c->executor, [c] {
        if (c->stream && c->idle) c->stream->cancel();
      });
  }

  // A drain ends every streamed body: each coroutine writes its body's last bytes and closes;
  // one stuck in a write to a client that does not read is cut at once (it would not read
  // the end either), so that a drain never waits for a watcher.
  void EndStreams() {
    std::vector<std::shared_ptr<Connection>> all;
    {
      std::lock_guard lock(connections_mu_);
      all.assign(connections_.begin(), connections_.end());
    }
    for (auto& c : all)
      asio::post(c->executor, [c] {
        if (!c->stream || !c->body) return;
        if (c->writing_body) c->stream->cancel();
        if (c->wake_body) c->wake_body();
      });
  }

  awaitable<void> Heartbeat(std::chrono::milliseconds period, std::function<void()> fn) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
      timer.expires_after(period);
      beast::error_code ec;
      co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
      if (ec || stopped_) co_return;
      fn();
    }
  }

  // Over the connection limit: one 503 and close.
  awaitable<void> Refuse(beast::tcp_stream stream) {
    ConnectionSlot slot{open_connections_};
    Response busy = ProblemResponse(
        503, "too many open connections (limit " + std::to_string(options_.max_connections) + "); try again", "", "");
    co_await RefuseAndClose(stream, std::move(busy));
  }

  // Answers a request refused before its handler ran, and closes the connection.
  awaitable<void> RefuseAndClose(beast::tcp_stream& stream, Response response) {
    co_await Reply(stream, std::move(response), 11, false);
    co_await DrainAndClose(stream);
  }

  awaitable<void> Serve(beast::tcp_stream stream) {
    ConnectionSlot slot{open_connections_};
    Registration connection(*this, stream);
    beast::flat_buffer buffer;
    RequestReader reader({options_.body_limit, options_.header_limit, options_.max_header_count});
    for (;;) {
      // Draining, a connection is answered once (keep-alive is off) and the listener closes:
      // one accepted that has sent nothing yet is not waited for.
      bool started = buffer.size() > 0;
      if (!started && listener_closed_) break;
      // The idle timeout covers the wait for the first byte and the header block; the read
      // timeout the rest.
      stream.expires_after(buffer.size() > 0 ? options_.read_timeout : options_.idle_timeout);
      bool header_done = false;
      beast::error_code ec;
      for (;;) {
        const auto data = buffer.data();
        buffer.consume(reader.Put({static_cast<const char*>(data.data()), data.size()}));
        if (reader.state() != RequestReader::State::kReading) break;
        if (!header_done && reader.header_done()) {
          header_done = true;
          stream.expires_after(options_.read_timeout);
        }
        // Idle until the first byte of the request: a drain closes the connection then.
        connection->idle = !started;
        const std::size_t n = co_await stream.async_read_some(buffer.prepare(kReadChunk),
                                                              asio::redirect_error(use_awaitable, ec));
        connection->idle = false;
        if (n > 0) started = true;
        buffer.commit(n);
        if (ec) break;
      }
      if (reader.state() == RequestReader::State::kRefused) {
        co_await RefuseAndClose(stream, reader.refusal());
        co_return;
      }
      if (reader.state() != RequestReader::State::kComplete) break;  // closed, timed out, or reset

      ReadRequest read = reader.Take();
      const unsigned version = read.version;
      Request request = std::move(read.request);
      request.id = RequestIdFor(request);
      const auto received = std::chrono::steady_clock::now();
      // No handler that may block runs here, on the I/O thread: reads run on the read pool,
      // writes (which may wait for a group commit's fsync) on the handler pool, those that
      // queue their commit on the queueing pool, and this coroutine resumes on the I/O
      // threads when the answer is ready.
      // A handler's deferred answer is waited for here too, without holding a pool thread.
      Response response;
      const bool read_only = request.method == "GET" || request.method == "HEAD";
      if (IsInline(request.path))
        response = Handle(request);
      else if (read_only)
        response = co_await RunHandler(request, read_pool_);
      else if (options_.queues_commit && options_.queues_commit(request))
        response = co_await RunHandler(request, *queueing_pool_);
      else
        response = co_await RunHandler(request, pool_);
      response.headers["X-Request-Id"] = request.id;
      // HEAD gets a stream's headers and no body: it is never started.
      if (response.stream && request.method == "HEAD") {
        response.stream->Stop();
        response.stream = nullptr;
      }
      {
        log::Scope scope({.request_id = request.id});
        if (options_.observe) options_.observe(request, response, std::chrono::steady_clock::now() - received);
        if (response.status >= 500)
          spdlog::warn("{} {} -> {}: {}", request.method, request.path, response.status, response.body);
        else if (response.status >= 400)
          spdlog::debug("{} {} -> {}: {}", request.method, request.path, response.status, response.body);
      }
      if (response.stream) {
        co_await ReplyStream(stream, *connection, std::move(response), version);
        break;
      }
      // Read once the answer is ready: an answer made while draining says `Connection: close`.
      const bool keep_alive = read.keep_alive && !draining_;
      if (!co_await Reply(stream, std::move(response), version, keep_alive, request.method == "HEAD") || !keep_alive)
        break;
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  // A request between its hand-over to a pool and its answer's hand-back to its connection:
  // what resumes the connection's coroutine (moved out into the hand-back), and the count
  // Stop waits on, taken back once the last copy goes.
  template <typename Handler>
  struct InFlight {
    InFlight(Impl& server, Handler handler) : server(server), resume(std::move(handler)) { ++server.in_flight_; }
    ~InFlight() {
      resume.reset();
      --server.in_flight_;
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    Impl& server;
    std::optional<Handler> resume;
  };

  // Runs the handler on `pool` and resumes the connection's coroutine with its answer, on the
  // connection's strand: once the handler returns, or, for a deferred answer, once it is
  // settled.
  awaitable<Response> RunHandler(Request& request, asio::thread_pool& pool) {
    return asio::async_initiate<decltype(use_awaitable), void(Response)>(
        [this, &request, &pool](auto handler) {
          auto flight = std::make_shared<InFlight<decltype(handler)>>(*this, std::move(handler));
          asio::post(pool, [this, &request, flight] { Answer(Handle(request), request, flight); });
        },
        use_awaitable);
  }

  // Hands `response` to the connection's coroutine, or, when it is deferred, waits for it: a
  // deferred answer comes on the thread that settles it, and deferred work runs on the
  // handler pool. `request` lives in the coroutine's frame until it resumes.
  template <typename Flight>
  void Answer(Response response, Request& request, const std::shared_ptr<Flight>& flight) {
    if (!response.deferred) {
      // The hand-back owns the resumption: queued on a stopped server, it goes with ioc_,
      // and the last copy of `flight` (here, or with whoever settled a deferred answer) then
      // holds nothing of it.
      auto resume = std::move(*flight->resume);
      flight->resume.reset();
      const auto executor = asio::get_associated_executor(resume);
      asio::post(executor, [resume = std::move(resume), response = std::move(response)]() mutable {
        resume(std::move(response));
      });
      return;
    }
    // Let go here: the deferred lives only as long as whoever is to settle it holds it.
    const std::shared_ptr<Deferred> deferred = std::move(response.deferred);
    deferred->Then([this, &request, flight](Deferred::Outcome outcome) {
      if (auto* work = std::get_if<Deferred::Work>(&outcome))
        asio::post(pool_, [this, &request, flight, work = std::move(*work)] {
          Answer(Handle(request, work), request, flight);
        });
      else
        Answer(std::get<Response>(std::move(outcome)), request, flight);
    });
  }

  bool IsInline(const std::string& path) const {
    return std::find(options_.inline_paths.begin(), options_.inline_paths.end(), path) != options_.inline_paths.end();
  }

  // Runs the handler with the request's id in the log context of this thread (no suspension
  // inside: the scope ends on the thread it began).
  Response Handle(Request& request) { return Handle(request, [this, &request] { return handler_(request); }); }
  // The same for a deferred answer's work.
  Response Handle(Request& request, const std::function<Response()>& work) {
    log::Scope scope({.request_id = request.id});
    try {
      return work();
    } catch (const std::exception& e) {
      spdlog::error("handler threw on {} {}: {}", request.method, request.path, e.what());
      return ProblemResponse(500, "the request could not be handled", request.path, "");
    }
  }

  // After refusing a request early, reads and drops what the client is still sending (for a
  // short while, up to a bound) before closing: closing at once would reset the connection
  // and the client would lose the response it has not read yet.
  awaitable<void> DrainAndClose(beast::tcp_stream& stream) {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::vector<char> sink(64 * 1024);
    std::size_t drained = 0;
    constexpr std::size_t kMaxDrain = 64 << 20;
    stream.expires_after(std::chrono::seconds(2));
    while (!ec && drained < kMaxDrain) {
      drained += co_await stream.async_read_some(asio::buffer(sink), asio::redirect_error(use_awaitable, ec));
    }
    stream.socket().close(ec);
  }

  awaitable<bool> Reply(beast::tcp_stream& stream, Response response, unsigned version, bool keep_alive,
                        bool head = false) {
    auto out = ToBeast(std::move(response), version, keep_alive, head);
    beast::error_code ec;
    stream.expires_after(options_.read_timeout);
    co_await bhttp::async_write(stream, out, asio::redirect_error(use_awaitable, ec));
    co_return !ec;
  }

  // Writes a streamed body: the headers, then each piece as a chunk (HTTP/1.0: the raw bytes,
  // the end of the body being the close) until the body ends, the client goes, a write takes
  // longer than the read timeout, or a drain ends it; the connection is closed after it. The
  // socket's send buffer is kept small, so that a client that stops reading holds little
  // memory in the kernel and its source soon sees it behind (and cuts it).
  awaitable<void> ReplyStream(beast::tcp_stream& stream, Connection& connection, Response response, unsigned version) {
    std::shared_ptr<BodyStream> body = std::move(response.stream);
    struct StopOnExit {
      Connection& connection;
      std::shared_ptr<BodyStream> body;
      ~StopOnExit() {
        body->Stop();
        connection.body = nullptr;
        connection.wake_body = nullptr;
      }
    } stop_on_exit{connection, body};
    const bool chunked = version >= 11;
    bhttp::response<bhttp::empty_body> head{static_cast<bhttp::status>(response.status), version};
    head.set(bhttp::field::server, "ccm");
    head.set(bhttp::field::content_type, response.content_type);
    for (const auto& [k, v] : response.headers) head.set(k, v);
    head.keep_alive(false);
    if (chunked) head.chunked(true);
    beast::error_code ec;
    stream.socket().set_option(asio::socket_base::send_buffer_size(static_cast<int>(options_.stream_send_buffer)), ec);
    bhttp::response_serializer<bhttp::empty_body> serializer{head};
    stream.expires_after(options_.read_timeout);
    co_await bhttp::async_write_header(stream, serializer, asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;

    // Woken from any thread through the strand: `ready` says a Read may have something.
    struct Wake {
      explicit Wake(asio::any_io_executor executor) : timer(std::move(executor)) {}
      asio::steady_timer timer;
      bool ready = true;
    };
    const auto executor = co_await asio::this_coro::executor;
    auto wake = std::make_shared<Wake>(executor);
    connection.body = body;
    connection.wake_body = [wake] {
      wake->ready = true;
      wake->timer.cancel();
    };
    body->Start([wake, executor] {
      asio::post(executor, [wake] {
        wake->ready = true;
        wake->timer.cancel();
      });
    });
    auto write = [&](const std::string& bytes) -> awaitable<bool> {
      connection.writing_body = true;
      stream.expires_after(options_.read_timeout);
      if (chunked)
        co_await asio::async_write(stream, bhttp::make_chunk(asio::buffer(bytes)), asio::redirect_error(use_awaitable, ec));
      else
        co_await asio::async_write(stream, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
      connection.writing_body = false;
      co_return !ec;
    };
    for (;;) {
      std::string out;
      bool more = true;
      if (draining_) {
        out = body->Drain();
        more = false;
      } else {
        wake->ready = false;
        more = body->Read(out);
      }
      if (!out.empty() && !co_await write(out)) co_return;
      if (!more) break;
      if (!wake->ready) {
        wake->timer.expires_at(asio::steady_timer::time_point::max());
        co_await wake->timer.async_wait(asio::redirect_error(use_awaitable, ec));
      }
    }
    if (chunked) {
      stream.expires_after(options_.read_timeout);
      co_await asio::async_write(stream, bhttp::make_chunk_last(), asio::redirect_error(use_awaitable, ec));
    }
  }

  static constexpr std::size_t kReadChunk = 16 * 1024;

  ServerOptions options_;
  HandlerFn handler_;
  // Before ioc_, which outlives neither: a connection's coroutine left when ioc_ is destroyed
  // takes itself out of the set and the counts then.
  std::mutex connections_mu_;
  std::set<std::shared_ptr<Connection>> connections_;
  std::atomic<std::size_t> in_flight_{0};  // requests handed to a pool and not handed back yet
  std::atomic<std::size_t> open_connections_{0};
  asio::io_context ioc_;
  asio::thread_pool pool_;           // writes
  asio::thread_pool read_pool_;      // GET and HEAD
  // Writes that queue their commit (ServerOptions::queues_commit); none without them.
  std::optional<asio::thread_pool> queueing_pool_;
  asio::strand<asio::io_context::executor_type> strand_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_backoff_;  // on strand_, like the acceptor
  std::vector<std::thread> threads_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> draining_{false};
  std::atomic<bool> listener_closed_{false};
  std::uint16_t port_ = 0;
};

Server::Server(ServerOptions options, HandlerFn handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}
Server::~Server() = default;
Status Server::Start() { return impl_->Start(); }
void Server::Stop() { impl_->Stop(); }
std::uint16_t Server::port() const { return impl_->port(); }
void Server::BeginDrain() { impl_->BeginDrain(); }
void Server::CloseListener() { impl_->CloseListener(); }
std::size_t Server::AwaitConnections(std::chrono::milliseconds timeout) { return impl_->AwaitConnections(timeout); }
bool Server::draining() const { return impl_->draining(); }
std::size_t Server::open_connections() const { return impl_->open_connections(); }
void Server::Every(std::chrono::milliseconds period, std::function<void()> fn) {
  impl_->Every(period, std::move(fn));
}

}  // namespace ccm::http
