// Asio in Boost 1.74 uses std::exchange in awaitable.hpp without including <utility>.
#include <utility>

#include "http/server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <future>
#include <cctype>
#include <thread>
#include <vector>

#include "http/problem.h"

namespace ccm::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view View(beast::string_view s) { return {s.data(), s.size()}; }

Request ToRequest(bhttp::request<bhttp::string_body>&& req) {
  Request r;
  r.method = std::string(View(req.method_string()));
  const std::string_view target = View(req.target());
  const size_t q = target.find('?');
  r.path = PercentDecode(target.substr(0, q), false);
  if (q != std::string_view::npos) r.query = ParseQuery(target.substr(q + 1));
  for (const auto& field : req) r.headers[Lower(View(field.name_string()))] = std::string(View(field.value()));
  r.body = std::move(req.body());
  return r;
}

bhttp::response<bhttp::string_body> ToBeast(Response&& resp, unsigned version, bool keep_alive) {
  bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(resp.status), version};
  out.set(bhttp::field::server, "ccm");
  if (!resp.body.empty() || resp.status != 204) out.set(bhttp::field::content_type, resp.content_type);
  for (const auto& [k, v] : resp.headers) out.set(k, v);
  out.body() = std::move(resp.body);
  out.keep_alive(keep_alive);
  out.prepare_payload();
  return out;
}

}  // namespace

class Server::Impl {
 public:
  Impl(ServerOptions options, HandlerFn handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        ioc_(options_.io_threads),
        pool_(static_cast<std::size_t>(std::max(1, options_.handler_threads))),
        strand_(asio::make_strand(ioc_)),
        acceptor_(strand_) {}

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
    // The acceptor lives on a strand: Stop closes it there, never while an accept starts.
    asio::co_spawn(strand_, Accept(), asio::detached);
    for (int i = 0; i < std::max(1, options_.io_threads); ++i) threads_.emplace_back([this] { ioc_.run(); });
    return {};
  }

  void Stop() {
    if (stopped_.exchange(true)) return;
    std::promise<void> closed;
    asio::post(strand_, [this, &closed] {
      beast::error_code ec;
      acceptor_.close(ec);
      closed.set_value();
    });
    if (!threads_.empty()) closed.get_future().wait();
    ioc_.stop();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    pool_.join();
  }

  std::uint16_t port() const { return port_; }

 private:
  awaitable<void> Accept() {
    for (;;) {
      beast::error_code ec;
      // Each connection gets its own strand, so that its timer and its reads never run at once.
      tcp::socket socket =
          co_await acceptor_.async_accept(asio::make_strand(ioc_), asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (!acceptor_.is_open()) co_return;
        continue;  // a failed accept (e.g. out of descriptors) must not stop the server
      }
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

  // Over the connection limit: one 503 and close.
  awaitable<void> Refuse(beast::tcp_stream stream) {
    ConnectionSlot slot{open_connections_};
    Response busy = ProblemResponse(503, "Service Unavailable",
                                    "too many open connections (limit " + std::to_string(options_.max_connections) +
                                        "); try again",
                                    "", "");
    busy.headers["Retry-After"] = "1";
    co_await Reply(stream, std::move(busy), 11, false);
    co_await DrainAndClose(stream);
  }

  awaitable<void> Serve(beast::tcp_stream stream) {
    ConnectionSlot slot{open_connections_};
    beast::flat_buffer buffer;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(options_.body_limit);
      parser.header_limit(static_cast<std::uint32_t>(options_.header_limit));
      beast::error_code ec;
      // The idle timeout covers the wait for the first byte; the read timeout the rest.
      stream.expires_after(buffer.size() > 0 ? options_.read_timeout : options_.idle_timeout);
      co_await bhttp::async_read_header(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
      if (!ec) {
        const auto& fields = parser.get().base();
        if (static_cast<std::size_t>(std::distance(fields.begin(), fields.end())) > options_.max_header_count) {
          co_await Reply(stream, ProblemResponse(431, "Request Header Fields Too Large",
                                                 "more than " + std::to_string(options_.max_header_count) +
                                                     " header fields",
                                                 "", "headers"),
                         11, false);
          co_await DrainAndClose(stream);
          co_return;
        }
        stream.expires_after(options_.read_timeout);
        co_await bhttp::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
      }
      if (ec == bhttp::error::body_limit) {
        co_await Reply(stream, ProblemResponse(413, "Payload Too Large",
                                               "request body is over the limit of " +
                                                   std::to_string(options_.body_limit) + " bytes",
                                               "", "body"),
                       11, false);
        co_await DrainAndClose(stream);
        co_return;
      }
      if (ec == bhttp::error::header_limit) {
        co_await Reply(stream, ProblemResponse(431, "Request Header Fields Too Large",
                                               "request header block is over the limit of " +
                                                   std::to_string(options_.header_limit) + " bytes",
                                               "", "headers"),
                       11, false);
        co_await DrainAndClose(stream);
        co_return;
      }
      if (ec) break;  // closed, timed out, or not HTTP

      auto req = parser.release();
      const bool keep_alive = req.keep_alive();
      const unsigned version = req.version();
      Request request = ToRequest(std::move(req));
      // Reads never wait on a commit: they run here, on the I/O thread. Writes may wait for
      // a group commit's fsync; they run on the handler pool, and this coroutine resumes on
      // the I/O threads when the response is ready.
      Response response;
      if (request.method == "GET" || request.method == "HEAD") {
        response = Handle(request);
      } else {
        response = co_await asio::co_spawn(
            pool_, [this, &request]() -> awaitable<Response> { co_return Handle(request); }, use_awaitable);
      }
      if (response.status >= 500)
        spdlog::warn("{} {} -> {}: {}", request.method, request.path, response.status, response.body);
      else if (response.status >= 400)
        spdlog::debug("{} {} -> {}: {}", request.method, request.path, response.status, response.body);
      if (!co_await Reply(stream, std::move(response), version, keep_alive) || !keep_alive) break;
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  Response Handle(Request& request) {
    try {
      return handler_(request);
    } catch (const std::exception& e) {
      spdlog::error("handler threw on {} {}: {}", request.method, request.path, e.what());
      return ProblemResponse(500, "Internal error", "the request could not be handled", request.path, "");
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

  awaitable<bool> Reply(beast::tcp_stream& stream, Response response, unsigned version, bool keep_alive) {
    auto out = ToBeast(std::move(response), version, keep_alive);
    beast::error_code ec;
    stream.expires_after(options_.read_timeout);
    co_await bhttp::async_write(stream, out, asio::redirect_error(use_awaitable, ec));
    co_return !ec;
  }

  ServerOptions options_;
  HandlerFn handler_;
  asio::io_context ioc_;
  asio::thread_pool pool_;
  asio::strand<asio::io_context::executor_type> strand_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};
  std::atomic<std::size_t> open_connections_{0};
  std::uint16_t port_ = 0;
};

Server::Server(ServerOptions options, HandlerFn handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}
Server::~Server() = default;
Status Server::Start() { return impl_->Start(); }
void Server::Stop() { impl_->Stop(); }
std::uint16_t Server::port() const { return impl_->port(); }

}  // namespace ccm::http
