// Collection over real HTTP: ccm's API, its Assessment Platform client, and a fake platform
// on loopback that can be down, failing, then up.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "clients/assessment_platform_client.h"
#include "os/clock.h"
#include "support/db_snapshot.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/stack.h"

namespace ccm {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::HttpResult;

// The Assessment Platform's collection endpoint: answers `failures` 503s, then 202, and
// records the bodies it accepted.
class FakePlatform {
 public:
  FakePlatform()
      : server_([this](http::Request& r) {
      http::Response resp;
      std::lock_guard lock(mu_);
      if (r.path != "/api/v1/collections") {
        resp.status = 404;
      } else if (refuse_) {
        resp.status = 422;
        resp.body = R"({"detail":"no such candidate"})";
      } else if (failures_ > 0) {
        --failures_;
        resp.status = 503;
      } else {
        accepted_.push_back(json::parse(r.body));
        resp.status = 202;
        resp.body = R"({"collection_id":"col-1"})";
      }
      return resp;
    }) {}
  std::string Url() const { return server_.Url(); }
  void FailNext(int n) {
    std::lock_guard lock(mu_);
    failures_ = n;
  }
  void Refuse(bool refuse) {
    std::lock_guard lock(mu_);
    refuse_ = refuse;
  }
  std::vector<json> Accepted() {
    std::lock_guard lock(mu_);
    return accepted_;
  }

 private:
  std::mutex mu_;
  int failures_ = 0;
  bool refuse_ = false;
  std::vector<json> accepted_;
  testing::FakeServer server_;
};

class Collection : public ::testing::Test {
 protected:
  Collection()
      : clock_(),
        stack_(std::make_unique<clients::AssessmentPlatformClient>(
                   clients::RemoteOptions{platform_.Url(), 500ms, 1000ms, 2, 5ms, 100, 10ms}, clock_),
               app::CollectionService::Options{20ms, 200ms, 1000ms}),
        http_(stack_.BaseUrl()) {
    const auto seed = testing::SeedLab(http_, "nodes: [{id: n0, label: r1}]");
    def_ = seed.definition_id;
    worker_ = seed.worker_id;
  }

  std::string Running() {
    json body = {{"definition_id", def_}, {"owner_id", "c"}, {"timeslot_start", "2026-12-01T09:00:00Z"},
                 {"timeslot_end", "2026-12-01T10:00:00Z"}};
    const std::string id = http_.PostJson("/api/v1/instances", body).Json()["id"];
    http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", worker_}});
    for (const char* to : {"INSTANTIATING", "RUNNING"})
      http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", to}});
    return id;
  }
  json Get(const std::string& id) { return http_.Get("/api/v1/instances/" + id).Json(); }

  FakePlatform platform_;
  os::SystemClock clock_;
  testing::Stack stack_;
  testing::HttpClient http_;
  std::string def_, worker_;
};

TEST_F(Collection, HappyPath) {
  const std::string id = Running();
  HttpResult r = http_.PostJson("/api/v1/instances/" + id + "/collect", {{"triggered_by", "proctor-7"}, {"reason", "manual"}});
  ASSERT_EQ(r.status, 202) << r.body;
  // Answered once the move is durable: the platform is asked by the reconciler.
  EXPECT_EQ(r.Json()["state"], "COLLECTING");
  EXPECT_TRUE(r.Json()["collection_due_at"].is_string());
  EXPECT_TRUE(platform_.Accepted().empty());
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 1);
  EXPECT_TRUE(Get(id)["collection_requested_at"].is_string());
  EXPECT_TRUE(Get(id)["collection_due_at"].is_null());
  ASSERT_EQ(platform_.Accepted().size(), 1u);
  EXPECT_EQ(platform_.Accepted()[0]["instance_id"], id);
  EXPECT_EQ(platform_.Accepted()[0]["worker_hostname"], "w1.example");
  json started = http_.Get("/api/v1/events?type=ccm.lablet.instance.collecting.started").Json()["items"][0]["event"];
  EXPECT_EQ(started["data"]["triggered_by"], "proctor-7");
  EXPECT_EQ(started["data"]["collection_reason"], "manual");
}

TEST_F(Collection, PlatformDownThenUp) {
  const std::string id = Running();
  platform_.FailNext(1000);
  HttpResult r = http_.PostJson("/api/v1/instances/" + id + "/collect", json::object());
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 1);
  json i = Get(id);
  EXPECT_EQ(i["state"], "COLLECTING");
  EXPECT_EQ(i["collection_request_failures"], 1);
  EXPECT_NE(i["collection_request_error"].get<std::string>().find("HTTP 503"), std::string::npos)
      << i["collection_request_error"];
  EXPECT_NE(i["collection_request_error"].get<std::string>().find("assessment platform POST /api/v1/collections"),
            std::string::npos);
  std::this_thread::sleep_for(30ms);  // the first backoff: 20 ms at most (jittered down to 10)
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 1);
  EXPECT_EQ(Get(id)["collection_request_failures"], 2);
  platform_.FailNext(0);
  std::this_thread::sleep_for(60ms);  // the second backoff: 40 ms at most
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 1);
  i = Get(id);
  EXPECT_EQ(i["collection_request_failures"], 0);
  EXPECT_EQ(i["collection_request_error"], "");
  EXPECT_EQ(platform_.Accepted().size(), 1u);
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 0);  // nothing due any more
}

TEST_F(Collection, ARetryableFailureIsRequestedAgainAfterABackoff) {
  const std::string id = Running();
  ASSERT_EQ(http_.PostJson("/api/v1/instances/" + id + "/collect", json::object()).status, 202);
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 1);
  json failed = {{"specversion", "1.0"}, {"id", "f-1"}, {"source", "ap"}, {"type", "assessment.collection.failed"},
                 {"data", {{"instance_id", id}, {"error_code", "BUSY"}, {"retry_possible", true}}}};
  ASSERT_EQ(http_.Post("/api/v1/events", failed.dump(), "application/cloudevents+json").status, 202);
  EXPECT_TRUE(Get(id)["collection_due_at"].is_string());
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 0);  // backing off (1 s after the first failure)
  EXPECT_EQ(platform_.Accepted().size(), 1u);
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 1);
  EXPECT_EQ(platform_.Accepted().size(), 2u);
  EXPECT_EQ(Get(id)["state"], "COLLECTING");
  EXPECT_TRUE(Get(id)["collection_due_at"].is_null());
}

TEST_F(Collection, ARefusalForGoodEndsTheRequests) {
  const std::string id = Running();
  platform_.Refuse(true);
  ASSERT_EQ(http_.PostJson("/api/v1/instances/" + id + "/collect", json::object()).status, 202);
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 1);
  json i = Get(id);
  EXPECT_EQ(i["state"], "COLLECTING");  // until its time-out
  EXPECT_TRUE(i["collection_refused"].get<bool>());
  EXPECT_TRUE(i["collection_due_at"].is_null());
  EXPECT_NE(i["collection_request_error"].get<std::string>().find("HTTP 422"), std::string::npos) << i;
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 0);  // never asked again
}

TEST_F(Collection, AnOperatorMoveToCollectingAsksThePlatformToo) {
  const std::string id = Running();
  auto moved = http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", "COLLECTING"}});
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_TRUE(Get(id)["collection_due_at"].is_string());
  EXPECT_EQ(stack_.collection->ReconcileOnce(), 1);
  ASSERT_EQ(platform_.Accepted().size(), 1u);
  EXPECT_EQ(platform_.Accepted()[0]["instance_id"], id);
}

// A platform that answers each request only when told to, counting the requests it holds.
class HangingPlatform {
 public:
  HangingPlatform()
      : server_([this](http::Request&) {
      std::unique_lock lock(mu_);
      ++waiting_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
      --waiting_;
      http::Response resp;
      resp.status = 202;
      return resp;
    }) {}
  ~HangingPlatform() { Release(); }
  std::string Url() const { return server_.Url(); }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Waits until `n` requests are held at once.
  bool WaitForHeld(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return waiting_ >= n; });
  }
  int Held() {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool released_ = false;
  testing::FakeServer server_;
};

TEST(CollectionAgainstAHangingPlatform, TheApiAnswersAtOnceAndRequestsRunConcurrently) {
  HangingPlatform platform;
  os::SystemClock clock;
  testing::Stack stack(testing::StoreKind::kMemory,
                       std::make_unique<clients::AssessmentPlatformClient>(
                           clients::RemoteOptions{platform.Url(), 500ms, 30000ms, 1, 5ms, 100, 10ms}, clock),
                       app::CollectionService::Options{20ms, 200ms, 1000ms, 4});
  testing::HttpClient http(stack.BaseUrl());
  const auto seed = testing::SeedLab(http, "nodes: [{id: n0, label: r1}]");
  std::vector<std::string> ids;
  for (int n = 0; n < 3; ++n) {
    json body = {{"definition_id", seed.definition_id}, {"owner_id", "c"}, {"timeslot_start", "2026-12-01T09:00:00Z"},
                 {"timeslot_end", "2026-12-01T10:00:00Z"}};
    ids.push_back(http.PostJson("/api/v1/instances", body).Json()["id"]);
    http.PostJson("/api/internal/instances/" + ids.back() + "/schedule", {{"worker_id", seed.worker_id}});
    for (const char* to : {"INSTANTIATING", "RUNNING"})
      http.PostJson("/api/internal/instances/" + ids.back() + "/transition", {{"to", to}});
  }
  // Every /collect is answered while the platform holds no request yet: none waits for it.
  for (const auto& id : ids) ASSERT_EQ(http.PostJson("/api/v1/instances/" + id + "/collect", json::object()).status, 202);
  EXPECT_EQ(platform.Held(), 0);
  // The reconciler's requests are all out at once, not one behind the other.
  std::thread reconcile([&] { stack.collection->ReconcileOnce(); });
  EXPECT_TRUE(platform.WaitForHeld(3));
  // The API still answers while the platform holds them.
  EXPECT_EQ(http.Get("/api/v1/instances/" + ids[0]).status, 200);
  platform.Release();
  reconcile.join();
  for (const auto& id : ids) EXPECT_TRUE(http.Get("/api/v1/instances/" + id).Json()["collection_requested_at"].is_string());
}

TEST_F(Collection, BadInput) {
  const std::string id = Running();
  const std::string pending =
      http_.PostJson("/api/v1/instances", {{"definition_id", def_}, {"owner_id", "c"},
                                          {"timeslot_start", "2026-12-01T09:00:00Z"},
                                          {"timeslot_end", "2026-12-01T10:00:00Z"}})
          .Json()["id"];
  struct Case {
    std::string path, body, type;
    int status;
    std::string field;
  } cases[] = {
      {"/api/v1/instances/nope/collect", "{}", "application/json", 404, ""},
      {"/api/v1/instances/" + pending + "/collect", "{}", "application/json", 409, "state"},
      {"/api/v1/instances/" + id + "/collect", R"({"reason":"bored"})", "application/json", 400, "reason"},
      {"/api/v1/instances/" + id + "/collect", R"({"why":"x"})", "application/json", 400, "why"},
      {"/api/v1/instances/" + id + "/collect", R"({"triggered_by":""})", "application/json", 400, "triggered_by"},
      {"/api/v1/instances/" + id + "/collect", "{", "application/json", 400, "body"},
      {"/api/v1/instances/" + id + "/collect", "{}", "text/plain", 415, "content-type"},
  };
  for (const auto& c : cases) {
    const std::string before = testing::DbSnapshot(stack_.DbPath());
    HttpResult r = http_.Post(c.path, c.body, c.type);
    EXPECT_EQ(r.status, c.status) << c.path << " " << c.body << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json");
    if (!c.field.empty()) {
      EXPECT_EQ(r.Json().value("field", ""), c.field) << r.body;
    }
    EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before) << c.body;
  }
  EXPECT_TRUE(platform_.Accepted().empty());
}

}  // namespace
}  // namespace ccm
