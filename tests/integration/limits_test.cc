// The server's limits, each tested over a real loopback socket: body size, header size and
// count, the idle and request timeouts (a slow or silent client cannot hold a connection),
// and the maximum number of connections.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "http/router.h"
#include "http/server.h"
#include "support/http_client.h"
#include "support/raw_socket.h"

namespace ccm {
namespace {

using Clock = std::chrono::steady_clock;
using testing::RawSocket;

class Limits : public ::testing::Test {
 protected:
  void Start(http::ServerOptions o) {
    o.port = 0;
    o.handler_threads = 2;
    server_ = std::make_unique<http::Server>(o, [](http::Request& r) {
      http::Response resp;
      resp.body = "{\"bytes\":" + std::to_string(r.body.size()) + "}";
      return resp;
    });
    ASSERT_TRUE(server_->Start());
  }
  std::uint16_t port() const { return server_->port(); }
  std::unique_ptr<http::Server> server_;
};

TEST_F(Limits, ABodyOverTheLimitIs413) {
  http::ServerOptions o;
  o.body_limit = 1000;
  Start(o);
  testing::HttpClient http("http://127.0.0.1:" + std::to_string(port()));
  EXPECT_EQ(http.Post("/x", std::string(1000, 'a')).status, 200);
  auto big = http.Post("/x", std::string(1001, 'a'));
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.Json()["field"], "body");
}

TEST_F(Limits, TooLargeOrTooManyHeadersAre431) {
  http::ServerOptions o;
  o.header_limit = 2048;
  o.max_header_count = 20;
  Start(o);
  testing::HttpClient http("http://127.0.0.1:" + std::to_string(port()));
  auto large = http.Send("GET", "/x", "", {{"X-Big", std::string(4000, 'b')}});
  EXPECT_EQ(large.status, 431);
  std::map<std::string, std::string> many;
  for (int i = 0; i < 30; ++i) many["X-H" + std::to_string(i)] = "v";
  auto counted = http.Send("GET", "/x", "", many);
  EXPECT_EQ(counted.status, 431);
  EXPECT_NE(counted.Json()["detail"].get<std::string>().find("more than 20 header fields"), std::string::npos);
  many.erase(many.begin(), std::next(many.begin(), 15));
  EXPECT_EQ(http.Send("GET", "/x", "", many).status, 200);
}

// The trailer section of a chunked body counts against the header limit: a client cannot
// make the server buffer a trailer without end, and trailer fields never become headers.
TEST_F(Limits, TrailersAreBoundedAndNeverBecomeHeaders) {
  http::ServerOptions o;
  o.header_limit = 2048;
  o.port = 0;
  o.handler_threads = 2;
  server_ = std::make_unique<http::Server>(o, [](http::Request& r) {
    http::Response resp;
    resp.body = "{\"auth\":\"" + std::string(r.Header("authorization")) + "\"}";
    return resp;
  });
  ASSERT_TRUE(server_->Start());
  const std::string post = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n";
  RawSocket flood(port());
  ASSERT_TRUE(flood.Send(post + "\r\n0\r\n"));
  for (int i = 0; i < 200; ++i) flood.Send("X-T: vvvvvvvvvvvvvvvvvvvv\r\n");
  bool timed_out = false;
  const std::string refused = flood.ReadUntilClosed(std::chrono::seconds(10), &timed_out);
  EXPECT_EQ(refused.rfind("HTTP/1.1 431", 0), 0u) << refused;
  EXPECT_NE(refused.find("trailer section"), std::string::npos) << refused;
  EXPECT_FALSE(timed_out);

  RawSocket trailer(port());
  ASSERT_TRUE(trailer.Send(post + "Authorization: header\r\nConnection: close\r\n\r\n0\r\n"
                                  "Authorization: trailer\r\n\r\n"));
  const std::string answer = trailer.ReadUntilClosed(std::chrono::seconds(10));
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("{\"auth\":\"header\"}"), std::string::npos) << answer;
}

TEST_F(Limits, ASilentConnectionIsClosedAfterTheIdleTimeout) {
  http::ServerOptions o;
  o.idle_timeout = std::chrono::milliseconds(300);
  Start(o);
  RawSocket silent(port());
  bool timed_out = false;
  EXPECT_EQ(silent.ReadUntilClosed(std::chrono::seconds(10), &timed_out), "");
  EXPECT_FALSE(timed_out) << "the server kept a silent connection open";
}

TEST_F(Limits, ASlowClientCannotHoldAConnection) {
  http::ServerOptions o;
  o.idle_timeout = std::chrono::milliseconds(300);
  o.read_timeout = std::chrono::milliseconds(300);
  Start(o);
  // The header, then a body that never comes in full, a byte now and then.
  RawSocket slow(port());
  ASSERT_TRUE(slow.Send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"));
  const auto start = Clock::now();
  bool closed = false;
  while (Clock::now() - start < std::chrono::seconds(10)) {
    if (!slow.Send("a")) {
      closed = true;
      break;
    }
    bool timed_out = false;
    slow.ReadUntilClosed(std::chrono::milliseconds(100), &timed_out);
    if (!timed_out) {
      closed = true;
      break;
    }
  }
  EXPECT_TRUE(closed) << "a client trickling its body kept the connection";
}

TEST_F(Limits, ConnectionsPastTheMaximumGet503UntilOneCloses) {
  http::ServerOptions o;
  o.max_connections = 2;
  Start(o);
  auto a = std::make_unique<RawSocket>(port());
  RawSocket b(port());
  ASSERT_TRUE(a->Send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"));  // both are served and kept open
  ASSERT_TRUE(b.Send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"));
  bool timed_out = false;
  a->ReadUntilClosed(std::chrono::milliseconds(200), &timed_out);
  ASSERT_TRUE(timed_out);
  RawSocket third(port());
  const std::string refused = third.ReadUntilClosed(std::chrono::seconds(5));
  EXPECT_EQ(refused.rfind("HTTP/1.1 503", 0), 0u) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos);
  EXPECT_NE(refused.find("too many open connections"), std::string::npos);
  a.reset();
  // The slot is given back: a new connection is served.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  long status = 0;
  while (status != 200 && Clock::now() < deadline) {
    testing::HttpClient http("http://127.0.0.1:" + std::to_string(port()));
    status = http.Get("/x").status;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(status, 200);
}

// Every answered request has an id: the client's X-Request-Id when it is a short token, else
// one the server makes; it comes back in X-Request-Id, and the observer sees it with the
// route's pattern (empty when no route matched), the status and a duration.
TEST(RequestObserver, SeesEveryAnswerWithItsRoutePatternAndId) {
  struct Seen {
    std::string method, route, id;
    int status;
    std::chrono::nanoseconds took;
  };
  std::mutex mu;
  std::vector<Seen> seen;
  http::Router router;
  router.Add("GET", "/things/{id}", [](http::Request&) { return http::Response{}; });
  http::ServerOptions o;
  o.port = 0;
  o.handler_threads = 1;
  o.observe = [&](const http::Request& req, const http::Response& resp, std::chrono::nanoseconds took) {
    std::lock_guard lock(mu);
    seen.push_back({req.method, req.route, req.id, resp.status, took});
  };
  http::Server server(o, [&router](http::Request& r) { return router.Dispatch(r); });
  ASSERT_TRUE(server.Start());
  testing::HttpClient http("http://127.0.0.1:" + std::to_string(server.port()));

  auto given = http.Send("GET", "/things/a%2Fb", "", {{"X-Request-Id", "req-42.a_b"}});
  EXPECT_EQ(given.status, 200);
  EXPECT_EQ(given.headers["x-request-id"], "req-42.a_b");
  auto made = http.Send("GET", "/things/x", "", {{"X-Request-Id", "not a token; " + std::string(80, 'z')}});
  const std::string made_id = made.headers["x-request-id"];
  EXPECT_EQ(made_id.size(), 16u) << made_id;
  EXPECT_EQ(made_id.find_first_not_of("0123456789abcdef"), std::string::npos) << made_id;
  auto none = http.Post("/nowhere", "{}");
  EXPECT_EQ(none.status, 404);
  EXPECT_EQ(none.headers["x-request-id"].size(), 16u);
  EXPECT_NE(none.headers["x-request-id"], made_id);

  server.Stop();
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].route, "/things/{id}");
  EXPECT_EQ(seen[0].id, "req-42.a_b");
  EXPECT_EQ(seen[1].id, made_id);
  EXPECT_EQ(seen[2].method, "POST");
  EXPECT_EQ(seen[2].route, "");
  EXPECT_EQ(seen[2].status, 404);
  for (const auto& s : seen) EXPECT_GT(s.took.count(), 0);
}

}  // namespace
}  // namespace ccm
