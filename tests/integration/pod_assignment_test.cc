// Pod assignment on the Grading Engine when an instance with assessment ids becomes RUNNING,
// against a fake Grading Engine on loopback that validates pods with the real schema.
#include <gtest/gtest.h>

#include <mutex>

#include "clients/assessment_platform_client.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/json_schema.h"
#include "support/lab_seed.h"
#include "support/stack.h"

namespace ccm {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// POST /api/v1/sessions/{s}/parts/{p}/pod: 400 for a pod that does not validate against
// components.schemas.Pod (or when told to refuse), 200 otherwise.
class FakeGradingEngine {
 public:
  FakeGradingEngine()
      : spec_(json::parse(testing::ReadTestData("grading-engine.openapi.json"))), server_([this](http::Request& r) {
      http::Response resp;
      std::lock_guard lock(mu_);
      const json pod = json::parse(r.body, nullptr, false);
      const auto errors = testing::ValidateSchema(spec_, spec_["components"]["schemas"]["Pod"], pod);
      if (refuse_ || !errors.empty()) {
        resp.status = 400;
        resp.body = errors.empty() ? "refused" : errors.front();
        return resp;
      }
      assigned_.push_back({r.path, pod});
      return resp;
    }) {}
  std::string Url() const { return server_.Url(); }
  void Refuse(bool refuse) {
    std::lock_guard lock(mu_);
    refuse_ = refuse;
  }
  std::vector<std::pair<std::string, json>> Assigned() {
    std::lock_guard lock(mu_);
    return assigned_;
  }

 private:
  json spec_;
  std::mutex mu_;
  bool refuse_ = false;
  std::vector<std::pair<std::string, json>> assigned_;
  testing::FakeServer server_;
};

class PodAssignment : public ::testing::Test {
 protected:
  PodAssignment()
      : engine_client_(clients::RemoteOptions{engine_.Url(), 500ms, 1000ms, 2, 5ms, 100, 10ms}, clock_),
        http_(stack_.BaseUrl()) {
    stack_.instances->EnablePodAssignment(*stack_.pods, engine_client_);
    seed_ = testing::SeedLab(http_, testing::ReadTestData("sample_lab_template.yaml"));
  }

  json Run(bool with_assessment) {
    json body = {{"definition_id", seed_.definition_id}, {"owner_id", "c"},
                 {"timeslot_start", "2026-12-01T09:00:00Z"}, {"timeslot_end", "2026-12-01T10:00:00Z"}};
    if (with_assessment) body["assessment"] = {{"session_id", "session-1"}, {"part_id", "part 1"}};
    const std::string id = http_.PostJson("/api/v1/instances", body).Json()["id"];
    http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", seed_.worker_id}});
    http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", "INSTANTIATING"}});
    return http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", "RUNNING"}}).Json();
  }

  json RunningEvent(const std::string& id) {
    return http_.Get("/api/v1/events?type=ccm.lablet.instance.running&subject=" + id).Json()["items"][0]["event"]["data"];
  }

  FakeGradingEngine engine_;
  app::SystemClock clock_;
  clients::GradingEngineClient engine_client_;
  testing::Stack stack_;
  testing::HttpClient http_;
  testing::LabSeed seed_;
};

TEST_F(PodAssignment, AssignedWhenRunningWithAssessmentIds) {
  json i = Run(true);
  ASSERT_EQ(i["state"], "RUNNING") << i;
  EXPECT_TRUE(i["pod_assigned"].get<bool>());
  EXPECT_EQ(i["pod_error"], "");
  ASSERT_EQ(engine_.Assigned().size(), 1u);
  EXPECT_EQ(engine_.Assigned()[0].first, "/api/v1/sessions/session-1/parts/part 1/pod");
  EXPECT_EQ(engine_.Assigned()[0].second["id"], i["id"]);
  EXPECT_EQ(engine_.Assigned()[0].second["devices"].size(), 2u);
  EXPECT_TRUE(RunningEvent(i["id"])["pod_assigned"].get<bool>());
}

TEST_F(PodAssignment, ARefusedPodIsReportedAndTheInstanceRunsOn) {
  engine_.Refuse(true);
  json i = Run(true);
  ASSERT_EQ(i["state"], "RUNNING");
  EXPECT_FALSE(i["pod_assigned"].get<bool>());
  EXPECT_NE(i["pod_error"].get<std::string>().find("grading engine POST /api/v1/sessions/session-1/parts/part%201/pod: HTTP 400"),
            std::string::npos)
      << i["pod_error"];
  EXPECT_FALSE(RunningEvent(i["id"])["pod_assigned"].get<bool>());
}

TEST_F(PodAssignment, NoAssessmentNoCall) {
  json i = Run(false);
  ASSERT_EQ(i["state"], "RUNNING");
  EXPECT_FALSE(i["pod_assigned"].get<bool>());
  EXPECT_TRUE(engine_.Assigned().empty());
}

}  // namespace
}  // namespace ccm
