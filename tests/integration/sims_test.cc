// ccm against its simulators over real HTTP: oidc-sim for tokens, assessment-sim as the
// Assessment Platform and the Grading Engine (which refuses pods that do not validate and
// sends every result twice).
#include <gtest/gtest.h>

#include <thread>

#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"

namespace ccm {
namespace {

using nlohmann::json;

TEST(Simulators, CollectionAndGradingEndToEnd) {
  testing::TempDir dir;
  const std::string ccm_address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::ChildProcess oidc({OIDC_SIM_BINARY, "--ready-file", dir.File("oidc.ready"), "--lifetime", "2"}, {},
                             dir.File("oidc.ready"));
  testing::ChildProcess platform({ASSESSMENT_SIM_BINARY, "--ready-file", dir.File("sim.ready"), "--events-url",
                                  "http://" + ccm_address + "/api/v1/events", "--grading-schema",
                                  std::string(CCM_TEST_DATA) + "/grading-engine.openapi.json", "--delay-ms", "100",
                                  "--fail-collections", "2", "--send-twice", "--require-bearer"},
                                 {}, dir.File("sim.ready"));
  testing::CcmProcess ccm(dir.path(), {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                       {"CCM_LISTEN", ccm_address},
                                       {"ASSESSMENT_PLATFORM_URL", platform.BaseUrl()},
                                       {"GRADING_ENGINE_URL", platform.BaseUrl()},
                                       {"OIDC_TOKEN_URL", oidc.BaseUrl() + "/token"},
                                       {"OIDC_CLIENT_ID", "ccm"},
                                       {"OIDC_CLIENT_SECRET", "ccm-secret"}});
  testing::HttpClient http(ccm.BaseUrl());
  const auto seed = testing::SeedLab(http, testing::ReadTestData("sample_lab_template.yaml"));
  json body = {{"definition_id", seed.definition_id}, {"owner_id", "candidate-1"},
               {"assessment", {{"session_id", "session-9"}, {"part_id", "part-1"}}},
               {"timeslot_start", "2026-12-01T09:00:00Z"}, {"timeslot_end", "2026-12-01T10:00:00Z"}};
  const std::string id = http.PostJson("/api/v1/instances", body).Json()["id"];
  http.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", seed.worker_id}});
  http.PostJson("/api/internal/instances/" + id + "/transition", {{"to", "INSTANTIATING"}});
  json running = http.PostJson("/api/internal/instances/" + id + "/transition", {{"to", "RUNNING"}}).Json();
  ASSERT_EQ(running["state"], "RUNNING") << running;
  EXPECT_TRUE(running["pod_assigned"].get<bool>()) << running["pod_error"];

  // The platform answers 503 twice; the client's third attempt gets through.
  testing::HttpResult collect = http.PostJson("/api/v1/instances/" + id + "/collect", {{"triggered_by", "proctor"}});
  ASSERT_EQ(collect.status, 202) << collect.body;
  json i;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    i = http.Get("/api/v1/instances/" + id).Json();
  } while (i["state"] != "STOPPING" && std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(i["state"], "STOPPING") << i;
  EXPECT_EQ(i["grading_score"]["total"], 8.0);
  EXPECT_EQ(i["collection"]["collection_id"], "col-1");

  // Every result arrives twice and is applied once (the second copy of the last one may
  // still be on its way when the instance is already STOPPING).
  std::string metrics;
  do {
    metrics = http.Get("/metrics").body;
    if (metrics.find("ccm_events_received_total{outcome=\"duplicate\"} 2") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_NE(metrics.find("ccm_events_received_total{outcome=\"applied\"} 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("ccm_events_received_total{outcome=\"duplicate\"} 2"), std::string::npos) << metrics;
  testing::HttpClient sim(platform.BaseUrl());
  json state = sim.Get("/sim/state").Json();
  EXPECT_EQ(state["collections"].size(), 1u);
  ASSERT_EQ(state["pods"].size(), 1u);
  EXPECT_EQ(state["pods"][0]["path"], "/api/v1/sessions/session-9/parts/part-1/pod");
  EXPECT_EQ(state["refused"], 0);
}

}  // namespace
}  // namespace ccm
