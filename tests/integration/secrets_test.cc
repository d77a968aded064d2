// Secrets never reach a log line or an error body: the CML password and token, the OIDC
// client secret and tokens, an inbound bearer token; not even when a remote echoes back what
// it was sent.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "clients/assessment_platform_client.h"
#include "clients/oidc_token_provider.h"
#include "os/clock.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace ccm {
namespace {

using nlohmann::json;

// Answers every call with an error whose body repeats the request: headers and body.
http::Response Echo(http::Request& r, int status) {
  http::Response resp;
  resp.status = status;
  std::string all = r.method + " " + r.path + "\n";
  for (const auto& [k, v] : r.headers) all += k + ": " + v + "\n";
  resp.body = json{{"error", "refused"}, {"request", all + r.body}}.dump();
  return resp;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Secrets, NeitherLogsNorErrorsHoldThemWhenCmlEchoesThem) {
  const std::string kPassword = "cml-Pa55-S3cr3t";
  const std::string kCmlToken = "eyJh.cml-T0ken-S3cr3t.sig";
  const std::string kInbound = "eyJh.inbound-T0ken-S3cr3t.sig";
  // A CML that hands out a token, then answers every call with an echo of it.
  testing::FakeServer cml([&](http::Request& r) {
    if (r.path == "/api/v0/authenticate") {
      http::Response ok;
      ok.body = json(kCmlToken).dump();
      return ok;
    }
    return Echo(r, 400);
  });
  testing::TempDir dir;
  const std::string log = dir.File("ccm.log");
  const std::map<std::string, std::string> env = {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                                  {"CCM_LOG_LEVEL", "debug"},
                                                  {"CML_PASSWORD", kPassword},
                                                  {"CML_MAX_FAILURES", "2"},
                                                  {"RECONCILE_INTERVAL_MS", "50"},
                                                  {"INSTANTIATION_LEAD_SECONDS", "0"},
                                                  {"OIDC_CLIENT_SECRET", "oidc-S3cr3t"}};
  {
    auto with_auth = env;
    with_auth.insert({{"OIDC_TOKEN_URL", cml.Url() + "/token"},
                      {"OIDC_CLIENT_ID", "ccm"},
                      {"ASSESSMENT_PLATFORM_URL", cml.Url()},
                      {"AUTH_JWKS_URL", cml.Url() + "/jwks"},
                      {"AUTH_ISSUER", "https://issuer.test"}});
    testing::CcmProcess ccm(dir.path(), with_auth, /*authenticated=*/true, log);
    testing::HttpClient http(ccm.BaseUrl());
    http.SetBearer(kInbound);
    auto refused = http.Get("/api/v1/instances");
    EXPECT_EQ(refused.status, 401);
    EXPECT_EQ(refused.body.find("S3cr3t"), std::string::npos) << refused.body;
    ccm.Kill(SIGTERM);
  }
  {
    // The same process without inbound authentication, to drive an instance into CML.
    testing::CcmProcess ccm(dir.path(), env, false, dir.File("ccm2.log"));
    testing::HttpClient http(ccm.BaseUrl());
    json worker = {{"name", "w1"}, {"hostname", "w1"}, {"cml_url", cml.Url()}, {"license_type", "ENTERPRISE"},
                   {"capacity", {{"cpu_cores", 8}, {"memory_gb", 8}, {"max_nodes", 10}}}, {"state", "RUNNING"}};
    ASSERT_EQ(http.PostJson("/api/v1/workers", worker).status, 201);
    json def = {{"name", "lab"}, {"version", "1.0.0"}, {"lab_yaml", "nodes: [{id: n0, label: r1}]\nlinks: []\nlab: {}\n"},
                {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}}, {"license_affinity", {"ENTERPRISE"}},
                {"max_duration_minutes", 60}, {"created_by", "t"}};
    const std::string def_id = http.PostJson("/api/v1/definitions", def).Json()["id"];
    const std::string now = FormatRfc3339(os::SystemClock().Now());
    json inst = {{"definition_id", def_id}, {"owner_id", "c"}, {"timeslot_start", now},
                 {"timeslot_end", FormatRfc3339(os::SystemClock().Now() + std::chrono::minutes(30))}};
    const std::string id = http.PostJson("/api/v1/instances", inst).Json()["id"];
    json i;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    do {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      i = http.Get("/api/v1/instances/" + id).Json();
    } while (i["state"] != "TERMINATED" && std::chrono::steady_clock::now() < deadline);
    ASSERT_EQ(i["state"], "TERMINATED") << i;
    const std::string reason = i["state_history"].back()["reason"];
    EXPECT_NE(reason.find("[redacted]"), std::string::npos) << reason;  // the echo was there, and was cut
    EXPECT_EQ(i.dump().find("S3cr3t"), std::string::npos) << i;
    ccm.Kill(SIGTERM);
  }
  const std::string logs = ReadAll(log) + ReadAll(dir.File("ccm2.log"));
  EXPECT_NE(logs.find("instantiator: instance"), std::string::npos) << logs;  // the failures were logged
  for (const std::string& secret : {kPassword, kCmlToken, kInbound, std::string("oidc-S3cr3t"), std::string("S3cr3t")})
    EXPECT_EQ(logs.find(secret), std::string::npos) << secret << " is in the log:\n" << logs;
}

TEST(Secrets, ClientsCutTheirTokenAndSecretOutOfWhatARemoteEchoes) {
  testing::FakeServer remote([](http::Request& r) { return Echo(r, r.path == "/token" ? 401 : 400); });
  os::SystemClock clock;
  clients::OidcTokenProvider bad_tokens({remote.Url() + "/token", "ccm", "oidc-S3cr3t"}, clock);
  auto t = bad_tokens.Token();
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().message.find("S3cr3t"), std::string::npos) << t.error().message;

  // A platform that refuses and echoes the bearer token it got.
  testing::FakeServer tokens([](http::Request&) {
    http::Response r;
    r.body = json{{"access_token", "plat-T0ken-S3cr3t"}, {"expires_in", 300}}.dump();
    return r;
  });
  clients::OidcTokenProvider good_tokens({tokens.Url(), "ccm", "x"}, clock);
  clients::RemoteOptions o;
  o.base_url = remote.Url();
  clients::AssessmentPlatformClient platform(o, clock, &good_tokens);
  auto s = platform.TriggerCollection({"i-1", "lab-1", "w1"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("[redacted]"), std::string::npos) << s.error().message;
  EXPECT_EQ(s.error().message.find("S3cr3t"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace ccm
