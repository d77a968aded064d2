// The sign-in of people: oidc-sim's authorization code grant with PKCE and refresh, as the
// console uses it against Keycloak, and ccm accepting the tokens it issues with the user's
// roles.
#include <gtest/gtest.h>

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "auth/jwt.h"
#include "http/message.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "transport/http_connection.h"

namespace ccm {
namespace {

constexpr const char* kVerifier = "a-verifier-of-forty-three-characters-or-more-0123";
constexpr const char* kRedirect = "http://127.0.0.1:8080/ui/";
constexpr const char* kForm = "application/x-www-form-urlencoded";

std::string Challenge(const std::string& verifier) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(verifier.data(), verifier.size(), digest, &n, EVP_sha256(), nullptr);
  return auth::Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(digest), n));
}

// The fields of an authorization request, percent-encoded.
std::string AuthorizeFields(const std::string& client = "ccm-console", const std::string& redirect = kRedirect,
                            const std::string& challenge = Challenge(kVerifier)) {
  return "response_type=code&client_id=" + client + "&redirect_uri=" + transport::UrlEscape(redirect) +
         "&state=s-1&code_challenge=" + challenge + "&code_challenge_method=S256";
}

// The query of a redirect's Location.
std::map<std::string, std::string> RedirectQuery(const testing::HttpResult& r) {
  const std::string location = r.headers.count("location") ? r.headers.at("location") : "";
  const auto q = location.find('?');
  return q == std::string::npos ? std::map<std::string, std::string>{} : http::ParseQuery(location.substr(q + 1));
}

nlohmann::json Claims(const std::string& jwt) {
  const auto first = jwt.find('.');
  const auto second = jwt.find('.', first + 1);
  auto payload = auth::Base64UrlDecode(jwt.substr(first + 1, second - first - 1));
  return payload ? nlohmann::json::parse(*payload, nullptr, false) : nlohmann::json();
}

class OidcCodeFlow : public ::testing::Test {
 protected:
  testing::TempDir dir;
  testing::ChildProcess oidc{{OIDC_SIM_BINARY, "--ready-file", dir.File("oidc.ready"), "--issuer", "http://oidc-sim",
                              "--public-client", "ccm-console", "--user", "vera:v-pass:ccm.viewer", "--user",
                              "otto:o-pass:ccm.operator,ccm.viewer"},
                             {},
                             dir.File("oidc.ready")};
  testing::HttpClient http{oidc.BaseUrl()};

  // Signs in through the form; the code of the redirect.
  std::string SignIn(const std::string& user, const std::string& password) {
    auto r = http.Post("/authorize", AuthorizeFields() + "&username=" + user + "&password=" + password, kForm);
    EXPECT_EQ(r.status, 302) << r.body;
    auto q = RedirectQuery(r);
    EXPECT_EQ(q["state"], "s-1");
    return q["code"];
  }

  testing::HttpResult Exchange(const std::string& code, const std::string& verifier = kVerifier) {
    return http.Post("/token",
                     "grant_type=authorization_code&client_id=ccm-console&code=" + transport::UrlEscape(code) +
                         "&redirect_uri=" + transport::UrlEscape(kRedirect) + "&code_verifier=" + verifier,
                     kForm);
  }
};

TEST_F(OidcCodeFlow, TheFormSignsInAndTheCodeBuysTokensWithTheUsersRoles) {
  auto form = http.Get("/authorize?" + AuthorizeFields());
  ASSERT_EQ(form.status, 200);
  EXPECT_NE(form.ContentType().find("text/html"), std::string::npos);
  EXPECT_NE(form.body.find("id=\"username\""), std::string::npos);
  EXPECT_NE(form.body.find("<label for=\"password\">"), std::string::npos);
  EXPECT_NE(form.body.find("name=\"code_challenge\" value=\"" + Challenge(kVerifier) + "\""), std::string::npos);

  auto tokens = Exchange(SignIn("otto", "o-pass"));
  ASSERT_EQ(tokens.status, 200) << tokens.body;
  auto j = tokens.Json();
  EXPECT_EQ(j["token_type"], "Bearer");
  EXPECT_TRUE(j["refresh_token"].is_string());
  auto claims = Claims(j["access_token"]);
  EXPECT_EQ(claims["sub"], "otto");
  EXPECT_EQ(claims["preferred_username"], "otto");
  EXPECT_EQ(claims["azp"], "ccm-console");
  EXPECT_EQ(claims["resource_access"]["ccm"]["roles"], nlohmann::json({"ccm.operator", "ccm.viewer"}));
  EXPECT_EQ(Claims(j["id_token"])["aud"], "ccm-console");
}

TEST_F(OidcCodeFlow, AWrongPasswordShowsTheFormAgainWithoutACode) {
  auto r = http.Post("/authorize", AuthorizeFields() + "&username=vera&password=nope", kForm);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("Invalid username or password."), std::string::npos);
  EXPECT_EQ(r.headers.count("location"), 0u);
}

TEST_F(OidcCodeFlow, ACodeWorksOnceAndOnlyWithItsVerifier) {
  const std::string code = SignIn("vera", "v-pass");
  auto wrong = Exchange(code, "another-verifier-of-forty-three-characters-000");
  EXPECT_EQ(wrong.status, 400);
  EXPECT_EQ(wrong.Json()["error"], "invalid_grant");
  // A failed attempt used the code up: a stolen code is worth one guess.
  EXPECT_EQ(Exchange(code).status, 400);
  const std::string second = SignIn("vera", "v-pass");
  EXPECT_EQ(Exchange(second).status, 200);
  auto again = Exchange(second);
  EXPECT_EQ(again.status, 400);
  EXPECT_EQ(again.Json()["error"], "invalid_grant");
}

TEST_F(OidcCodeFlow, ARefreshTokenRotates) {
  auto first = Exchange(SignIn("vera", "v-pass")).Json();
  const std::string refresh = first["refresh_token"];
  auto renewed = http.Post("/token", "grant_type=refresh_token&client_id=ccm-console&refresh_token=" + refresh, kForm);
  ASSERT_EQ(renewed.status, 200) << renewed.body;
  EXPECT_NE(renewed.Json()["refresh_token"], refresh);
  EXPECT_EQ(Claims(renewed.Json()["access_token"])["resource_access"]["ccm"]["roles"], nlohmann::json({"ccm.viewer"}));
  auto reused = http.Post("/token", "grant_type=refresh_token&client_id=ccm-console&refresh_token=" + refresh, kForm);
  EXPECT_EQ(reused.status, 400);
  EXPECT_EQ(reused.Json()["error"], "invalid_grant");
}

TEST_F(OidcCodeFlow, BadRequestsAreRefusedWhereTheyAreSafeToReport) {
  // Unknown clients and foreign redirects are reported on the page, never redirected to.
  EXPECT_EQ(http.Get("/authorize?" + AuthorizeFields("stranger")).status, 400);
  auto foreign = http.Get("/authorize?" + AuthorizeFields("ccm-console", "https://evil.example/cb"));
  EXPECT_EQ(foreign.status, 400);
  EXPECT_EQ(foreign.headers.count("location"), 0u);
  for (const char* tricky : {"http://localhost:1@evil.example/cb", "http://127.0.0.1:@evil.example/",
                             "http://127.0.0.1.evil.example/", "http://localhost:80x/", "http://localhost:8/\r\nX: y"}) {
    auto r = http.Get("/authorize?" + AuthorizeFields("ccm-console", tricky));
    EXPECT_EQ(r.status, 400) << tricky;
    EXPECT_EQ(r.headers.count("location"), 0u) << tricky;
  }
  // Without PKCE the client hears why through its redirect.
  auto plain = http.Get("/authorize?" + AuthorizeFields("ccm-console", kRedirect, ""));
  ASSERT_EQ(plain.status, 302);
  EXPECT_EQ(RedirectQuery(plain)["error"], "invalid_request");
  EXPECT_EQ(RedirectQuery(plain)["state"], "s-1");
}

TEST_F(OidcCodeFlow, ABrowserPageOnAnotherOriginMayCallTheTokenEndpoint) {
  auto preflight = http.Send("OPTIONS", "/token", "",
                             {{"Origin", "http://127.0.0.1:8080"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(preflight.headers["access-control-allow-origin"], "http://127.0.0.1:8080");
  auto token = http.Send("POST", "/token", "grant_type=refresh_token&client_id=ccm-console&refresh_token=x",
                         {{"Origin", "http://127.0.0.1:8080"}, {"Content-Type", kForm}});
  EXPECT_EQ(token.status, 400);
  EXPECT_EQ(token.headers["access-control-allow-origin"], "http://127.0.0.1:8080");
}

TEST_F(OidcCodeFlow, CcmAcceptsAUsersTokenForWhatItsRolesAllow) {
  testing::CcmProcess ccm(dir.path(),
                          {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                           {"AUTH_JWKS_URL", oidc.BaseUrl() + "/jwks"},
                           {"AUTH_ISSUER", "http://oidc-sim"}},
                          /*authenticated=*/true);
  testing::HttpClient api(ccm.BaseUrl());
  api.SetBearer(Exchange(SignIn("vera", "v-pass")).Json()["access_token"]);
  EXPECT_EQ(api.Get("/api/v1/instances").status, 200);
  EXPECT_EQ(api.PostJson("/api/v1/workers", {{"name", "w"}}).status, 403);
}

}  // namespace
}  // namespace ccm
