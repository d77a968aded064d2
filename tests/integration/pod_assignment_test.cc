// Pod assignment on the Grading Engine after an instance with assessment ids becomes RUNNING,
// against a fake Grading Engine on loopback that validates pods with the real schema: sent
// after the commit, retried while the engine is unavailable, final on a refusal, asked again
// by an operator.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "clients/assessment_platform_client.h"
#include "os/clock.h"
#include "support/db_snapshot.h"
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
      if (unavailable_ > 0) {
        --unavailable_;
        resp.status = 503;
        return resp;
      }
      if (refuse_ || !errors.empty()) {
        resp.status = 400;
        resp.body = errors.empty() ? (echo_ ? "refused: " + r.body : "refused") : errors.front();
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
  // A refusal quotes the pod it was sent.
  void Echo(bool echo) {
    std::lock_guard lock(mu_);
    echo_ = echo;
  }
  void UnavailableFor(int requests) {
    std::lock_guard lock(mu_);
    unavailable_ = requests;
  }
  std::vector<std::pair<std::string, json>> Assigned() {
    std::lock_guard lock(mu_);
    return assigned_;
  }

 private:
  json spec_;
  std::mutex mu_;
  bool refuse_ = false;
  bool echo_ = false;
  int unavailable_ = 0;
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

  json Run(bool with_assessment, const std::string& definition_id = "") {
    json body = {{"definition_id", definition_id.empty() ? seed_.definition_id : definition_id}, {"owner_id", "c"},
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
  json Events(const std::string& id, const std::string& type) {
    return http_.Get("/api/v1/events?type=" + type + "&subject=" + id).Json()["items"];
  }
  json Get(const std::string& id) { return http_.Get("/api/v1/instances/" + id).Json(); }
  // What the pod reconciler does for one instance.
  Result<bool> AssignDue(const std::string& id, std::chrono::milliseconds backoff = 20ms) {
    return stack_.instances->AssignDuePod(domain::InstanceId{id}, [backoff](int) { return backoff; });
  }

  FakeGradingEngine engine_;
  os::SystemClock clock_;
  clients::GradingEngineClient engine_client_;
  testing::Stack stack_;
  testing::HttpClient http_;
  testing::LabSeed seed_;
};

TEST_F(PodAssignment, AssignedAfterTheMoveToRunning) {
  json i = Run(true);
  ASSERT_EQ(i["state"], "RUNNING") << i;
  // The move commits first; the pod is due, not sent yet.
  EXPECT_FALSE(i["pod_assigned"].get<bool>());
  EXPECT_TRUE(i["pod_due_at"].is_string());
  EXPECT_TRUE(engine_.Assigned().empty());
  EXPECT_FALSE(RunningEvent(i["id"])["pod_assigned"].get<bool>());

  auto done = AssignDue(i["id"]);
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_TRUE(*done);
  i = Get(i["id"]);
  EXPECT_TRUE(i["pod_assigned"].get<bool>());
  EXPECT_EQ(i["pod_error"], "");
  EXPECT_TRUE(i["pod_due_at"].is_null());
  ASSERT_EQ(engine_.Assigned().size(), 1u);
  EXPECT_EQ(engine_.Assigned()[0].first, "/api/v1/sessions/session-1/parts/part 1/pod");
  EXPECT_EQ(engine_.Assigned()[0].second["id"], i["id"]);
  EXPECT_EQ(engine_.Assigned()[0].second["devices"].size(), 2u);
  const json assigned = Events(i["id"], "ccm.lablet.instance.pod.assigned");
  ASSERT_EQ(assigned.size(), 1u);
  EXPECT_EQ(assigned[0]["event"]["data"]["session_id"], "session-1");
  EXPECT_EQ(assigned[0]["event"]["data"]["failed_attempts"], 0);
  // Nothing is due any more.
  EXPECT_FALSE(AssignDue(i["id"]).value());
  EXPECT_EQ(engine_.Assigned().size(), 1u);
}

TEST_F(PodAssignment, AnUnavailableEngineIsTriedAgainAfterABackoff) {
  engine_.UnavailableFor(1000);
  json i = Run(true);
  // A backoff long enough that "not yet" below holds on a slow (sanitizer) build.
  auto first = AssignDue(i["id"], 1000ms);
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error().code, ErrorCode::kUnavailable);
  i = Get(i["id"]);
  EXPECT_FALSE(i["pod_assigned"].get<bool>());
  EXPECT_EQ(i["pod_failures"], 1);
  EXPECT_NE(i["pod_error"].get<std::string>().find("HTTP 503"), std::string::npos) << i;
  ASSERT_TRUE(i["pod_due_at"].is_string());  // due again after the backoff
  EXPECT_FALSE(AssignDue(i["id"]).value());  // not yet
  engine_.UnavailableFor(0);
  std::this_thread::sleep_for(1100ms);
  EXPECT_TRUE(AssignDue(i["id"]).value());
  i = Get(i["id"]);
  EXPECT_TRUE(i["pod_assigned"].get<bool>());
  EXPECT_EQ(Events(i["id"], "ccm.lablet.instance.pod.assigned")[0]["event"]["data"]["failed_attempts"], 1);
}

TEST_F(PodAssignment, ARefusalIsFinalUntilAnOperatorAsksAgain) {
  engine_.Refuse(true);
  json i = Run(true);
  auto refused = AssignDue(i["id"]);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  i = Get(i["id"]);
  ASSERT_EQ(i["state"], "RUNNING");  // the lab runs on
  EXPECT_FALSE(i["pod_assigned"].get<bool>());
  EXPECT_TRUE(i["pod_due_at"].is_null());  // no more attempts
  EXPECT_NE(i["pod_error"].get<std::string>().find("grading engine POST /api/v1/sessions/session-1/parts/part%201/pod: HTTP 400"),
            std::string::npos)
      << i["pod_error"];
  std::this_thread::sleep_for(40ms);
  EXPECT_FALSE(AssignDue(i["id"]).value());

  // The engine is fixed; an operator asks again.
  engine_.Refuse(false);
  auto asked = http_.Post("/api/v1/instances/" + i["id"].get<std::string>() + "/pod/assign", "", "");
  ASSERT_EQ(asked.status, 202) << asked.body;
  EXPECT_TRUE(asked.Json()["pod_due_at"].is_string());
  EXPECT_TRUE(AssignDue(i["id"]).value());
  EXPECT_TRUE(Get(i["id"])["pod_assigned"].get<bool>());
}

TEST_F(PodAssignment, TheRouteRefusesWhatCannotBeAssignedAndWritesNothing) {
  const std::string running = Run(true)["id"];
  const std::string no_ids = Run(false)["id"];
  const std::string pending =
      http_.PostJson("/api/v1/instances", {{"definition_id", seed_.definition_id}, {"owner_id", "c"},
                                          {"timeslot_start", "2026-12-01T09:00:00Z"},
                                          {"timeslot_end", "2026-12-01T10:00:00Z"},
                                          {"assessment", {{"session_id", "s"}, {"part_id", "p"}}}})
          .Json()["id"];
  struct Case {
    std::string id, body, type;
    int status;
    std::string field;
  } cases[] = {
      {"nope", "", "", 404, ""},
      {pending, "", "", 409, "state"},
      {no_ids, "", "", 409, "assessment"},
      {running, R"({"force":true})", "application/json", 400, "force"},
      {running, "{", "application/json", 400, "body"},
      {running, "{}", "text/plain", 415, "content-type"},
  };
  for (const auto& c : cases) {
    const std::string before = testing::DbSnapshot(stack_.DbPath());
    auto r = http_.Post("/api/v1/instances/" + c.id + "/pod/assign", c.body, c.type);
    EXPECT_EQ(r.status, c.status) << c.id << " " << c.body << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json");
    if (!c.field.empty()) {
      EXPECT_EQ(r.Json().value("field", ""), c.field) << r.body;
    }
    EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before) << c.id;
  }
}

TEST_F(PodAssignment, TheEngineGetsDeviceAccessAndItsAnswerIsKeptWithoutIt) {
  json def = testing::SampleDefinitionBody(testing::ReadTestData("sample_lab_template.yaml"));
  def["name"] = "with-access";
  def["resource_requirements"] = {{"cpu_cores", 1}, {"memory_gb", 1}};  // fits the seeded worker
  def["device_access"] = json::parse(R"({
    "default": {"authentication": {"scheme": "password", "properties": {"username": "cisco", "password": "s3cret-1"}},
                "configuration": {"line": "console"}},
    "nodes": {"ubuntu-desktop": {"authentication": {"scheme": "password", "properties": {"password": "s3cret-2"}}}}})");
  auto created = http_.PostJson("/api/v1/definitions", def);
  ASSERT_EQ(created.status, 201) << created.body;
  json i = Run(true, created.Json()["id"]);
  ASSERT_EQ(i["state"], "RUNNING") << i;
  auto done = AssignDue(i["id"]);
  ASSERT_TRUE(done && *done) << (done ? "" : done.error().message);
  ASSERT_EQ(engine_.Assigned().size(), 1u);
  const json pod = engine_.Assigned()[0].second;  // it validated against the Pod schema
  for (const auto& device : pod["devices"])
    for (const auto& iface : device["interfaces"])
      EXPECT_EQ(iface["authentication"]["properties"]["password"],
                device["label"] == "ubuntu-desktop" ? "s3cret-2" : "s3cret-1");
  EXPECT_EQ(pod["devices"][0]["interfaces"][0]["configuration"], (json{{"line", "console"}}));
  // No event carries it.
  EXPECT_EQ(http_.Get("/api/v1/events?limit=500").body.find("s3cret"), std::string::npos);

  // A refusal that quotes the pod is kept (and logged) without the secrets.
  engine_.Refuse(true);
  engine_.Echo(true);
  json j = Run(true, created.Json()["id"]);
  ASSERT_EQ(j["state"], "RUNNING") << j;
  EXPECT_FALSE(AssignDue(j["id"]));
  const std::string error = Get(j["id"])["pod_error"];
  EXPECT_NE(error.find("refused: {"), std::string::npos) << error;
  EXPECT_NE(error.find("\"password\":\"***\""), std::string::npos) << error;
  EXPECT_EQ(error.find("s3cret"), std::string::npos) << error;
}

TEST_F(PodAssignment, NoAssessmentNoCall) {
  json i = Run(false);
  ASSERT_EQ(i["state"], "RUNNING");
  EXPECT_FALSE(i["pod_assigned"].get<bool>());
  EXPECT_TRUE(i["pod_due_at"].is_null());
  EXPECT_FALSE(AssignDue(i["id"]).value());
  EXPECT_TRUE(engine_.Assigned().empty());
}

}  // namespace
}  // namespace ccm
