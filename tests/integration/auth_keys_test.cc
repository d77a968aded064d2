// The issuer's keys as a real `ccm serve` (authentication on) uses them, with a fake issuer
// whose JWKS can be slow, down, or rotate: made-up key ids neither stall other requests nor
// make ccm hammer the issuer; keys are fetched again on a period, so a removed key stops
// verifying; the last good set serves while the issuer is down, for a bounded time; tokens
// with `crit` are refused; roles count only from ccm's own client (realm roles by choice);
// answers never name the issuer's address, 401 says why in WWW-Authenticate, 503 says when
// to come back.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "clients/jwks_key_set.h"
#include "support/fake_clock.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/jwt_mint.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace ccm {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

// An issuer's JWKS endpoint whose keys, speed and health the test sets.
class FakeIssuer {
 public:
  FakeIssuer() : server_([this](http::Request&) { return Answer(); }) {}

  std::string JwksUrl() const { return server_.Url() + "/certs"; }
  void Publish(std::vector<const testing::SigningKey*> keys) {
    std::lock_guard lock(mu_);
    keys_ = std::move(keys);
  }
  void SetDelay(milliseconds delay) { delay_ms_ = delay.count(); }
  void SetDown(bool down) { down_ = down; }
  int started() const { return started_; }    // fetches begun
  int finished() const { return finished_; }  // fetches answered

 private:
  http::Response Answer() {
    ++started_;
    std::this_thread::sleep_for(milliseconds(delay_ms_.load()));
    http::Response r;
    if (down_) {
      r.status = 503;
      r.body = "{}";
    } else {
      json keys = json::array();
      std::lock_guard lock(mu_);
      for (const auto* k : keys_) keys.push_back(k->Jwk());
      r.body = json{{"keys", keys}}.dump();
    }
    ++finished_;
    return r;
  }

  std::mutex mu_;
  std::vector<const testing::SigningKey*> keys_;
  std::atomic<std::int64_t> delay_ms_{0};
  std::atomic<bool> down_{false};
  std::atomic<int> started_{0};
  std::atomic<int> finished_{0};
  testing::FakeServer server_;  // last: its threads use the members above
};

class AuthKeysTest : public ::testing::Test {
 protected:
  AuthKeysTest() : k1_("RS256", "k1"), k2_("ES256", "k2"), stranger_("RS256", "made-up") {
    issuer_.Publish({&k1_});
  }

  // `ccm serve`, authentication on, trusting issuer_, with these settings added.
  testing::CcmProcess& StartCcm(std::map<std::string, std::string> env = {}) {
    env.emplace("CCM_STORE", "sqlite:" + dir_.File("ccm" + std::to_string(ccms_.size()) + ".db"));
    env.emplace("AUTH_JWKS_URL", issuer_.JwksUrl());
    env.emplace("AUTH_ISSUER", "https://issuer.test");
    auto work = dir_.File("ccm" + std::to_string(ccms_.size()));
    std::filesystem::create_directories(work);
    ccms_.push_back(std::make_unique<testing::CcmProcess>(work, env, /*authenticated=*/true));
    return *ccms_.back();
  }
  static testing::HttpResult GetWorkers(const testing::CcmProcess& ccm, const std::string& token) {
    testing::HttpClient http(ccm.BaseUrl());
    if (!token.empty()) http.SetBearer(token);
    return http.Get("/api/v1/workers");
  }
  static std::string ViewerToken(const testing::SigningKey& key) {
    return key.Sign(testing::GoodClaims({"ccm.viewer"}));
  }
  // The answer names neither the issuer's address nor any URL.
  void ExpectNoAddress(const testing::HttpResult& r) {
    EXPECT_EQ(r.body.find("http"), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find("127.0.0.1"), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find("/certs"), std::string::npos) << r.body;
  }

  testing::SigningKey k1_, k2_, stranger_;
  FakeIssuer issuer_;
  testing::TempDir dir_;
  std::vector<std::unique_ptr<testing::CcmProcess>> ccms_;
};

TEST_F(AuthKeysTest, MadeUpKeyIdsNeitherStallValidRequestsNorCostMoreThanOneFetchPerPeriod) {
  auto& ccm = StartCcm();
  ASSERT_EQ(GetWorkers(ccm, ViewerToken(k1_)).status, 200);
  const int before = issuer_.started();
  // Minted beforehand, so that the requests below are quick.
  const std::string valid_token = ViewerToken(k1_);
  std::vector<std::string> made_up;
  for (int i = 0; i < 10; ++i)
    made_up.push_back(stranger_.Sign(testing::GoodClaims({"ccm.admin"}), {{"kid", "made-up-" + std::to_string(i)}}));

  // A made-up key id sets off a fetch of the keys, which the issuer takes 3 s to answer.
  issuer_.SetDelay(std::chrono::seconds(3));
  // (a jthread: joined however the test ends)
  std::jthread slow([&] { EXPECT_EQ(GetWorkers(ccm, ViewerToken(stranger_)).status, 401); });
  ASSERT_TRUE(testing::Eventually([&] { return issuer_.started() > before; }, std::chrono::seconds(5)));
  const int finished_when_fetch_began = issuer_.finished();

  // Meanwhile a valid token is answered from the keys ccm holds, before that fetch ends, and
  // further made-up ids are refused at once without another fetch.
  auto valid = GetWorkers(ccm, valid_token);
  EXPECT_EQ(valid.status, 200) << valid.body;
  EXPECT_EQ(issuer_.finished(), finished_when_fetch_began) << "the valid request waited for the slow fetch";
  for (const auto& token : made_up) EXPECT_EQ(GetWorkers(ccm, token).status, 401);
  EXPECT_EQ(issuer_.finished(), finished_when_fetch_began) << "made-up ids waited for the slow fetch";
  slow.join();

  // Once it ended, the period's budget is spent: more made-up ids cost no fetch.
  issuer_.SetDelay(milliseconds(0));
  for (int i = 0; i < 50; ++i) {
    auto refused = GetWorkers(ccm, stranger_.Sign(testing::GoodClaims({"ccm.admin"}),
                                                  {{"kid", "again-" + std::to_string(i)}}));
    EXPECT_EQ(refused.status, 401);
    EXPECT_EQ(refused.headers["www-authenticate"], "Bearer realm=\"ccm\", error=\"invalid_token\"");
    ExpectNoAddress(refused);
  }
  EXPECT_EQ(issuer_.started(), before + 1);
  EXPECT_EQ(GetWorkers(ccm, ViewerToken(k1_)).status, 200);
}

TEST_F(AuthKeysTest, AKeyTheIssuerRemovedStopsVerifyingAfterThePeriodicRefresh) {
  issuer_.Publish({&k1_, &k2_});
  auto& ccm = StartCcm({{"AUTH_JWKS_REFRESH_SECONDS", "1"}});
  const std::string retired = ViewerToken(k1_);
  auto first = GetWorkers(ccm, retired);
  ASSERT_EQ(first.status, 200) << first.body;
  auto second = GetWorkers(ccm, ViewerToken(k2_));
  ASSERT_EQ(second.status, 200) << second.body;

  issuer_.Publish({&k2_});
  const int fetches_before = issuer_.finished();
  // Within a period or two; the wide bound is for slow machines (sanitizers, a loaded runner).
  EXPECT_TRUE(testing::Eventually([&] { return GetWorkers(ccm, retired).status == 401; }, std::chrono::seconds(15)))
      << "fetches answered since the key was removed: " << issuer_.finished() - fetches_before;
  EXPECT_EQ(GetWorkers(ccm, ViewerToken(k2_)).status, 200);
}

TEST_F(AuthKeysTest, TheLastGoodSetServesWhileTheIssuerIsDownThenRequestsAreToldToComeBack) {
  auto& ccm = StartCcm({{"AUTH_JWKS_REFRESH_SECONDS", "1"}, {"AUTH_JWKS_MAX_STALE_SECONDS", "4"}});
  const std::string token = ViewerToken(k1_);
  ASSERT_EQ(GetWorkers(ccm, token).status, 200);

  issuer_.SetDown(true);
  const int before = issuer_.finished();
  ASSERT_TRUE(testing::Eventually([&] { return issuer_.finished() >= before + 1; }, std::chrono::seconds(3)));
  EXPECT_EQ(GetWorkers(ccm, token).status, 200) << "the last good keys are served after a failed refresh";

  // Past the bound on staleness: 503, saying when to retry and not where the keys live.
  testing::HttpResult unavailable;
  EXPECT_TRUE(testing::Eventually(
      [&] {
        unavailable = GetWorkers(ccm, token);
        return unavailable.status == 503;
      },
      std::chrono::seconds(8)));
  EXPECT_FALSE(unavailable.headers["retry-after"].empty());
  EXPECT_EQ(unavailable.ContentType(), "application/problem+json");
  EXPECT_EQ(unavailable.Json()["detail"], "the issuer's keys cannot be fetched");
  ExpectNoAddress(unavailable);

  issuer_.SetDown(false);
  EXPECT_TRUE(testing::Eventually([&] { return GetWorkers(ccm, token).status == 200; }, std::chrono::seconds(5)));
}

TEST_F(AuthKeysTest, AnIssuerDownAtStartIsNamedInNoAnswer) {
  issuer_.SetDown(true);
  auto& ccm = StartCcm();
  auto r = GetWorkers(ccm, ViewerToken(k1_));
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_FALSE(r.headers["retry-after"].empty());
  ExpectNoAddress(r);
  // Without a token, it is still a plain challenge.
  auto none = GetWorkers(ccm, "");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer realm=\"ccm\"");
}

TEST_F(AuthKeysTest, ATokenWithCriticalExtensionsIsRefused) {
  auto& ccm = StartCcm();
  const json claims = testing::GoodClaims({"ccm.viewer"});
  ASSERT_EQ(GetWorkers(ccm, k1_.Sign(claims)).status, 200);
  auto crit = GetWorkers(ccm, k1_.Sign(claims, {{"crit", json::array({"exp"})}, {"exp", 1}}));
  EXPECT_EQ(crit.status, 401) << crit.body;
  EXPECT_EQ(crit.headers["www-authenticate"], "Bearer realm=\"ccm\", error=\"invalid_token\"");
  EXPECT_NE(crit.Json()["detail"].get<std::string>().find("crit"), std::string::npos);
}

TEST_F(AuthKeysTest, RolesCountFromCcmsOwnClientAndRealmRolesOnlyWhenAllowed) {
  // The ccm.admin role on another client of the realm, and a realm role.
  json other_client = testing::GoodClaims({});
  other_client["resource_access"]["reporting"] = {{"roles", json::array({"ccm.admin"})}};
  json realm = testing::GoodClaims({});
  realm["realm_access"] = {{"roles", json::array({"ccm.viewer"})}};
  json renamed = testing::GoodClaims({});
  renamed["resource_access"]["ccm-prod"] = {{"roles", json::array({"ccm.viewer"})}};

  auto& strict = StartCcm();
  EXPECT_EQ(GetWorkers(strict, k1_.Sign(other_client)).status, 403);
  EXPECT_EQ(GetWorkers(strict, k1_.Sign(realm)).status, 403);
  EXPECT_EQ(GetWorkers(strict, k1_.Sign(renamed)).status, 403);
  EXPECT_EQ(GetWorkers(strict, ViewerToken(k1_)).status, 200);

  auto& with_realm = StartCcm({{"AUTH_REALM_ROLES", "true"}, {"AUTH_CLIENT_ID", "ccm-prod"}});
  EXPECT_EQ(GetWorkers(with_realm, k1_.Sign(realm)).status, 200);
  EXPECT_EQ(GetWorkers(with_realm, k1_.Sign(renamed)).status, 200);
  EXPECT_EQ(GetWorkers(with_realm, k1_.Sign(other_client)).status, 403);
  EXPECT_EQ(GetWorkers(with_realm, ViewerToken(k1_)).status, 403);  // resource_access.ccm is not ccm-prod
}

// The same rules on the key set alone, on a fake clock.
TEST(JwksKeySet, TheLastGoodSetIsUsedUpToItsStalenessBoundAndAFailedFetchKeepsIt) {
  testing::SigningKey k1("RS256", "k1");
  FakeIssuer issuer;
  issuer.Publish({&k1});
  testing::FakeClock clock(FromUnixMillis(1'000'000));
  clients::JwksKeySet::Options options;
  options.min_refresh = std::chrono::seconds(10);
  options.max_stale = std::chrono::seconds(60);
  clients::JwksKeySet jwks(issuer.JwksUrl(), clock, options);
  ASSERT_TRUE(jwks.Refresh());
  issuer.SetDown(true);
  EXPECT_FALSE(jwks.Refresh());
  clock.Advance(std::chrono::seconds(30));
  EXPECT_TRUE(jwks.Find("k1"));  // the last good set, 30 s old
  auto unknown = jwks.Find("k9");  // the issuer cannot say: refused, not waited for
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kUnauthenticated);
  clock.Advance(std::chrono::seconds(31));
  auto stale = jwks.Find("k1");
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(stale.error().message, "the issuer's keys cannot be fetched");
  issuer.SetDown(false);
  clock.Advance(std::chrono::seconds(10));
  EXPECT_TRUE(jwks.Find("k1"));
  // A fetch that succeeds drops what the issuer no longer lists.
  issuer.Publish({});
  ASSERT_TRUE(jwks.Refresh());
  EXPECT_EQ(jwks.Find("k1").error().code, ErrorCode::kUnauthenticated);
}

}  // namespace
}  // namespace ccm
