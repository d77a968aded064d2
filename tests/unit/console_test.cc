#include "http/console.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace ccm::http {
namespace {

// A router that refuses every token, as ccm with authentication on and a caller without one.
Router ConsoleRouter(const ConsoleSettings& settings) {
  Router r;
  AddConsoleRoutes(r, settings);
  r.Add("GET", "/api/v1/instances", [](Request&) { return Response{}; });
  r.RequireAuthentication([](std::string_view) -> Result<auth::Principal> { return Error::Unauthenticated("no"); });
  return r;
}

ConsoleSettings Keycloak() {
  ConsoleSettings s;
  s.authorize_url = "https://sso.example.com/realms/labs/protocol/openid-connect/auth";
  s.token_url = "https://sso.example.com:8443/realms/labs/protocol/openid-connect/token";
  s.collecting_timeout_seconds = 1800;
  return s;
}

Response Get(const Router& r, const std::string& path) {
  Request req{"GET", path, {}, {}, {}, "", ""};
  req.raw_path = path;
  return r.Dispatch(req);
}

TEST(Console, ThePageIsServedWithoutATokenTheApiIsNot) {
  const Router r = ConsoleRouter(Keycloak());
  const Response page = Get(r, "/ui/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<script type=\"module\" src=\"app.js\">"), std::string::npos);
  const Response module = Get(r, "/ui/app.js");
  EXPECT_EQ(module.status, 200);
  EXPECT_EQ(module.content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(Get(r, "/ui/style.css").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(Get(r, "/api/v1/instances").status, 401);
}

TEST(Console, UiRedirectsToTheFolderSoThatRelativeAddressesWork) {
  const Response moved = Get(ConsoleRouter(Keycloak()), "/ui");
  EXPECT_EQ(moved.status, 301);
  EXPECT_EQ(moved.headers.at("Location"), "/ui/");
}

TEST(Console, EveryAnswerCarriesAStrictPolicyThatLetsThePageReachTheTokenEndpointOnly) {
  const Router r = ConsoleRouter(Keycloak());
  for (const char* path : {"/ui/", "/ui/app.js", "/ui/config.json"}) {
    const Response resp = Get(r, path);
    EXPECT_EQ(resp.headers.at("Cache-Control"), "no-cache") << path;
    EXPECT_EQ(resp.headers.at("Referrer-Policy"), "no-referrer") << path;
    EXPECT_EQ(resp.headers.at("X-Content-Type-Options"), "nosniff") << path;
    const std::string& csp = resp.headers.at("Content-Security-Policy");
    EXPECT_NE(csp.find("default-src 'self'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("connect-src 'self' https://sso.example.com:8443;"), std::string::npos) << csp;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
    EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
  }
  ConsoleSettings open = Keycloak();
  open.auth = false;
  EXPECT_NE(Get(ConsoleRouter(open), "/ui/").headers.at("Content-Security-Policy").find("connect-src 'self';"),
            std::string::npos);
}

TEST(Console, ConfigTellsThePageHowToSignIn) {
  const Response resp = Get(ConsoleRouter(Keycloak()), "/ui/config.json");
  EXPECT_EQ(resp.content_type, "application/json");
  const auto config = nlohmann::json::parse(resp.body);
  EXPECT_EQ(config["auth"], true);
  EXPECT_EQ(config["client_id"], "ccm-operators");
  EXPECT_EQ(config["authorize_url"], Keycloak().authorize_url);
  EXPECT_EQ(config["token_url"], Keycloak().token_url);
  EXPECT_EQ(config["roles_client"], "ccm");
  EXPECT_EQ(config["realm_roles"], false);
  EXPECT_EQ(config["timeouts"]["collecting_seconds"], 1800);
}

TEST(Console, AnUnknownFileIs404Problem) {
  const Response resp = Get(ConsoleRouter(Keycloak()), "/ui/secrets.txt");
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(resp.content_type, "application/problem+json");
}

TEST(Console, OriginOfKeepsSchemeHostAndPortOnly) {
  EXPECT_EQ(OriginOf("https://sso.example.com/realms/x/token"), "https://sso.example.com");
  EXPECT_EQ(OriginOf("http://127.0.0.1:7000/token?x=1"), "http://127.0.0.1:7000");
  EXPECT_EQ(OriginOf("http://127.0.0.1:7000"), "http://127.0.0.1:7000");
  EXPECT_EQ(OriginOf("ftp://host/x"), "");
  EXPECT_EQ(OriginOf("no url"), "");
  EXPECT_EQ(OriginOf("https://a.example; script-src *"), "");
}

}  // namespace
}  // namespace ccm::http
