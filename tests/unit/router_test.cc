#include "http/router.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/message.h"
#include "http/problem.h"

namespace ccm::http {
namespace {

Router MakeRouter() {
  Router r;
  r.Add("GET", "/api/v1/things/{id}", [](Request& req) {
    Response resp;
    resp.body = "get " + req.params["id"];
    return resp;
  });
  r.Add("DELETE", "/api/v1/things/{id}", [](Request& req) {
    Response resp;
    resp.body = "delete " + req.params["id"];
    return resp;
  });
  r.Add("GET", "/api/v1/things/{id}/parts", [](Request&) { return Response{}; });
  return r;
}

TEST(Router, MatchesMethodAndPathAndFillsParams) {
  Router r = MakeRouter();
  Request req{"DELETE", "/api/v1/things/abc", {}, {}, {}, "", ""};
  EXPECT_EQ(r.Dispatch(req).body, "delete abc");
  Request get{"GET", "/api/v1/things/x-1/", {}, {}, {}, "", ""};
  EXPECT_EQ(r.Dispatch(get).body, "get x-1");
}

TEST(Router, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  Router r = MakeRouter();
  Request missing{"GET", "/api/v1/nothing", {}, {}, {}, "", ""};
  auto resp = r.Dispatch(missing);
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(resp.content_type, "application/problem+json");
  Request post{"POST", "/api/v1/things/abc", {}, {}, {}, "", ""};
  resp = r.Dispatch(post);
  EXPECT_EQ(resp.status, 405);
  EXPECT_EQ(resp.headers["Allow"], "GET, HEAD, DELETE");
  EXPECT_EQ(nlohmann::json::parse(resp.body)["status"], 405);
}

TEST(Router, APathOrQueryThatIsNotUtf8Is400BeforeAnyHandler) {
  Router r = MakeRouter();
  const std::pair<Request, const char*> cases[] = {
      {{"GET", "/api/v1/things/a\xC0\xAF", {}, {}, {}, "", ""}, "path"},
      {{"GET", "/api/v1/things/\xED\xA0\x80", {}, {}, {}, "", ""}, "path"},
      {{"GET", "/api/v1/things/x", {{"limit", "\xF4\x90\x80\x80"}}, {}, {}, "", ""}, "limit"},
      {{"GET", "/api/v1/things/x", {{"\xFF", "1"}}, {}, {}, "", ""}, "query"},
  };
  for (auto [req, field] : cases) {
    auto resp = r.Dispatch(req);
    EXPECT_EQ(resp.status, 400) << field;
    EXPECT_EQ(nlohmann::json::parse(resp.body)["field"], field);
  }
  Request fine{"GET", "/api/v1/things/caf\xC3\xA9", {{"q", "\xE2\x82\xAC"}}, {}, {}, "", ""};
  EXPECT_EQ(r.Dispatch(fine).body, "get caf\xC3\xA9");
}

// A request resolved once (as the server does to pick its pool) is dispatched to the route found
// then, without matching again; HEAD resolves to the GET route.
TEST(Router, ResolveFindsTheRouteOnceAndDispatchRunsIt) {
  Router r = MakeRouter();
  Request req{"DELETE", "/api/v1/things/abc", {}, {}, {}, "", ""};
  const Router::Route* found = r.Resolve(req);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->pattern, "/api/v1/things/{id}");
  EXPECT_EQ(req.route, "/api/v1/things/{id}");
  EXPECT_EQ(req.params["id"], "abc");
  req.path = "/api/v1/nothing";  // not matched again
  EXPECT_EQ(r.Resolve(req), found);
  EXPECT_EQ(r.Dispatch(req).body, "delete abc");

  Request head{"HEAD", "/api/v1/things/x", {}, {}, {}, "", ""};
  ASSERT_NE(r.Resolve(head), nullptr);
  EXPECT_EQ(r.Resolve(head)->method, "GET");
  // A miss is kept as well, and Dispatch still answers it with what the path has.
  const std::vector<std::pair<Request, int>> misses = {{Request{"GET", "/api/v1/nothing", {}, {}, {}, "", ""}, 404},
                                                       {Request{"POST", "/api/v1/things/abc", {}, {}, {}, "", ""}, 405},
                                                       {Request{"GET", "/api/v1/things/a\xC0\xAF", {}, {}, {}, "", ""}, 400}};
  for (auto [none, status] : misses) {
    EXPECT_EQ(r.Resolve(none), nullptr) << none.method << " " << none.path;
    EXPECT_EQ(none.route_index, Request::kNoRoute);
    EXPECT_EQ(r.Resolve(none), nullptr);
    const Response resp = r.Dispatch(none);
    EXPECT_EQ(resp.status, status) << none.method << " " << none.path;
    if (status == 405) {
      EXPECT_EQ(resp.headers.at("Allow"), "GET, HEAD, DELETE");
    }
  }
}

// Which requests queue their commit is marked on the route, so it is decided by the same match
// as the dispatch: a trailing slash, or an id with a percent-encoded slash, reach the route and
// its mark alike.
TEST(Router, QueuesCommitAsTheRouteThatMatchesIsMarked) {
  Router r;
  r.Add(
      "POST", "/queued/{id}/move",
      [](Request& req) {
        Response resp;
        resp.body = req.params["id"];
        return resp;
      },
      Commits::kQueued);
  r.Add("POST", "/waits/{id}", [](Request&) { return Response{}; });
  r.Add("PUT", "/queued/{id}/move", [](Request&) { return Response{}; }, Commits::kWaits);
  const auto request = [](std::string method, std::string raw_path) {
    Request req;
    req.method = std::move(method);
    req.path = PercentDecode(raw_path, false);
    req.raw_path = std::move(raw_path);
    return req;
  };
  for (const char* path : {"/queued/01JD/move", "/queued/01JD/move/", "/queued/a%2Fb/move"}) {
    Request req = request("POST", path);
    EXPECT_TRUE(r.QueuesCommit(req)) << path;
    EXPECT_EQ(req.route, "/queued/{id}/move");
  }
  Request slashed = request("POST", "/queued/a%2Fb/move");
  ASSERT_TRUE(r.QueuesCommit(slashed));
  EXPECT_EQ(r.Dispatch(slashed).body, "a/b");
  for (const auto& [method, path] : {std::pair{"POST", "/waits/01JD"}, std::pair{"GET", "/queued/01JD/move"},
                                     std::pair{"PUT", "/queued/01JD/move"}, std::pair{"POST", "/queued/a/b/move"},
                                     std::pair{"POST", "/queued//move"}}) {
    Request req = request(method, path);
    EXPECT_FALSE(r.QueuesCommit(req)) << method << " " << path;
  }
}

TEST(Message, QueryAndPercentDecoding) {
  auto q = ParseQuery("a=1&b=x%20y+z&c&d=%zz");
  EXPECT_EQ(q["a"], "1");
  EXPECT_EQ(q["b"], "x y z");
  EXPECT_EQ(q["c"], "");
  EXPECT_EQ(q["d"], "%zz");
  EXPECT_EQ(PercentDecode("/a%2Fb+c", false), "/a/b+c");
}

// An error's kind, not the text of its field, picks the answer; the field still names it.
TEST(ErrorResponse, EachKindAnswersWithItsStatusAndNamesItsField) {
  auto body = [](const Response& r) { return nlohmann::json::parse(r.body); };
  const Response stale = ErrorResponse(Error::StaleVersion("instance i changed"), "/x");
  EXPECT_EQ(stale.status, 409);
  EXPECT_EQ(body(stale)["field"], "version");
  EXPECT_EQ(body(stale)["code"], "conflict");
  const Response duplicate = ErrorResponse(Error::Duplicate("event (s, e) was already processed"), "/x");
  EXPECT_EQ(duplicate.status, 409);
  EXPECT_EQ(body(duplicate)["field"], "dedup");
  const Response media = ErrorResponse(Error::UnsupportedMediaType("Content-Type must be application/json"), "/x");
  EXPECT_EQ(media.status, 415);
  EXPECT_EQ(body(media)["field"], "content-type");
  EXPECT_FALSE(body(media).contains("code"));
  // A field that happens to be called content-type is a plain invalid argument.
  const Response plain = ErrorResponse(Error::InvalidArgument("bad header value", "content-type"), "/x");
  EXPECT_EQ(plain.status, 400);
  EXPECT_EQ(body(plain)["code"], "invalid_argument");
}

}  // namespace
}  // namespace ccm::http
