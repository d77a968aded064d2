// Outbound authentication: client-credentials tokens from a token endpoint on loopback,
// cached, refreshed before expiry, fetched once however many callers wait, and refreshed
// once on a 401.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "clients/assessment_platform_client.h"
#include "clients/oidc_token_provider.h"
#include "http/server.h"
#include "os/clock.h"
#include "ports/assessment_platform.h"
#include "support/fake_clock.h"
#include "support/fake_server.h"

namespace ccm {
namespace {

using namespace std::chrono_literals;

// A token endpoint: hands out "tok-N" for client "ccm"/"s3cret", valid `lifetime` seconds.
class TokenEndpoint {
 public:
  explicit TokenEndpoint(int lifetime_seconds, std::chrono::milliseconds delay = 0ms)
      : lifetime_(lifetime_seconds), delay_(delay), server_([this](http::Request& r) {
      std::this_thread::sleep_for(delay_);
      http::Response resp;
      if (r.body.find("grant_type=client_credentials") == std::string::npos ||
          r.body.find("client_id=ccm") == std::string::npos || r.body.find("client_secret=s3cret") == std::string::npos) {
        resp.status = 401;
        return resp;
      }
      const int n = ++issued_;
      resp.body = R"({"access_token":"tok-)" + std::to_string(n) + R"(","token_type":"Bearer","expires_in":)" +
                  std::to_string(lifetime_) + "}";
      return resp;
    }) {}
  std::string Url() const { return server_.Url() + "/token"; }
  int issued() const { return issued_; }

 private:
  int lifetime_;
  std::chrono::milliseconds delay_;
  std::atomic<int> issued_{0};
  testing::FakeServer server_;
};

clients::OidcOptions Options(const std::string& url, const std::string& secret = "s3cret") {
  clients::OidcOptions o;
  o.token_url = url;
  o.client_id = "ccm";
  o.client_secret = secret;
  return o;
}

TEST(Oidc, TokensAreCachedAndRefreshedBeforeExpiry) {
  TokenEndpoint endpoint(60);
  testing::FakeClock clock(FromUnixMillis(1'800'000'000'000));
  clients::OidcTokenProvider tokens(Options(endpoint.Url()), clock);
  EXPECT_EQ(*tokens.Token(), "tok-1");
  EXPECT_EQ(*tokens.Token(), "tok-1");
  clock.Advance(53s);  // refreshed 6 s (a tenth of 60) before expiry
  EXPECT_EQ(*tokens.Token(), "tok-1");
  clock.Advance(2s);
  EXPECT_EQ(*tokens.Token(), "tok-2");
  EXPECT_EQ(endpoint.issued(), 2);
}

TEST(Oidc, OneFetchInFlightHoweverManyCallersWait) {
  TokenEndpoint endpoint(300, 200ms);
  os::SystemClock clock;
  clients::OidcTokenProvider tokens(Options(endpoint.Url()), clock);
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> seen;
  for (int t = 0; t < 16; ++t)
    threads.emplace_back([&] {
      auto token = tokens.Token();
      std::lock_guard lock(mu);
      seen.insert(token ? *token : "error");
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(endpoint.issued(), 1);
  EXPECT_EQ(seen, std::set<std::string>{"tok-1"});
}

TEST(Oidc, ARefusedSecretIsAnErrorThatDoesNotShowIt) {
  TokenEndpoint endpoint(60);
  os::SystemClock clock;
  clients::OidcTokenProvider tokens(Options(endpoint.Url(), "wrong-secret-value"), clock);
  auto token = tokens.Token();
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(token.error().message.find("HTTP 401"), std::string::npos);
  EXPECT_EQ(token.error().message.find("wrong-secret-value"), std::string::npos);
}

// The platform accepts only the newest token it has been told about.
class GuardedPlatform {
 public:
  GuardedPlatform()
      : server_([this](http::Request& r) {
      http::Response resp;
      std::lock_guard lock(mu_);
      seen_.push_back(std::string(r.Header("authorization")));
      resp.status = r.Header("authorization") == "Bearer " + accepted_ ? 202 : 401;
      return resp;
    }) {}
  std::string Url() const { return server_.Url(); }
  void Accept(const std::string& token) {
    std::lock_guard lock(mu_);
    accepted_ = token;
  }
  std::vector<std::string> Seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::string accepted_;
  std::vector<std::string> seen_;
  testing::FakeServer server_;
};

TEST(Oidc, A401ForcesOneRefreshAndOneRetryAndExpiryMidRunFetchesANewToken) {
  TokenEndpoint endpoint(60);
  GuardedPlatform platform;
  testing::FakeClock clock(FromUnixMillis(1'800'000'000'000));
  clients::OidcTokenProvider tokens(Options(endpoint.Url()), clock);
  clients::AssessmentPlatformClient client(clients::RemoteOptions{platform.Url(), 500ms, 1000ms, 2, 5ms, 100, 10ms}, clock, &tokens);
  const ports::CollectionRequest request{"i-1", "lab-1", "w1.example"};

  platform.Accept("tok-2");  // tok-1 will be refused once: revoked
  ASSERT_TRUE(client.TriggerCollection(request));
  EXPECT_EQ(platform.Seen(), (std::vector<std::string>{"Bearer tok-1", "Bearer tok-2"}));

  // The token expires in the middle of a run: the next call fetches a new one first.
  clock.Advance(60s);
  platform.Accept("tok-3");
  ASSERT_TRUE(client.TriggerCollection(request));
  EXPECT_EQ(platform.Seen().back(), "Bearer tok-3");
  EXPECT_EQ(endpoint.issued(), 3);

  // Refused twice in a row: one refresh only, then the error names the call.
  platform.Accept("never");
  auto refused = client.TriggerCollection(request);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("assessment platform POST /api/v1/collections: HTTP 401"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(endpoint.issued(), 4);
}

}  // namespace
}  // namespace ccm
