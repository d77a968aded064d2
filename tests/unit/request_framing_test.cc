#include "http/request_framing.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace ccm::http {
namespace {

const RequestLimits kLimits{100, 256, 8};

// What a reader made of `bytes` fed `piece` bytes at a time: the requests it accepted, and
// the status of the refusal that ended the connection (0 when none did).
struct Outcome {
  std::vector<ReadRequest> requests;
  int refused = 0;
  std::string detail;  // of the refusal
  std::size_t held_back = 0;  // bytes not used when the input ran out
};

Outcome Feed(const std::string& bytes, std::size_t piece = SIZE_MAX, RequestLimits limits = kLimits) {
  RequestReader reader(limits);
  Outcome out;
  std::string pending;
  for (std::size_t fed = 0; fed < bytes.size();) {
    const std::size_t n = std::min(piece, bytes.size() - fed);
    pending += bytes.substr(fed, n);
    fed += n;
    for (;;) {
      pending.erase(0, reader.Put(pending));
      if (reader.state() == RequestReader::State::kComplete) {
        out.requests.push_back(reader.Take());
        continue;
      }
      if (reader.state() == RequestReader::State::kRefused) {
        out.refused = reader.refusal().status;
        out.detail = nlohmann::json::parse(reader.refusal().body).value("detail", "");
        return out;
      }
      break;
    }
  }
  out.held_back = pending.size();
  return out;
}

const std::string kPost = "POST /x HTTP/1.1\r\nHost: a\r\n";

struct Case {
  const char* name;
  std::string bytes;
  int status;          // of the refusal; 0 when the request is accepted
  std::string method;  // of the accepted request
  std::string path;
  std::string body;
};

const std::vector<Case> kCases = {
    {"GET", "GET /a%20b?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 0, "GET", "/a b", ""},
    {"POST with Content-Length", kPost + "Content-Length: 2\r\n\r\n{}", 0, "POST", "/x", "{}"},
    {"the same Content-Length twice", kPost + "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 0, "POST", "/x",
     "{}"},
    {"Content-Length as a list of one value", kPost + "Content-Length: 2, 2\r\n\r\n{}", 0, "POST", "/x", "{}"},
    {"chunked with an extension and a trailer",
     kPost + "Transfer-Encoding: chunked\r\n\r\n2;e=1\r\n{}\r\n1\r\n \r\n0\r\nX-T: 1\r\n\r\n", 0, "POST", "/x", "{} "},
    {"gzip then chunked, in two fields",
     kPost + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, "POST", "/x", ""},
    {"Content-Length then Transfer-Encoding", kPost + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "", "", ""},
    {"Transfer-Encoding then Content-Length", kPost + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400, "", "", ""},
    {"a non-chunked Transfer-Encoding then Content-Length",
     kPost + "Transfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}", 400, "", "", ""},
    {"Transfer-Encoding: identity", kPost + "Transfer-Encoding: identity\r\n\r\n{}", 400, "", "", ""},
    {"chunked, then identity", kPost + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400, "", "", ""},
    {"chunked twice", kPost + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "", "", ""},
    {"Transfer-Encoding in HTTP/1.0", "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "", "", ""},
    {"differing Content-Length", kPost + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ", 400, "", "", ""},
    {"signed Content-Length", kPost + "Content-Length: +2\r\n\r\n{}", 400, "", "", ""},
    {"negative Content-Length", kPost + "Content-Length: -2\r\n\r\n{}", 400, "", "", ""},
    {"Content-Length with a space inside", kPost + "Content-Length: 1 2\r\n\r\n{}", 400, "", "", ""},
    {"hexadecimal Content-Length", kPost + "Content-Length: 0x2\r\n\r\n{}", 400, "", "", ""},
    {"obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400, "", "", ""},
    {"obs-fold of a Transfer-Encoding", kPost + "Transfer-Encoding: gzip\r\n\tchunked\r\n\r\n0\r\n\r\n", 400, "", "", ""},
    {"bare LF", "GET /x HTTP/1.1\nHost: a\r\n\r\n", 400, "", "", ""},
    {"NUL in a value", std::string("GET /x HTTP/1.1\r\nX: a\0b\r\n\r\n", 27), 400, "", "", ""},
    {"HTTP/0.9", "GET /x\r\n\r\n", 400, "", "", ""},
    {"HTTP/2.0 request line", "GET /x HTTP/2.0\r\n\r\n", 400, "", "", ""},
    {"a chunk size that is not hexadecimal", kPost + "Transfer-Encoding: chunked\r\n\r\nzz\r\n0\r\n\r\n", 400, "", "", ""},
    {"a chunk size over 64 bits", kPost + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400, "", "", ""},
    {"chunk data longer than its size", kPost + "Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", 400, "", "", ""},
    {"a body over the limit", kPost + "Content-Length: 101\r\n\r\n", 413, "", "", ""},
    {"chunks adding up to more than the limit",
     kPost + "Transfer-Encoding: chunked\r\n\r\n32\r\n" + std::string(50, 'a') + "\r\n33\r\n" + std::string(51, 'a') +
         "\r\n0\r\n\r\n",
     413, "", "", ""},
    {"a header block over the limit", "GET /x HTTP/1.1\r\nX: " + std::string(300, 'b') + "\r\n\r\n", 431, "", "", ""},
    {"a request line and fields each under the limit, together over it",
     "GET /" + std::string(200, 'p') + " HTTP/1.1\r\nX: " + std::string(200, 'b') + "\r\n\r\n", 431, "", "", ""},
    {"more fields than the maximum", "GET /x HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\n"
                                     "H: 1\r\nI: 1\r\n\r\n",
     431, "", "", ""},
    {"a chunk line over the limit", kPost + "Transfer-Encoding: chunked\r\n\r\n1;" + std::string(300, 'e') +
                                        "\r\na\r\n0\r\n\r\n",
     431, "", "", ""},
    {"a trailer section over the limit",
     kPost + "Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: " + std::string(300, 't') + "\r\n\r\n", 431, "", "", ""},
};

TEST(RequestFraming, EachCaseIsAcceptedOrRefusedAsTheTableSaysWholeOrByteByByte) {
  for (const auto& c : kCases) {
    for (const std::size_t piece : {SIZE_MAX, std::size_t{1}, std::size_t{7}}) {
      const Outcome out = Feed(c.bytes, piece);
      const std::string where = std::string(c.name) + ", in pieces of " + std::to_string(piece);
      EXPECT_EQ(out.refused, c.status) << where << ": " << out.detail;
      if (c.status != 0) {
        EXPECT_TRUE(out.requests.empty()) << where;
        continue;
      }
      ASSERT_EQ(out.requests.size(), 1u) << where;
      EXPECT_EQ(out.requests[0].request.method, c.method) << where;
      EXPECT_EQ(out.requests[0].request.path, c.path) << where;
      EXPECT_EQ(out.requests[0].request.body, c.body) << where;
      EXPECT_EQ(out.held_back, 0u) << where;
    }
  }
}

TEST(RequestFraming, RefusalsAreProblemsThatNameTheRule) {
  const Outcome te = Feed(kPost + "Transfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(te.detail, "malformed HTTP request: Content-Length together with Transfer-Encoding");
  EXPECT_EQ(Feed(kPost + "Content-Length: 101\r\n\r\n").detail, "request body is over the limit of 100 bytes");
  EXPECT_EQ(Feed("GET /x HTTP/1.1\r\nX: " + std::string(300, 'b') + "\r\n\r\n").detail,
            "request header block is over the limit of 256 bytes");
  EXPECT_EQ(Feed("GET /x HTTP/1.1\r\nX: a\r\n b\r\n\r\n").detail,
            "malformed HTTP request: obs-fold (a header line starting with whitespace)");

  RequestReader reader(kLimits);
  reader.Put("GET /x\r\n\r\n");
  ASSERT_EQ(reader.state(), RequestReader::State::kRefused);
  EXPECT_EQ(reader.refusal().content_type, "application/problem+json");
  EXPECT_EQ(reader.Put("GET / HTTP/1.1\r\n\r\n"), 0u) << "nothing after a refused request is read";
}

TEST(RequestFraming, PipelinedRequestsAreReadOneAtATime) {
  const std::string bytes = "GET /a?x=1&y=%41+b HTTP/1.1\r\nHost: a\r\n\r\n" + kPost +
                            "Content-Length: 2\r\n\r\n{}GET /c HTTP/1.0\r\n\r\n";
  RequestReader reader(kLimits);
  const std::size_t first = reader.Put(bytes);
  ASSERT_EQ(reader.state(), RequestReader::State::kComplete);
  EXPECT_EQ(first, bytes.find("POST")) << "the reader stops at the end of the request";
  const ReadRequest a = reader.Take();
  EXPECT_EQ(a.request.query.at("y"), "A b");
  EXPECT_TRUE(a.keep_alive);

  const Outcome out = Feed(bytes, 3);
  ASSERT_EQ(out.requests.size(), 3u);
  EXPECT_EQ(out.requests[1].request.body, "{}");
  EXPECT_EQ(out.requests[2].request.path, "/c");
  EXPECT_EQ(out.requests[2].version, 10u);
  EXPECT_FALSE(out.requests[2].keep_alive);
}

TEST(RequestFraming, TrailerFieldsNeverBecomeHeaders) {
  const Outcome out = Feed(kPost + "Authorization: Bearer real\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
                                   "Authorization: Bearer trailer\r\nX-Only-Trailer: 1\r\n\r\n");
  ASSERT_EQ(out.requests.size(), 1u) << out.detail;
  const auto& headers = out.requests[0].request.headers;
  EXPECT_EQ(headers.at("authorization"), "Bearer real");
  EXPECT_EQ(headers.count("x-only-trailer"), 0u);
}

// W3C Trace Context 3.3.1.1 and 3.2.2: several tracestate lines are one list (joined with
// commas); a repeated traceparent is unreadable (the request starts a new trace). Other
// repeated fields keep the last value.
TEST(RequestFraming, TraceContextFieldsOnSeveralLinesAreJoinedOthersKeepTheLast) {
  const Outcome out = Feed(kPost + "Content-Length: 0\r\ntracestate: congo=t61rcWkgMzE\r\nX-A: 1\r\n"
                                   "tracestate: rojo=00f067aa0ba902b7\r\nX-A: 2\r\n"
                                   "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
                                   "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
                           SIZE_MAX, RequestLimits{100, 1024, 16});
  ASSERT_EQ(out.requests.size(), 1u) << out.detail;
  const auto& headers = out.requests[0].request.headers;
  EXPECT_EQ(headers.at("tracestate"), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
  EXPECT_EQ(headers.at("traceparent"),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01,"
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(headers.at("x-a"), "2");
}

TEST(RequestFraming, WhatIsHeldBackWaitingForALineEndStaysUnderTheHeaderLimit) {
  // A trailer section that never ends is refused once it passes the limit, not buffered.
  std::string flood = kPost + "Transfer-Encoding: chunked\r\n\r\n0\r\n";
  for (int i = 0; i < 100; ++i) flood += "X-T: vvvvvvvvvv\r\n";
  const Outcome out = Feed(flood, 16);
  EXPECT_EQ(out.refused, 431);
  // An incomplete header block under the limit is simply waited on.
  const Outcome partial = Feed("GET /x HTTP/1.1\r\nHost: a\r\n", 4);
  EXPECT_EQ(partial.refused, 0);
  EXPECT_TRUE(partial.requests.empty());
  EXPECT_LE(partial.held_back, kLimits.header_limit);
}

}  // namespace
}  // namespace ccm::http
