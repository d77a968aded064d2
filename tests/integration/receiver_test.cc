// POST /api/v1/events over real HTTP against a real SQLite file: the assessment handlers,
// dedup, order tolerance, refusals.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "support/db_snapshot.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/stack.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::HttpClient;
using testing::HttpResult;

const std::string kStructured = "application/cloudevents+json";

json Event(const std::string& id, const std::string& type, json data, const std::string& source = "assessment") {
  return {{"specversion", "1.0"}, {"id", id},         {"source", source},  {"type", type},
          {"time", "2026-11-27T02:00:00Z"}, {"datacontenttype", "application/json"}, {"data", std::move(data)}};
}

json Score(double total = 8, double max = 10) {
  return {{"total", total}, {"max", max}, {"breakdown", {{{"criterion", "ping"}, {"points", total}, {"max", max}}}}};
}

class Receiver : public ::testing::Test {
 protected:
  Receiver() : http_(stack_.BaseUrl()) {
    const auto seed = testing::SeedLab(http_, testing::ReadTestData("sample_lab_template.yaml"));
    def_ = seed.definition_id;
    worker_ = seed.worker_id;
  }

  // A new instance moved to `state` through the API.
  std::string InstanceIn(const std::string& state) {
    json body = {{"definition_id", def_}, {"owner_id", "c"}, {"timeslot_start", "2026-12-01T09:00:00Z"},
                 {"timeslot_end", "2026-12-01T10:00:00Z"}};
    const std::string id = http_.PostJson("/api/v1/instances", body).Json()["id"];
    EXPECT_EQ(http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", worker_}}).status, 200);
    for (const char* to : {"INSTANTIATING", "RUNNING", "COLLECTING", "GRADING"}) {
      if (Get(id)["state"] == state) break;
      EXPECT_EQ(http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", to}}).status, 200);
    }
    EXPECT_EQ(Get(id)["state"], state);
    return id;
  }

  json Get(const std::string& id) { return http_.Get("/api/v1/instances/" + id).Json(); }
  HttpResult Send(const json& event) { return http_.Post("/api/v1/events", event.dump(), kStructured); }
  int Count(const std::string& type) { return testing::OutboxCount(stack_.DbPath(), type); }

  testing::Stack stack_;
  HttpClient http_;
  std::string def_, worker_;
};

TEST_F(Receiver, CollectionThenGradingMovesToStoppingWithTheScore) {
  const std::string id = InstanceIn("COLLECTING");
  HttpResult r = Send(Event("c-1", "assessment.collection.completed",
                            {{"instance_id", id}, {"collection_id", "col-1"}, {"artifacts_uri", "s3://b/col-1"}}));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "applied");
  json i = Get(id);
  EXPECT_EQ(i["state"], "GRADING");
  EXPECT_EQ(i["collection"]["artifacts_uri"], "s3://b/col-1");
  EXPECT_EQ(Count("ccm.lablet.instance.grading.started"), 1);
  // A redelivery is known by (source, id) alone, whatever its data.
  HttpResult again = Send(Event("c-1", "assessment.collection.completed", json::object()));
  ASSERT_EQ(again.status, 202) << again.body;
  EXPECT_EQ(again.Json()["outcome"], "duplicate");

  r = Send(Event("g-1", "assessment.grading.completed", {{"instance_id", id}, {"score", Score()}, {"passed", true}}));
  ASSERT_EQ(r.status, 202) << r.body;
  i = Get(id);
  EXPECT_EQ(i["state"], "STOPPING");
  EXPECT_EQ(i["grading_score"]["total"], 8.0);
  EXPECT_EQ(i["grading_score"]["passed"], true);
  EXPECT_EQ(Count("ccm.lablet.instance.grading.completed"), 1);
  EXPECT_EQ(Count("ccm.lablet.instance.stopping"), 1);
  // grading.completed comes before stopping in the outbox.
  json events = http_.Get("/api/v1/events?subject=" + id).Json()["items"];
  EXPECT_EQ(events[events.size() - 2]["type"], "ccm.lablet.instance.grading.completed");
  EXPECT_EQ(events[events.size() - 1]["type"], "ccm.lablet.instance.stopping");
}

TEST_F(Receiver, V1NamesAndTheOlderScoreShapeAreNormalized) {
  const std::string id = InstanceIn("GRADING");
  json old_score = {{"total_points_earned", 7},
                    {"total_points_possible", 9},
                    {"passed", false},
                    {"check_results",
                     {{{"check_name", "a"}, {"points_earned", 4}, {"points_possible", 4}},
                      {{"check_name", "b"}, {"points_earned", 3}, {"points_possible", 5}}}}};
  HttpResult r = Send(Event("g-v1", "assessment.grading.completed.v1", {{"aggregate_id", id}, {"score", old_score}}));
  ASSERT_EQ(r.status, 202) << r.body;
  json score = Get(id)["grading_score"];
  EXPECT_EQ(score, json({{"total", 7.0}, {"max", 9.0}, {"passed", false},
                         {"breakdown", {{{"criterion", "a"}, {"points", 4.0}, {"max", 4.0}},
                                        {{"criterion", "b"}, {"points", 3.0}, {"max", 5.0}}}}}));
}

TEST_F(Receiver, GradingBeforeCollectionAppliesBothAndTheLateCollectionIsStale) {
  const std::string id = InstanceIn("COLLECTING");
  HttpResult r = Send(Event("g-early", "assessment.grading.completed", {{"instance_id", id}, {"score", Score(5, 5)}}));
  ASSERT_EQ(r.status, 202) << r.body;
  json i = Get(id);
  EXPECT_EQ(i["state"], "STOPPING");
  std::vector<std::string> path;
  for (const auto& h : i["state_history"]) path.push_back(h["to"]);
  EXPECT_EQ(path[path.size() - 2], "GRADING");
  EXPECT_EQ(Count("ccm.lablet.instance.grading.started"), 1);
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  r = Send(Event("c-late", "assessment.collection.completed",
                 {{"instance_id", id}, {"collection_id", "col"}, {"artifacts_uri", "s3://x"}}));
  ASSERT_EQ(r.status, 202);
  EXPECT_EQ(r.Json()["outcome"], "stale");
  EXPECT_EQ(Get(id)["state"], "STOPPING");
  EXPECT_NE(testing::DbSnapshot(stack_.DbPath()), before);  // only the dedup key was written
  EXPECT_EQ(Send(Event("c-late", "assessment.collection.completed",
                       {{"instance_id", id}, {"collection_id", "col"}, {"artifacts_uri", "s3://x"}}))
                .Json()["outcome"],
            "duplicate");
}

TEST_F(Receiver, FailuresAreRecorded) {
  const std::string retry = InstanceIn("COLLECTING");
  ASSERT_EQ(Send(Event("f-1", "assessment.collection.failed",
                       {{"instance_id", retry}, {"error_code", "WORKER_UNREACHABLE"}, {"error_message", "timeout"},
                        {"retry_possible", true}}))
                .status,
            202);
  json i = Get(retry);
  EXPECT_EQ(i["state"], "COLLECTING");
  EXPECT_EQ(i["last_failure"]["error_code"], "WORKER_UNREACHABLE");
  EXPECT_EQ(i["last_failure"]["retry_possible"], true);
  EXPECT_EQ(i["collection_failures"], 1);
  // Retryable failures are bounded: the fourth one stops the instance.
  for (const char* id : {"f-1b", "f-1c", "f-1d"})
    ASSERT_EQ(Send(Event(id, "assessment.collection.failed",
                         {{"instance_id", retry}, {"error_code", "WORKER_UNREACHABLE"}, {"retry_possible", true}}))
                  .status,
              202);
  EXPECT_EQ(Get(retry)["state"], "STOPPING");
  EXPECT_EQ(Get(retry)["collection_failures"], 4);

  const std::string final_failure = InstanceIn("COLLECTING");
  ASSERT_EQ(Send(Event("f-2", "assessment.collection.failed",
                       {{"instance_id", final_failure}, {"error_code", "NO_ARTIFACTS"}, {"retry_possible", false}}))
                .status,
            202);
  EXPECT_EQ(Get(final_failure)["state"], "STOPPING");
  EXPECT_TRUE(Get(final_failure)["grading_score"].is_null());

  const std::string grading = InstanceIn("GRADING");
  ASSERT_EQ(Send(Event("f-3", "assessment.grading.failed",
                       {{"instance_id", grading}, {"error_code", "RULES_MISSING"}, {"error_message", "no rules"}}))
                .status,
            202);
  i = Get(grading);
  EXPECT_EQ(i["state"], "STOPPING");
  EXPECT_EQ(i["last_failure"]["stage"], "grading");
  EXPECT_TRUE(i["grading_score"].is_null());
}

TEST_F(Receiver, UnhandledTypesAreIgnoredAndCounted) {
  HttpResult r = Send(Event("x-1", "com.example.unrelated", {{"anything", 1}}));
  ASSERT_EQ(r.status, 202);
  EXPECT_EQ(r.Json()["outcome"], "ignored");
  EXPECT_NE(http_.Get("/metrics").body.find("ccm_events_received_total{outcome=\"ignored\"} 1"), std::string::npos);
}

TEST_F(Receiver, BinaryModeAndBatchWithOneOutcomePerEvent) {
  const std::string a = InstanceIn("COLLECTING");
  HttpResult bin = http_.Send("POST", "/api/v1/events",
                              json{{"instance_id", a}, {"collection_id", "c"}, {"artifacts_uri", "s3://a"}}.dump(),
                              {{"Content-Type", "application/json"},
                               {"ce-specversion", "1.0"},
                               {"ce-id", "bin-1"},
                               {"ce-source", "assessment"},
                               {"ce-type", "assessment.collection.completed"}});
  ASSERT_EQ(bin.status, 202) << bin.body;
  EXPECT_EQ(Get(a)["state"], "GRADING");

  const std::string b = InstanceIn("GRADING");
  json batch = json::array({Event("b-1", "assessment.grading.completed", {{"instance_id", b}, {"score", Score()}}),
                            Event("b-2", "assessment.grading.completed", {{"instance_id", "nope"}, {"score", Score()}}),
                            json{{"specversion", "1.0"}, {"id", "b-3"}}});
  HttpResult r = http_.Post("/api/v1/events", batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(r.status, 207) << r.body;
  json results = r.Json()["results"];
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0]["status"], 202);
  EXPECT_EQ(results[1]["status"], 422);
  EXPECT_EQ(results[1]["field"], "data.instance_id");
  EXPECT_EQ(results[2]["status"], 400);
  EXPECT_EQ(results[2]["field"], "source");
  EXPECT_EQ(Get(b)["state"], "STOPPING");
}

TEST_F(Receiver, BadInputGetsItsStatusAProblemAndNoWrite) {
  const std::string collecting = InstanceIn("COLLECTING");
  const std::string running = InstanceIn("RUNNING");
  const std::string grading = InstanceIn("GRADING");
  auto base = [&](json patch) {
    json e = Event("bad", "assessment.collection.completed",
                   {{"instance_id", collecting}, {"collection_id", "c"}, {"artifacts_uri", "s3://x"}});
    for (auto& [k, v] : patch.items()) {
      if (v.is_null()) e.erase(k);
      else e[k] = v;
    }
    return e.dump();
  };
  struct Case {
    const char* name;
    std::string body;
    std::string content_type;
    int status;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"malformed json", "{\"specversion\":", kStructured, 400, "body"},
      {"missing id", base({{"id", nullptr}}), kStructured, 400, "id"},
      {"empty id", base({{"id", ""}}), kStructured, 400, "id"},
      {"missing source", base({{"source", nullptr}}), kStructured, 400, "source"},
      {"empty type", base({{"type", ""}}), kStructured, 400, "type"},
      {"specversion 0.3", base({{"specversion", "0.3"}}), kStructured, 400, "specversion"},
      {"specversion 2.0", base({{"specversion", "2.0"}}), kStructured, 400, "specversion"},
      {"upper-case attribute", base({{"Subject", "x"}}), kStructured, 400, "Subject"},
      {"bad time", base({{"time", "27/11/2026"}}), kStructured, 400, "time"},
      {"structured not an object", "[1,2]", kStructured, 400, "body"},
      {"batch not an array", base({}), "application/cloudevents-batch+json", 400, "body"},
      {"data and data_base64", base({{"data_base64", "AA=="}}), kStructured, 400, "data"},
      {"wrong content type", base({}), "text/plain", 415, "content-type"},
      {"unknown instance", base({{"data", {{"instance_id", "nope"}, {"collection_id", "c"}, {"artifacts_uri", "s"}}}}),
       kStructured, 422, "data.instance_id"},
      {"no instance id", base({{"data", {{"collection_id", "c"}, {"artifacts_uri", "s"}}}}), kStructured, 422,
       "data.instance_id"},
      {"data not an object", base({{"data", "hello"}}), kStructured, 422, "data"},
      {"missing collection_id", base({{"data", {{"instance_id", collecting}, {"artifacts_uri", "s"}}}}), kStructured,
       422, "data.collection_id"},
      {"bad score total", Event("s1", "assessment.grading.completed", {{"instance_id", grading}, {"score", Score(11, 10)}}).dump(),
       kStructured, 422, "data.score.total"},
      {"bad score max", Event("s2", "assessment.grading.completed", {{"instance_id", grading}, {"score", Score(0, 0)}}).dump(),
       kStructured, 422, "data.score.max"},
      {"criterion over max", Event("s3", "assessment.grading.completed",
                                   {{"instance_id", grading},
                                    {"score", {{"total", 5}, {"max", 10}, {"breakdown", {{{"criterion", "a"}, {"points", 6}, {"max", 5}}}}}}})
                                 .dump(),
       kStructured, 422, "data.score.breakdown[0].points"},
      {"old shape over max", Event("s4", "assessment.grading.completed.v1",
                                   {{"aggregate_id", grading}, {"score", {{"total_points_earned", 12}, {"total_points_possible", 10}}}})
                                 .dump(),
       kStructured, 422, "data.score.total_points_earned"},
      {"illegal move", base({{"data", {{"instance_id", running}, {"collection_id", "c"}, {"artifacts_uri", "s"}}}}),
       kStructured, 409, "state"},
  };
  for (const auto& c : cases) {
    const std::string before = testing::DbSnapshot(stack_.DbPath());
    HttpResult r = http_.Post("/api/v1/events", c.body, c.content_type);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json") << c.name;
    EXPECT_EQ(r.Json().value("field", ""), c.field) << c.name << ": " << r.body;
    EXPECT_FALSE(r.Json().value("detail", "").empty()) << c.name;
    EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before) << c.name << " wrote something";
  }
  // A body of 10 MiB is refused before it is read.
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  HttpResult big = http_.Post("/api/v1/events", std::string(10 << 20, ' '), kStructured);
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.ContentType(), "application/problem+json");
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
}

TEST_F(Receiver, OperatorGradingResult) {
  const std::string grading = InstanceIn("GRADING");
  const std::string running = InstanceIn("RUNNING");
  const std::string path = "/api/internal/instances/" + grading + "/grading-result";
  EXPECT_EQ(http_.PostJson("/api/internal/instances/nope/grading-result", {{"score", Score()}}).status, 404);
  HttpResult not_grading = http_.PostJson("/api/internal/instances/" + running + "/grading-result", {{"score", Score()}});
  EXPECT_EQ(not_grading.status, 409);
  HttpResult bad = http_.PostJson(path, {{"score", Score(12, 10)}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.Json()["field"], "score.total");
  EXPECT_EQ(http_.PostJson(path, {{"score", Score()}, {"extra", 1}}).Json()["field"], "extra");
  EXPECT_EQ(http_.Post(path, "{}", "text/plain").status, 415);
  HttpResult ok = http_.PostJson(path, {{"score", Score(9, 10)}, {"passed", true}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.Json()["state"], "STOPPING");
  EXPECT_EQ(ok.Json()["grading_score"]["passed"], true);
  EXPECT_EQ(Count("ccm.lablet.instance.grading.completed"), 1);
}

TEST_F(Receiver, PodOfAnInstance) {
  EXPECT_EQ(http_.Get("/api/v1/instances/nope/pod").status, 404);
  json body = {{"definition_id", def_}, {"owner_id", "c"}, {"timeslot_start", "2026-12-01T09:00:00Z"},
               {"timeslot_end", "2026-12-01T10:00:00Z"}};
  const std::string pending = http_.PostJson("/api/v1/instances", body).Json()["id"];
  HttpResult early = http_.Get("/api/v1/instances/" + pending + "/pod");
  EXPECT_EQ(early.status, 409);
  EXPECT_EQ(early.ContentType(), "application/problem+json");
  const std::string id = InstanceIn("RUNNING");
  HttpResult pod = http_.Get("/api/v1/instances/" + id + "/pod");
  ASSERT_EQ(pod.status, 200) << pod.body;
  json j = pod.Json();
  EXPECT_EQ(j["id"], id);
  ASSERT_EQ(j["devices"].size(), 2u);
  EXPECT_EQ(j["devices"][1]["interfaces"][1], json({{"name", "vnc_1"}, {"protocol", "vnc"}, {"host", "w1.example"},
                                                    {"port", Get(id)["allocated_ports"]["vnc_1"]}}));
}

TEST_F(Receiver, ADuplicateStormAppliesOnce) {
  const std::string id = InstanceIn("COLLECTING");
  const std::string body = Event("storm-1", "assessment.collection.completed",
                                 {{"instance_id", id}, {"collection_id", "c"}, {"artifacts_uri", "s3://x"}})
                               .dump();
  std::atomic<int> accepted{0}, applied{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t)
    threads.emplace_back([&] {
      HttpClient client(stack_.BaseUrl());
      for (int n = 0; n < 200 / 16 + 1; ++n) {
        HttpResult r = client.Post("/api/v1/events", body, kStructured);
        if (r.status == 202) {
          ++accepted;
          if (r.Json()["outcome"] == "applied") ++applied;
        } else {
          ++other;
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(accepted.load(), 16 * (200 / 16 + 1));
  EXPECT_EQ(applied.load(), 1);
  json i = Get(id);
  EXPECT_EQ(i["state"], "GRADING");
  int to_grading = 0;
  for (const auto& h : i["state_history"]) to_grading += h["to"] == "GRADING";
  EXPECT_EQ(to_grading, 1);
  EXPECT_EQ(Count("ccm.lablet.instance.grading.started"), 1);
}

}  // namespace
}  // namespace ccm
