#include "http/router.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/api.h"
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

// The writes that queue their commit, and run on the server's queueing pool: an event posted
// alone and a move, nothing else.
TEST(QueuesCommit, NamesAnEventPostedAloneAndAMoveOnly) {
  const auto request = [](std::string method, std::string path, std::map<std::string, std::string> headers = {}) {
    Request r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.headers = std::move(headers);
    return r;
  };
  const std::map<std::string, std::string> structured = {{"content-type", "application/cloudevents+json"}};
  const std::map<std::string, std::string> binary = {{"content-type", "application/json"}, {"ce-specversion", "1.0"}};
  const std::map<std::string, std::string> batch = {{"content-type", "application/cloudevents-batch+json; charset=utf-8"}};
  EXPECT_TRUE(QueuesCommit(request("POST", "/api/v1/events", structured)));
  EXPECT_TRUE(QueuesCommit(request("POST", "/api/v1/events", binary)));
  EXPECT_TRUE(QueuesCommit(request("POST", "/api/internal/instances/01JD2Q/transition")));
  // A batch waits on its handler thread for each event's commit in turn.
  EXPECT_FALSE(QueuesCommit(request("POST", "/api/v1/events", batch)));
  EXPECT_FALSE(QueuesCommit(request("GET", "/api/v1/events", structured)));
  EXPECT_FALSE(QueuesCommit(request("PUT", "/api/internal/instances/01JD2Q/transition")));
  for (const char* path : {"/api/internal/instances/01JD2Q/collect", "/api/internal/instances//transition",
                           "/api/internal/instances/a/b/transition", "/api/v1/instances/01JD2Q/transition",
                           "/api/v1/events/replay", "/api/v1/instances"})
    EXPECT_FALSE(QueuesCommit(request("POST", path, structured))) << path;
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
