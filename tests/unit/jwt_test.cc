// Inbound bearer tokens: what is accepted, and every way a forged or stale one is refused.
#include <gtest/gtest.h>

#include "auth/jwt.h"
#include "support/jwt_mint.h"

namespace ccm::auth {
namespace {

using nlohmann::json;

class JwtTest : public ::testing::Test {
 protected:
  JwtTest() : rsa_("RS256", "rsa-1"), ec_("ES256", "ec-1") {
    keys_.Add(rsa_);
    keys_.Add(ec_);
  }
  Result<Principal> Check(const std::string& token) {
    return Verify(token, keys_, {"https://issuer.test", "ccm", std::chrono::seconds(60)},
                  FromUnixMillis(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count()));
  }
  // Refused, with a message holding `why`.
  void ExpectRefused(const std::string& token, const std::string& why) {
    auto p = Check(token);
    ASSERT_FALSE(p) << "accepted: " << why;
    EXPECT_EQ(p.error().code, ErrorCode::kUnauthenticated);
    EXPECT_NE(p.error().message.find(why), std::string::npos) << p.error().message;
    EXPECT_EQ(p.error().message.find(token), std::string::npos);  // the token is never echoed
  }

  testing::SigningKey rsa_, ec_;
  testing::StaticKeys keys_;
};

TEST_F(JwtTest, AcceptsRs256AndEs256WithTheirRoles) {
  for (const auto* key : {&rsa_, &ec_}) {
    auto p = Check(key->Sign(testing::GoodClaims({"ccm.operator"}, "svc-" + key->kid())));
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->subject, "svc-" + key->kid());
    EXPECT_TRUE(p->Has(Role::kOperator));
    EXPECT_TRUE(p->Has(Role::kViewer));  // an operator may read
    EXPECT_FALSE(p->Has(Role::kAdmin));
    EXPECT_FALSE(p->Has(Role::kEventsPublish));
  }
}

TEST_F(JwtTest, RolesComeFromCcmsOwnClientOnly) {
  json claims = testing::GoodClaims({"ccm.events.publish"});
  // The same role names on another client of the realm, as a realm role and as a top-level
  // claim grant nothing by default.
  claims["resource_access"]["other-app"] = {{"roles", {"ccm.admin"}}};
  claims["realm_access"] = {{"roles", {"ccm.operator"}}};
  claims["roles"] = {"ccm.admin"};
  auto p = Check(rsa_.Sign(claims));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->roles, (std::set<std::string>{"ccm.events.publish"}));
  EXPECT_TRUE(p->Has(Role::kEventsPublish));
  EXPECT_FALSE(p->Has(Role::kAdmin));
  EXPECT_FALSE(p->Has(Role::kViewer));
  auto viewer = Check(rsa_.Sign(testing::GoodClaims({"ccm.viewer"})));
  ASSERT_TRUE(viewer);
  EXPECT_FALSE(viewer->Has(Role::kOperator));
}

TEST_F(JwtTest, RealmRolesCountOnlyWhenAllowedAndTheClientIdIsConfigurable) {
  json claims = testing::GoodClaims({});
  claims["realm_access"] = {{"roles", {"ccm.operator"}}};
  claims["resource_access"]["ccm-prod"] = {{"roles", {"ccm.events.publish"}}};
  const Timestamp now = FromUnixMillis(claims["iat"].get<std::int64_t>() * 1000);
  Expectations expect{"https://issuer.test", "ccm", std::chrono::seconds(60)};
  auto plain = Verify(rsa_.Sign(claims), keys_, expect, now);
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->roles.empty());
  expect.realm_roles = true;
  auto realm = Verify(rsa_.Sign(claims), keys_, expect, now);
  ASSERT_TRUE(realm);
  EXPECT_EQ(realm->roles, (std::set<std::string>{"ccm.operator"}));
  expect.realm_roles = false;
  expect.client_id = "ccm-prod";
  auto client = Verify(rsa_.Sign(claims), keys_, expect, now);
  ASSERT_TRUE(client);
  EXPECT_EQ(client->roles, (std::set<std::string>{"ccm.events.publish"}));
}

TEST_F(JwtTest, RefusesCriticalHeaderExtensions) {
  const json claims = testing::GoodClaims({"ccm.admin"});
  ExpectRefused(rsa_.Sign(claims, {{"crit", json::array({"exp"})}, {"exp", 1}}), "crit");
  ExpectRefused(rsa_.Sign(claims, {{"crit", json::array()}}), "crit");
  EXPECT_TRUE(Check(rsa_.Sign(claims)));
}

// A key set that counts how often it is asked.
class CountingKeys : public KeySet {
 public:
  explicit CountingKeys(KeySet& inner) : inner_(inner) {}
  Result<std::shared_ptr<const PublicKey>> Find(const std::string& kid) override {
    ++finds;
    return inner_.Find(kid);
  }
  int finds = 0;

 private:
  KeySet& inner_;
};

TEST_F(JwtTest, LooksUpTheKeyOnlyForATokenThatPassesTheLocalChecks) {
  CountingKeys counting(keys_);
  const json good = testing::GoodClaims({"ccm.viewer"});
  const Timestamp now = FromUnixMillis(good["iat"].get<std::int64_t>() * 1000);
  const Expectations expect{"https://issuer.test", "ccm", std::chrono::seconds(60)};
  testing::SigningKey unknown("RS256", "made-up");
  for (const auto& [claim, value] : std::vector<std::pair<std::string, json>>{
           {"iss", "https://evil.test"}, {"aud", "other"}, {"exp", 1}, {"sub", ""}}) {
    json c = good;
    c[claim] = value;
    EXPECT_FALSE(Verify(unknown.Sign(c), counting, expect, now)) << claim;
  }
  EXPECT_FALSE(Verify(unknown.Sign(good, {{"crit", json::array({"b64"})}}), counting, expect, now));
  EXPECT_EQ(counting.finds, 0);
  EXPECT_FALSE(Verify(unknown.Sign(good), counting, expect, now));
  EXPECT_EQ(counting.finds, 1);
}

TEST_F(JwtTest, RefusesAlgNoneAndHmacWithThePublicKey) {
  const json claims = testing::GoodClaims({"ccm.admin"});
  const std::string unsigned_token =
      Base64UrlEncode(json{{"alg", "none"}, {"typ", "JWT"}}.dump()) + "." + Base64UrlEncode(claims.dump()) + ".";
  ExpectRefused(unsigned_token, "'none' is not accepted");
  // The classic confusion: HS256 "signed" with the RSA public key as the shared secret.
  ExpectRefused(testing::SignHs256({{"alg", "HS256"}, {"typ", "JWT"}, {"kid", "rsa-1"}}, claims, rsa_.PublicPem()),
                "'HS256' is not accepted");
  // An ES256 header on the RSA key's id.
  ExpectRefused(rsa_.Sign(claims, {{"alg", "ES256"}}), "does not fit key 'rsa-1'");
}

TEST_F(JwtTest, RefusesATamperedOrForeignSignature) {
  const std::string good = rsa_.Sign(testing::GoodClaims({"ccm.viewer"}));
  const auto dot1 = good.find('.'), dot2 = good.rfind('.');
  const std::string forged_claims = Base64UrlEncode(testing::GoodClaims({"ccm.admin"}).dump());
  ExpectRefused(good.substr(0, dot1 + 1) + forged_claims + good.substr(dot2), "signature does not verify");
  testing::SigningKey stranger("RS256", "rsa-1");  // same key id, another key
  ExpectRefused(stranger.Sign(testing::GoodClaims({"ccm.admin"})), "signature does not verify");
  testing::SigningKey unknown("ES256", "ec-9");
  ExpectRefused(unknown.Sign(testing::GoodClaims({"ccm.admin"})), "ec-9");
}

TEST_F(JwtTest, ChecksIssuerAudienceExpiryAndNotBefore) {
  json claims = testing::GoodClaims({"ccm.viewer"});
  const std::int64_t now = claims["iat"];
  auto with = [&](const std::string& key, json value) {
    json c = claims;
    if (value.is_null()) c.erase(key);
    else c[key] = std::move(value);
    return rsa_.Sign(c);
  };
  ExpectRefused(with("iss", "https://evil.test"), "issuer");
  ExpectRefused(with("aud", "other-api"), "audience ccm");
  EXPECT_TRUE(Check(with("aud", json::array({"other-api", "ccm"}))));
  ExpectRefused(with("exp", nullptr), "no expiry");
  ExpectRefused(with("exp", now - 61), "expired");
  EXPECT_TRUE(Check(with("exp", now - 30)));  // within the clock skew
  ExpectRefused(with("nbf", now + 120), "not valid yet");
  EXPECT_TRUE(Check(with("nbf", now + 30)));
  ExpectRefused(with("sub", nullptr), "no subject");
}

TEST_F(JwtTest, RefusesWhatIsNotACompactJws) {
  ExpectRefused("abc", "three parts");
  ExpectRefused("a.b.c.d", "three parts");
  ExpectRefused("!!.??.##", "base64url");
  ExpectRefused(Base64UrlEncode("[1]") + "." + Base64UrlEncode("{}") + ".", "JSON objects");
}

TEST(Jwk, RefusesKeysItCannotUse) {
  EXPECT_EQ(KeyFromJwk({{"kty", "oct"}, {"k", "c2VjcmV0"}}).error().field, "kty");
  EXPECT_EQ(KeyFromJwk({{"kty", "EC"}, {"crv", "P-384"}, {"x", "AA"}, {"y", "AA"}}).error().field, "crv");
  EXPECT_EQ(KeyFromJwk({{"kty", "RSA"}, {"e", "AQAB"}}).error().field, "n");
  testing::SigningKey ec("ES256", "k");
  json jwk = ec.Jwk();
  jwk["alg"] = "RS256";
  EXPECT_EQ(KeyFromJwk(jwk).error().field, "alg");
}

TEST(Base64Url, RoundTripsEveryLength) {
  std::string bytes;
  for (int n = 0; n < 70; ++n) {
    EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(bytes)), bytes);
    bytes.push_back(static_cast<char>(n * 37));
  }
  EXPECT_FALSE(Base64UrlDecode("a"));
  EXPECT_FALSE(Base64UrlDecode("ab+/"));  // standard alphabet, not base64url
}

}  // namespace
}  // namespace ccm::auth
