// Inbound authentication over HTTP: every route but the public ones refuses a request without
// a valid token (401) or without its role (403), as problem+json, before anything is written;
// the issuer's keys are fetched from its JWKS and refetched when they rotate; ccm started
// with authentication on and oidc-sim as the issuer.
#include <gtest/gtest.h>

#include <atomic>

#include "clients/jwks_key_set.h"
#include "support/db_snapshot.h"
#include "support/fake_clock.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/jwt_mint.h"
#include "support/process.h"
#include "support/signed_stack.h"
#include "support/stack.h"
#include "support/test_sink.h"

namespace ccm {
namespace {

using nlohmann::json;

// A concrete path for a route pattern: every {param} becomes "x".
std::string PathOf(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '{') {
      out += "x";
      i = pattern.find('}', i);
    } else {
      out += pattern[i];
    }
  }
  return out;
}

class AuthTest : public ::testing::Test {
 protected:
  AuthTest() : http_(stack_.BaseUrl()) {}
  std::string Token(const std::vector<std::string>& roles) { return signed_.Token(roles); }
  testing::HttpResult Call(const std::string& method, const std::string& path, const std::string& token,
                           const std::string& body = "{}") {
    std::map<std::string, std::string> headers = {{"Content-Type", "application/json"}};
    if (!token.empty()) headers["Authorization"] = "Bearer " + token;
    return http_.Send(method, path, method == "GET" ? "" : body, headers);
  }

  testing::SignedStack signed_;
  testing::SigningKey& key_ = signed_.key;
  testing::Stack& stack_ = signed_.stack;
  testing::HttpClient http_;
};

TEST_F(AuthTest, EveryProtectedRouteRefusesWithoutATokenOrWithoutItsRoleAndWritesNothing) {
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  int protected_routes = 0;
  for (const auto& route : stack_.router.routes()) {
    const auto role = http::RequiredRole(route.method, route.pattern);
    const std::string path = PathOf(route.pattern);
    const std::string what = route.method + " " + route.pattern;
    if (!role) {
      EXPECT_NE(Call(route.method, path, "").status, 401) << what;
      continue;
    }
    ++protected_routes;
    auto none = Call(route.method, path, "");
    EXPECT_EQ(none.status, 401) << what;
    EXPECT_EQ(none.ContentType(), "application/problem+json") << what;
    EXPECT_EQ(none.headers["www-authenticate"], "Bearer realm=\"ccm\"") << what;
    EXPECT_EQ(none.Json()["field"], "authorization") << what;
    auto garbage = Call(route.method, path, "not-a-token");
    EXPECT_EQ(garbage.status, 401) << what;
    EXPECT_NE(garbage.headers["www-authenticate"].find("invalid_token"), std::string::npos) << what;
    // A valid token without the route's role.
    const std::vector<std::string> others =
        *role == auth::Role::kEventsPublish ? std::vector<std::string>{"ccm.admin"}
        : *role == auth::Role::kViewer      ? std::vector<std::string>{"ccm.events.publish"}
        : *role == auth::Role::kOperator    ? std::vector<std::string>{"ccm.viewer", "ccm.events.publish"}
                                            : std::vector<std::string>{"ccm.operator", "ccm.events.publish"};
    auto denied = Call(route.method, path, Token(others));
    EXPECT_EQ(denied.status, 403) << what << " " << denied.body;
    EXPECT_EQ(denied.ContentType(), "application/problem+json") << what;
    EXPECT_NE(denied.Json()["detail"].get<std::string>().find(std::string(auth::ToString(*role))), std::string::npos)
        << what;
  }
  EXPECT_GE(protected_routes, 25);
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
}

TEST_F(AuthTest, EachRoleDoesWhatItMayAndTheActorIsTheTokensSubject) {
  EXPECT_EQ(Call("GET", "/api/v1/instances", Token({"ccm.viewer"})).status, 200);
  EXPECT_EQ(Call("GET", "/metrics", Token({"ccm.viewer"})).status, 200);
  EXPECT_EQ(Call("GET", "/health/live", "").status, 200);
  EXPECT_EQ(Call("GET", "/openapi.json", "").status, 200);
  json worker = {{"name", "w1"}, {"hostname", "w1"}, {"cml_url", "http://w1"}, {"license_type", "ENTERPRISE"},
                 {"capacity", {{"cpu_cores", 8}, {"memory_gb", 8}, {"max_nodes", 10}}}};
  auto created = Call("POST", "/api/v1/workers", Token({"ccm.operator"}), worker.dump());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.Json()["id"];
  auto moved = Call("POST", "/api/internal/workers/" + id + "/transition", Token({"ccm.admin"}),
                    json{{"to", "PROVISIONING"}}.dump());
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_EQ(moved.Json()["state_history"][0]["actor"], "bob");
  // An expired token is refused even with every role.
  json claims = testing::GoodClaims({"ccm.admin"});
  claims["exp"] = claims["iat"].get<std::int64_t>() - 3600;
  auto expired = Call("GET", "/api/v1/workers", key_.Sign(claims));
  EXPECT_EQ(expired.status, 401);
  EXPECT_EQ(expired.Json()["detail"], "the token has expired");
}

TEST(Jwks, FetchesKeysOnceAndAgainWhenTheyRotateButNotForEveryUnknownId) {
  testing::SigningKey first("RS256", "k1"), second("ES256", "k2");
  std::atomic<int> fetches{0};
  std::atomic<bool> rotated{false};
  testing::FakeServer issuer([&](http::Request&) {
    ++fetches;
    http::Response r;
    json keys = json::array({first.Jwk(), {{"kty", "oct"}, {"kid", "hmac"}, {"k", "c2VjcmV0"}}});
    if (rotated) keys.push_back(second.Jwk());
    r.body = json{{"keys", keys}}.dump();
    return r;
  });
  testing::FakeClock clock(FromUnixMillis(1'000'000));
  clients::JwksKeySet jwks(issuer.Url() + "/certs", clock, std::chrono::seconds(10));
  ASSERT_TRUE(jwks.Find("k1"));
  ASSERT_TRUE(jwks.Find("k1"));
  EXPECT_EQ(fetches, 1);
  EXPECT_FALSE(jwks.Find("hmac"));  // a symmetric key is no verification key
  rotated = true;
  // Within the refresh interval an unknown id costs no fetch.
  clock.Advance(std::chrono::seconds(1));
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(jwks.Find("made-up-" + std::to_string(i)));
  EXPECT_LE(fetches, 2);
  clock.Advance(std::chrono::seconds(11));
  auto k2 = jwks.Find("k2");
  ASSERT_TRUE(k2) << k2.error().message;
  EXPECT_EQ((*k2)->alg(), "ES256");
}

TEST(Jwks, AnUnreachableIssuerIsUnavailableNotUnauthenticated) {
  testing::FakeClock clock(FromUnixMillis(0));
  clients::JwksKeySet jwks("http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/certs", clock);
  auto k = jwks.Find("k1");
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code, ErrorCode::kUnavailable);
}

// ccm as it runs in production: authentication on, oidc-sim as the issuer.
TEST(AuthProcess, CcmChecksTokensFromTheIssuerAndRefusesAllWithoutOne) {
  testing::TempDir dir;
  testing::ChildProcess oidc({OIDC_SIM_BINARY, "--ready-file", dir.File("oidc.ready"), "--issuer", "http://oidc-sim",
                              "--client", "ops:ops-secret:ccm.operator", "--client", "platform:p-secret:ccm.events.publish"},
                             {}, dir.File("oidc.ready"));
  testing::CcmProcess ccm(dir.path(),
                          {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                           {"AUTH_JWKS_URL", oidc.BaseUrl() + "/jwks"},
                           {"AUTH_ISSUER", "http://oidc-sim"}},
                          /*authenticated=*/true);
  auto token = [&](const std::string& id, const std::string& secret) {
    testing::HttpClient c(oidc.BaseUrl());
    return c.Post("/token", "grant_type=client_credentials&client_id=" + id + "&client_secret=" + secret,
                  "application/x-www-form-urlencoded")
        .Json()["access_token"]
        .get<std::string>();
  };
  testing::HttpClient http(ccm.BaseUrl());
  EXPECT_EQ(http.Get("/api/v1/workers").status, 401);
  http.SetBearer(token("ops", "ops-secret"));
  EXPECT_EQ(http.Get("/api/v1/workers").status, 200);
  // The platform may publish events and nothing else.
  http.SetBearer(token("platform", "p-secret"));
  EXPECT_EQ(http.Get("/api/v1/workers").status, 403);
  auto event = http.Post("/api/v1/events",
                         json{{"specversion", "1.0"}, {"id", "e1"}, {"source", "/p"}, {"type", "x.unhandled"}}.dump(),
                         "application/cloudevents+json");
  EXPECT_EQ(event.status, 202) << event.body;

  // Started without an issuer, ccm refuses everything but its probes.
  testing::TempDir other;
  testing::CcmProcess bare(other.path(), {{"CCM_STORE", "sqlite:" + other.File("ccm.db")}}, /*authenticated=*/true);
  testing::HttpClient anyone(bare.BaseUrl());
  anyone.SetBearer(token("ops", "ops-secret"));
  auto refused = anyone.Get("/api/v1/workers");
  EXPECT_EQ(refused.status, 401);
  EXPECT_NE(refused.Json()["detail"].get<std::string>().find("AUTH_JWKS_URL"), std::string::npos);
  EXPECT_EQ(anyone.Get("/health/live").status, 200);
}

}  // namespace
}  // namespace ccm
