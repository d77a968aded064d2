#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "http/server.h"

namespace ccm::testing {

// A stand-in for a remote (sink, platform, token endpoint, Grading Engine) on a loopback
// port: `handler` answers every request, on a small pool of threads.
class FakeServer {
 public:
  explicit FakeServer(http::Server::HandlerFn handler, std::uint16_t port = 0) {
    http::ServerOptions o;
    o.port = port;
    o.handler_threads = 4;
    server_ = std::make_unique<http::Server>(o, std::move(handler));
    if (auto s = server_->Start(); !s) throw std::runtime_error("fake server did not start: " + s.error().message);
  }
  std::uint16_t port() const { return server_->port(); }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  void Stop() { server_->Stop(); }

 private:
  std::unique_ptr<http::Server> server_;
};

}  // namespace ccm::testing
