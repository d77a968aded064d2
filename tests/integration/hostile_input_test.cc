// Hostile input against a real `ccm serve` with authentication on, over HTTP: JSON nested
// 87,000 deep (events in every mode, an extension attribute, an API body), a lab YAML whose
// aliases expand to gigabytes, and attributes that are not UTF-8. Each is refused with a
// problem naming the field, writes nothing, and leaves the same process up with its memory
// bounded.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "support/fake_server.h"
#include "support/hostile.h"
#include "support/http_client.h"
#include "support/jwt_mint.h"
#include "support/lab_seed.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::HttpResult;

constexpr std::size_t kDeep = 87'000;

std::string Deep() { return std::string(kDeep, '[') + std::string(kDeep, ']'); }

// The resident set of process `pid` in KiB, from /proc/PID/status; -1 when unreadable.
long VmRssKib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

class HostileInput : public ::testing::Test {
 protected:
  HostileInput()
      : key_("RS256", "k1"),
        issuer_([this](http::Request&) {
          http::Response r;
          r.body = json{{"keys", json::array({key_.Jwk()})}}.dump();
          return r;
        }),
        ccm_(dir_.path(),
             {{"CCM_STORE", "sqlite:" + dir_.File("ccm.db")},
              {"AUTH_JWKS_URL", issuer_.Url() + "/jwks"},
              {"AUTH_ISSUER", "https://issuer.test"},
              {"CCM_RECONCILERS", "false"}},
             /*authenticated=*/true, dir_.File("ccm.log")),
        pid_(ccm_.pid()),
        http_(ccm_.BaseUrl()) {
    http_.SetBearer(key_.Sign(testing::GoodClaims({"ccm.admin", "ccm.operator", "ccm.viewer", "ccm.events.publish"})));
  }

  // The same process answers its liveness probe.
  void ExpectAlive(const std::string& after) {
    EXPECT_TRUE(ccm_.Running()) << "ccm died after " << after;
    EXPECT_EQ(ccm_.pid(), pid_) << after;
    EXPECT_EQ(http_.Get("/health/live").status, 200) << after;
  }

  void ExpectRefused(const HttpResult& r, long status, const std::string& field, const std::string& what) {
    EXPECT_EQ(r.status, status) << what << ": " << r.body.substr(0, 300);
    EXPECT_EQ(r.ContentType(), "application/problem+json") << what;
    EXPECT_EQ(r.Json().value("field", ""), field) << what << ": " << r.body.substr(0, 300);
  }

  HttpResult PostEvent(const std::string& body, const std::string& content_type) {
    return http_.Post("/api/v1/events", body, content_type);
  }

  testing::TempDir dir_;
  testing::SigningKey key_;
  testing::FakeServer issuer_;
  testing::CcmProcess ccm_;
  const int pid_;
  testing::HttpClient http_;
};

TEST_F(HostileInput, JsonNested87000DeepIsRefusedInEveryBodyAndTheProcessStaysUp) {
  const long rss_before = VmRssKib(pid_);
  ASSERT_GT(rss_before, 0);
  const std::string deep = Deep();
  const std::string head = R"({"specversion":"1.0","id":"deep-1","source":"/attacker","type":"x.unknown",)";

  const std::string structured = head + R"("data":)" + deep + "}";
  ASSERT_GT(structured.size(), 170'000u);
  ExpectRefused(PostEvent(structured, "application/cloudevents+json"), 400, "data", "structured data");
  ExpectAlive("a deep structured event");

  ExpectRefused(PostEvent(head + R"("myext":)" + deep + "}", "application/cloudevents+json"), 400, "myext",
                "extension attribute");
  ExpectAlive("a deep extension attribute");

  ExpectRefused(PostEvent("[" + head + R"("data":)" + deep + "}]", "application/cloudevents-batch+json"), 400,
                "[0].data", "batch");
  ExpectAlive("a deep batch");

  const HttpResult binary = http_.Send("POST", "/api/v1/events", deep,
                                       {{"Content-Type", "application/json"},
                                        {"ce-specversion", "1.0"},
                                        {"ce-id", "deep-2"},
                                        {"ce-source", "/attacker"},
                                        {"ce-type", "x.unknown"}});
  ExpectRefused(binary, 400, "data", "binary data");
  ExpectAlive("a deep binary event");

  const std::string worker = R"({"name":"w1","hostname":"w1","cml_url":"http://w1","license_type":"ENTERPRISE",)"
                             R"("capacity":)" + deep + "}";
  ExpectRefused(http_.Post("/api/v1/workers", worker), 400, "capacity", "API body");
  ExpectAlive("a deep API body");
  EXPECT_EQ(http_.Get("/api/v1/workers").Json()["items"].size(), 0u);

  // The limit is on depth, not on the shape: a legitimate event still goes through.
  const HttpResult fine = PostEvent(head + R"("data":{"a":[[1,2],{"b":[3]}]}})", "application/cloudevents+json");
  EXPECT_EQ(fine.status, 202) << fine.body;

  const long rss_after = VmRssKib(pid_);
  EXPECT_LT(rss_after - rss_before, 64 * 1024) << "RSS grew from " << rss_before << " to " << rss_after << " KiB";
}

TEST_F(HostileInput, AnAliasBombDefinitionIsRefusedAndNothingIsWritten) {
  const long rss_before = VmRssKib(pid_);
  const std::string before = http_.Get("/api/v1/definitions").body;
  const std::string bomb = testing::AliasBombLab();
  ASSERT_LT(bomb.size(), 700u);
  const HttpResult r = http_.PostJson("/api/v1/definitions", testing::SampleDefinitionBody(bomb));
  EXPECT_GE(r.status, 400) << r.body;
  EXPECT_LT(r.status, 500) << r.body;
  EXPECT_EQ(r.Json().value("field", ""), "lab_yaml") << r.body;
  EXPECT_NE(r.Json().value("detail", "").find("aliases"), std::string::npos) << r.body;
  EXPECT_EQ(http_.Get("/api/v1/definitions").body, before);
  ExpectAlive("an alias bomb");
  EXPECT_LT(VmRssKib(pid_) - rss_before, 64 * 1024);
}

TEST_F(HostileInput, BinaryAttributesThatAreNotUtf8Are400AndLeaveNoDedupKey) {
  const auto seed = testing::SeedLab(http_, testing::ReadTestData("sample_lab_template.yaml"));
  ASSERT_FALSE(seed.definition_id.empty());
  json instance = {{"definition_id", seed.definition_id}, {"owner_id", "c"},
                   {"timeslot_start", "2026-12-01T09:00:00Z"}, {"timeslot_end", "2026-12-01T10:00:00Z"}};
  const HttpResult created = http_.PostJson("/api/v1/instances", instance);
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.Json()["id"];
  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", seed.worker_id}}).status, 200);
  for (const char* to : {"INSTANTIATING", "RUNNING", "COLLECTING"})
    ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", to}}).status, 200) << to;

  const std::string data = json{{"instance_id", id}, {"collection_id", "c"}, {"artifacts_uri", "s3://a"}}.dump();
  auto send = [&](const std::string& ce_id, const std::string& ce_source) {
    return http_.Send("POST", "/api/v1/events", data,
                      {{"Content-Type", "application/json"},
                       {"ce-specversion", "1.0"},
                       {"ce-id", ce_id},
                       {"ce-source", ce_source},
                       {"ce-type", "assessment.collection.completed"}});
  };
  // An overlong '/', a surrogate, a code point past U+10FFFF, a sequence cut short.
  ExpectRefused(send("utf8-1", "/platform%C0%AF"), 400, "source", "overlong ce-source");
  ExpectRefused(send("utf8-1", "/platform%ED%A0%80"), 400, "source", "surrogate ce-source");
  ExpectRefused(send("%F4%90%80%80", "/platform"), 400, "id", "ce-id past U+10FFFF");
  ExpectRefused(send("utf8-1%E2%82", "/platform"), 400, "id", "truncated ce-id");
  ExpectRefused(send("utf8-1%0A", "/platform"), 400, "id", "ce-id with a control character");
  ExpectAlive("invalid UTF-8 attributes");
  EXPECT_EQ(http_.Get("/api/v1/instances/" + id).Json()["state"], "COLLECTING");

  // Nothing was applied and no key kept: the valid event with that id applies.
  const HttpResult valid = send("utf8-1", "/platform");
  ASSERT_EQ(valid.status, 202) << valid.body;
  EXPECT_EQ(valid.Json()["outcome"], "applied");
  EXPECT_EQ(http_.Get("/api/v1/instances/" + id).Json()["state"], "GRADING");

  // A path segment or query parameter that is not UTF-8 is refused as well.
  ExpectRefused(http_.Get("/api/v1/instances/%C0%AF"), 400, "path", "path segment");
  ExpectRefused(http_.Get("/api/v1/instances?owner_id=%ED%A0%80"), 400, "owner_id", "query parameter");
}

}  // namespace
}  // namespace ccm
