// transport::Connection against a loopback FakeServer: what is sent, what comes back, and how
// a request fails.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "support/etcd_cluster.h"
#include "support/fake_server.h"
#include "trace/trace_context.h"
#include "transport/http_connection.h"
#include "transport/retry.h"

namespace ccm {
namespace {

using namespace std::chrono_literals;

// What the fake server saw of the last request.
struct Seen {
  std::mutex mu;
  std::string method;
  std::string body;
  std::map<std::string, std::string> headers;
};

class TransportTest : public ::testing::Test {
 protected:
  // Answers as `answer_` says, after `delay_`, and records the request in `seen_`.
  http::Response Handle(http::Request& r) {
    {
      std::lock_guard lock(seen_.mu);
      seen_.method = r.method;
      seen_.body = r.body;
      seen_.headers = r.headers;
    }
    if (delay_.load() > 0ms) std::this_thread::sleep_for(delay_.load());
    std::lock_guard lock(answer_mu_);
    return answer_;
  }
  std::map<std::string, std::string> SeenHeaders() {
    std::lock_guard lock(seen_.mu);
    return seen_.headers;
  }
  void Answer(http::Response answer) {
    std::lock_guard lock(answer_mu_);
    answer_ = std::move(answer);
  }
  transport::Response Send(transport::Connection& c, transport::Request request) {
    request.connect_timeout = 1s;
    if (request.total_timeout == 0ms) request.total_timeout = 5s;
    return c.Send(server_.Url() + "/probe", request);
  }

  Seen seen_;
  std::mutex answer_mu_;
  http::Response answer_{200, "application/json", {}, R"({"ok":true})"};
  std::atomic<std::chrono::milliseconds> delay_{0ms};
  // Last: its threads use the members above.
  testing::FakeServer server_{[this](http::Request& r) { return Handle(r); }};
};

TEST_F(TransportTest, SendsMethodHeadersAndBodyAndReturnsStatusBodyAndHeaders) {
  Answer({201, "application/json", {{"X-Answer", "42"}}, R"({"made":1})"});
  transport::Connection c;
  const transport::Headers headers = {{"X-Probe", "hello"}, {"Content-Type", "application/json"}};
  transport::Request request;
  request.method = "PUT";
  request.headers = &headers;
  request.body = R"({"a":1})";
  request.want_headers = true;
  const transport::Response r = Send(c, request);
  ASSERT_TRUE(r.transport_error.empty()) << r.transport_error;
  EXPECT_EQ(r.failure, transport::Failure::kNone);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, R"({"made":1})");
  std::map<std::string, std::string> got(r.headers.begin(), r.headers.end());
  EXPECT_EQ(got["x-answer"], "42");
  EXPECT_EQ(got["content-type"], "application/json");
  std::lock_guard lock(seen_.mu);
  EXPECT_EQ(seen_.method, "PUT");
  EXPECT_EQ(seen_.body, R"({"a":1})");
  EXPECT_EQ(seen_.headers["x-probe"], "hello");
  EXPECT_EQ(seen_.headers["content-type"], "application/json");
  EXPECT_FALSE(seen_.headers.contains("expect"));
}

TEST_F(TransportTest, CollectsResponseHeadersOnlyWhenAsked) {
  Answer({200, "text/plain", {{"X-Answer", "42"}}, "ok"});
  transport::Connection c;
  const transport::Response r = Send(c, {});
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.headers.empty());
}

TEST_F(TransportTest, AnEmptyHeaderValueRemovesLibcurlsDefault) {
  transport::Connection c;
  const transport::Headers headers = {{"Content-Type", ""}};
  transport::Request request;
  request.headers = &headers;
  request.body = "x=1";
  ASSERT_EQ(Send(c, request).status, 200);
  EXPECT_FALSE(SeenHeaders().contains("content-type"));
  ASSERT_EQ(Send(c, {.method = "POST", .body = "x=1"}).status, 200);
  EXPECT_EQ(SeenHeaders()["content-type"], "application/x-www-form-urlencoded");
}

TEST_F(TransportTest, GetSendsNoBodyAndPostAnEmptyOne) {
  transport::Connection c;
  ASSERT_EQ(Send(c, {.method = "GET"}).status, 200);
  {
    std::lock_guard lock(seen_.mu);
    EXPECT_EQ(seen_.method, "GET");
    EXPECT_FALSE(seen_.headers.contains("content-length"));
  }
  ASSERT_EQ(Send(c, {.method = "POST"}).status, 200);
  std::lock_guard lock(seen_.mu);
  EXPECT_EQ(seen_.method, "POST");
  EXPECT_EQ(seen_.headers["content-length"], "0");
}

TEST_F(TransportTest, ReadsRetryAfterOfARetryableAnswer) {
  Answer({503, "application/json", {{"Retry-After", "120"}}, "{}"});
  transport::Connection c;
  const transport::Response r = Send(c, {});
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(transport::IsRetryableStatus(r.status));
  EXPECT_EQ(r.retry_after, "120");
  EXPECT_TRUE(r.transport_error.empty());
}

TEST_F(TransportTest, NoRetryAfterWhenTheAnswerHasNone) {
  transport::Connection c;
  EXPECT_EQ(Send(c, {}).retry_after, "");
}

TEST_F(TransportTest, AClosedPortIsATransportErrorWithLibcurlsDetail) {
  const int port = testing::UnusedPort();
  std::vector<std::pair<long, bool>> observed;
  transport::ConnectionOptions options;
  options.observer = [&](long status, bool failed, std::chrono::nanoseconds) { observed.emplace_back(status, failed); };
  transport::Connection c(std::move(options));
  const transport::Response r =
      c.Send("http://127.0.0.1:" + std::to_string(port) + "/probe", {.connect_timeout = 1s, .total_timeout = 2s});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.failure, transport::Failure::kOther);
  // libcurl's reason, then its error buffer's detail naming the port.
  EXPECT_NE(r.transport_error.find("Couldn't connect to server"), std::string::npos) << r.transport_error;
  EXPECT_NE(r.transport_error.find("port " + std::to_string(port)), std::string::npos) << r.transport_error;
  ASSERT_EQ(observed.size(), 1u);
  EXPECT_EQ(observed[0], std::make_pair(0L, true));
}

TEST_F(TransportTest, GivesUpAtTheTotalTimeout) {
  delay_ = 1500ms;
  transport::Connection c;
  const auto started = std::chrono::steady_clock::now();
  const transport::Response r = Send(c, {.total_timeout = 200ms});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.failure, transport::Failure::kTimedOut);
  EXPECT_FALSE(r.transport_error.empty());
  EXPECT_LT(took, 1200ms);
}

TEST_F(TransportTest, TellsTheObserverTheStatusAndHowLongItTook) {
  Answer({404, "application/json", {}, "{}"});
  delay_ = 50ms;
  std::vector<std::tuple<long, bool, std::chrono::nanoseconds>> observed;
  transport::ConnectionOptions options;
  options.observer = [&](long status, bool failed, std::chrono::nanoseconds took) {
    observed.emplace_back(status, failed, took);
  };
  transport::Connection c(std::move(options));
  EXPECT_EQ(Send(c, {}).status, 404);
  ASSERT_EQ(observed.size(), 1u);
  EXPECT_EQ(std::get<0>(observed[0]), 404);
  EXPECT_FALSE(std::get<1>(observed[0]));
  EXPECT_GE(std::get<2>(observed[0]), 50ms);
}

TEST_F(TransportTest, SendsTheCurrentTraceAsAChildSpan) {
  const trace::TraceContext root = trace::NewRoot();
  transport::Connection c;
  {
    trace::Scope scope(root);
    ASSERT_EQ(Send(c, {}).status, 200);
  }
  const auto headers = SeenHeaders();
  ASSERT_TRUE(headers.contains("traceparent"));
  const auto sent = trace::Parse(headers.at("traceparent"));
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(sent->trace_id, root.trace_id);
  EXPECT_NE(sent->span_id, root.span_id);
}

TEST_F(TransportTest, SendsNoTraceWithoutACurrentOneOrWhenTurnedOff) {
  transport::Connection c;
  ASSERT_EQ(Send(c, {}).status, 200);
  EXPECT_FALSE(SeenHeaders().contains("traceparent"));
  transport::ConnectionOptions options;
  options.propagate_trace = false;
  transport::Connection quiet(std::move(options));
  trace::Scope scope(trace::NewRoot());
  ASSERT_EQ(Send(quiet, {}).status, 200);
  EXPECT_FALSE(SeenHeaders().contains("traceparent"));
}

TEST_F(TransportTest, KeepsTheCallersOwnTraceparent) {
  const std::string own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const transport::Headers headers = {{"traceparent", own}};
  transport::Connection c;
  trace::Scope scope(trace::NewRoot());
  transport::Request request;
  request.headers = &headers;
  ASSERT_EQ(Send(c, request).status, 200);
  EXPECT_EQ(SeenHeaders()["traceparent"], own);
}

TEST_F(TransportTest, StreamsTheBodyToTheCallbackAndStopsWhenItSaysSo) {
  Answer({200, "application/json", {}, std::string(100000, 'x')});
  transport::Connection c;
  size_t streamed = 0;
  transport::Request request;
  request.on_chunk = [&](std::string_view chunk) {
    streamed += chunk.size();
    return true;
  };
  const transport::Response whole = Send(c, request);
  EXPECT_EQ(whole.status, 200);
  EXPECT_EQ(streamed, 100000u);
  EXPECT_TRUE(whole.body.empty());

  request.on_chunk = [](std::string_view) { return false; };
  const transport::Response stopped = Send(c, request);
  EXPECT_EQ(stopped.failure, transport::Failure::kAborted);
  EXPECT_EQ(stopped.status, 0);
}

TEST_F(TransportTest, KeepGoingAbortsAQuietStream) {
  delay_ = 3000ms;
  transport::Connection c;
  transport::Request request;
  request.total_timeout = 10s;
  request.on_chunk = [](std::string_view) { return true; };
  const auto started = std::chrono::steady_clock::now();
  request.keep_going = [&] { return std::chrono::steady_clock::now() - started < 300ms; };
  const transport::Response r = Send(c, request);
  EXPECT_EQ(r.failure, transport::Failure::kAborted);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2500ms);
}

}  // namespace
}  // namespace ccm
