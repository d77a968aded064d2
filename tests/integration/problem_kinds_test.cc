// One status, one problem: whichever part of ccm refuses a request (the server's framing,
// the router, authentication, a handler, the event receiver, a use case), the problem+json
// of a status has the same `type` and `title` (RFC 9457: the title names the type, not the
// case), over HTTP.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "http/problem.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/raw_socket.h"
#include "support/signed_stack.h"

namespace ccm {
namespace {

using nlohmann::json;

struct Answer {
  std::string what;
  testing::HttpResult result;
};

class ProblemKinds : public ::testing::Test {
 protected:
  ProblemKinds() : http_(stack_.BaseUrl()) {}

  testing::HttpResult Call(const std::string& method, const std::string& path, const std::string& body,
                           std::map<std::string, std::string> headers = {}, const std::string& token = "") {
    headers.emplace("Content-Type", "application/json");
    if (!token.empty()) headers["Authorization"] = "Bearer " + token;
    return http_.Send(method, path, body, headers);
  }
  std::string Admin() { return signed_.Token({"ccm.admin", "ccm.events.publish"}); }

  testing::SignedStack signed_;
  testing::Stack& stack_ = signed_.stack;
  testing::HttpClient http_;
};

// A server over `router` with `options` on a free port.
std::unique_ptr<http::Server> ServerOver(http::ServerOptions options, http::Server::HandlerFn handler) {
  options.port = 0;
  auto server = std::make_unique<http::Server>(options, std::move(handler));
  if (auto s = server->Start(); !s) throw std::runtime_error(s.error().message);
  return server;
}

std::string UrlOf(const http::Server& s) { return "http://127.0.0.1:" + std::to_string(s.port()); }

TEST_F(ProblemKinds, EachStatusHasOneTypeAndOneTitleWhereverItIsAnswered) {
  const std::string admin = Admin();
  std::vector<Answer> answers;
  const auto add = [&answers](const std::string& what, testing::HttpResult r) { answers.push_back({what, r}); };

  auto worker = Call("POST", "/api/v1/workers", testing::WorkerBody("w1", "http://127.0.0.1:1", 8).dump(), {}, admin);
  ASSERT_EQ(worker.status, 201) << worker.body;
  const std::string wid = worker.Json()["id"];

  add("bad query (handler)", Call("GET", "/api/v1/instances?state=BOGUS", "", {}, admin));
  add("bad body (use case)", Call("POST", "/api/v1/workers", R"({"name": ""})", {}, admin));
  add("not a CloudEvent (receiver)",
      Call("POST", "/api/v1/events", R"({"specversion": "1.0"})", {{"Content-Type", "application/cloudevents+json"}},
           admin));
  add("no token (router)", Call("GET", "/api/v1/workers", "", {}));
  add("bad token (router)", Call("GET", "/api/v1/workers", "", {}, "not-a-token"));
  add("no role (router)", Call("POST", "/api/v1/workers", "{}", {}, signed_.Token({"ccm.viewer"})));
  add("no such instance (store)", Call("GET", "/api/v1/instances/nope", "", {}, admin));
  add("no route (router)", Call("GET", "/api/v1/nothing-here", "", {}, admin));
  add("no schema (handler)", Call("GET", "/schemas/nope.json", "", {}, admin));
  add("method (router)", Call("PUT", "/api/v1/workers", "{}", {}, admin));
  add("stale version (conflict)",
      Call("POST", "/api/internal/workers/" + wid + "/transition",
           R"({"to": "DRAINING", "expected_version": 99})", {}, admin));
  add("illegal move (failed precondition)",
      Call("POST", "/api/internal/workers/" + wid + "/transition", R"({"to": "PENDING"})", {}, admin));
  add("body too large (framing)",
      Call("POST", "/api/v1/workers", "{\"name\": \"" + std::string(2 << 20, 'x') + "\"}", {}, admin));
  add("media type (handler)", Call("POST", "/api/v1/workers", "name=w", {{"Content-Type", "text/plain"}}, admin));
  add("media type (receiver)", Call("POST", "/api/v1/events", "{}", {{"Content-Type", "text/plain"}}, admin));
  const json event = {{"specversion", "1.0"},
                      {"id", "e-1"},
                      {"source", "assessment"},
                      {"type", "assessment.collection.completed"},
                      {"datacontenttype", "application/json"},
                      {"data", {{"instance_id", "nope"}, {"collection_id", "c"}, {"artifacts_uri", "s3://x"}}}};
  add("unknown instance (receiver)",
      Call("POST", "/api/v1/events", event.dump(), {{"Content-Type", "application/cloudevents+json"}}, admin));
  {
    testing::HttpClient fresh(stack_.BaseUrl());  // the 431 closes its connection
    add("header too large (framing)",
        fresh.Send("GET", "/api/v1/workers", "", {{"X-Big", std::string(20 * 1024, 'h')}, {"Authorization", "Bearer " + admin}}));
  }
  // Readiness of a draining replica, and a server past its connection limit.
  http::Router draining;
  http::AddApiRoutes(draining, {*stack_.definitions, *stack_.instances, *stack_.workers, *stack_.store,
                                *stack_.event_service, *stack_.receiver, *stack_.collection, *stack_.pods, {}, {},
                                [] { return true; }});
  auto ready = ServerOver({}, [&draining](http::Request& r) { return draining.Dispatch(r); });
  add("draining (readiness)", testing::HttpClient(UrlOf(*ready)).Get("/health/ready"));
  // A replica whose watch streams are all taken.
  app::WatchOptions no_watchers;
  no_watchers.max_watchers = 0;
  app::WatchHub full_hub(*stack_.outbox, no_watchers);
  http::Router watching;
  http::AddApiRoutes(watching, {*stack_.definitions, *stack_.instances, *stack_.workers, *stack_.store,
                                *stack_.event_service, *stack_.receiver, *stack_.collection, *stack_.pods, {}, {},
                                {}, &full_hub});
  auto watched = ServerOver({}, [&watching](http::Request& r) { return watching.Dispatch(r); });
  add("watcher limit (watch)", testing::HttpClient(UrlOf(*watched)).Get("/api/v1/watch"));
  http::ServerOptions one;
  one.max_connections = 1;
  auto full = ServerOver(one, [&draining](http::Request& r) { return draining.Dispatch(r); });
  {
    // The one slot is taken once the server has answered on it (keep-alive: it stays open).
    testing::RawSocket holder(full->port());
    ASSERT_TRUE(holder.Send("GET /health/live HTTP/1.1\r\nHost: a\r\n\r\n"));
    const std::string answered = holder.ReadUntilClosed(std::chrono::seconds(2));
    ASSERT_EQ(answered.rfind("HTTP/1.1 200", 0), 0u) << answered;
    add("connection limit (server)", testing::HttpClient(UrlOf(*full)).Get("/health/live"));
  }
  auto throwing = ServerOver({}, [](http::Request&) -> http::Response { throw std::runtime_error("bug"); });
  add("handler threw (server)", testing::HttpClient(UrlOf(*throwing)).Get("/anything"));

  std::map<int, std::pair<std::string, std::string>> seen;  // status -> type, title
  std::map<std::string, int> status_of_type;
  for (const auto& [what, r] : answers) {
    SCOPED_TRACE(what);
    ASSERT_NE(r.status, 0) << r.error;
    EXPECT_EQ(r.ContentType(), "application/problem+json") << r.body;
    const json body = r.Json();
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_EQ(body["status"], r.status);
    const std::string type = body.value("type", ""), title = body.value("title", "");
    EXPECT_EQ(type, http::ProblemKindOf(static_cast<int>(r.status)).type) << r.body;
    EXPECT_EQ(title, http::ProblemKindOf(static_cast<int>(r.status)).title) << r.body;
    auto [it, first] = seen.emplace(static_cast<int>(r.status), std::pair{type, title});
    if (!first) {
      EXPECT_EQ(it->second.first, type) << "status " << r.status;
      EXPECT_EQ(it->second.second, title) << "status " << r.status;
    }
    auto [t, new_type] = status_of_type.emplace(type, static_cast<int>(r.status));
    if (!new_type) {
      EXPECT_EQ(t->second, r.status) << type << " names two statuses";
    }
  }
  // Every status of the table was answered at least once.
  for (const auto& kind : http::ProblemKinds()) EXPECT_TRUE(seen.count(kind.status)) << kind.status;
  EXPECT_EQ(seen.size(), http::ProblemKinds().size());
  // What clients match on.
  EXPECT_EQ(seen[400], (std::pair<std::string, std::string>{"urn:ccm:problem:invalid-argument", "Invalid request"}));
  EXPECT_EQ(seen[404], (std::pair<std::string, std::string>{"urn:ccm:problem:not-found", "Not found"}));
  EXPECT_EQ(seen[422], (std::pair<std::string, std::string>{"urn:ccm:problem:unprocessable", "Unprocessable content"}));
  EXPECT_EQ(seen[431].first, "urn:ccm:problem:header-fields-too-large");
}

TEST_F(ProblemKinds, ABatchsPerEventOutcomesUseTheSameTitles) {
  const json bad = {{"specversion", "1.0"},
                    {"id", "e-2"},
                    {"source", "assessment"},
                    {"type", "assessment.collection.completed"},
                    {"datacontenttype", "application/json"},
                    {"data", {{"instance_id", "nope"}, {"collection_id", "c"}, {"artifacts_uri", "s3://x"}}}};
  json ignored = bad;
  ignored["id"] = "e-3";
  ignored["type"] = "example.unrelated";
  auto r = Call("POST", "/api/v1/events", json::array({bad, ignored}).dump(),
                {{"Content-Type", "application/cloudevents-batch+json"}}, Admin());
  ASSERT_EQ(r.status, 207) << r.body;
  bool found = false;
  const json body = r.Json();
  for (const auto& e : body["results"]) {
    if (e["status"] != 422) continue;
    found = true;
    EXPECT_EQ(e["title"], http::ProblemKindOf(422).title) << e;
  }
  EXPECT_TRUE(found) << r.body;
}

TEST(ProblemKindsDocument, TheOpenApiProblemSchemaListsEveryTypeAndTitle) {
  const json doc = json::parse(http::OpenApiDocument());
  const json& problem = doc.at("components").at("schemas").at("Problem").at("properties");
  std::vector<std::string> types;
  for (const auto& kind : http::ProblemKinds()) {
    types.push_back(kind.type);
    const std::string pair = std::to_string(kind.status) + " " + kind.title;
    EXPECT_NE(problem.at("title").at("description").get<std::string>().find(pair), std::string::npos) << pair;
  }
  EXPECT_EQ(problem.at("type").at("enum").get<std::vector<std::string>>(), types);
}

}  // namespace
}  // namespace ccm
