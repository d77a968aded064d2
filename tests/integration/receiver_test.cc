// POST /api/v1/events over real HTTP against a real SQLite file: the assessment handlers,
// dedup, order tolerance, refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "http/api.h"
#include "support/db_snapshot.h"
#include "support/http_client.h"
#include "support/json_schema.h"
#include "support/lab_seed.h"
#include "support/stack.h"
#include "support/world.h"

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
  // The events of `id` in commit order, each checked against the schema of its data's version
  // in docs/schemas.
  std::vector<json> EventsOf(const std::string& id) {
    std::vector<json> out;
    const json page = http_.Get("/api/v1/events?limit=500&subject=" + id).Json();  // outlives the loop
    for (const auto& record : page["items"]) {
      const json event = record["event"];
      const std::string file = testing::SchemaFileOf(event["type"]);
      const json schema = json::parse(testing::ReadTestData("../../docs/schemas/" + file));
      EXPECT_EQ(testing::ValidateSchema(schema, schema, event["data"]), std::vector<std::string>{}) << event;
      out.push_back(event);
    }
    return out;
  }
  // The data of the last event of `type` about `id`, or null.
  json Last(const std::string& id, const std::string& type) {
    json found;
    for (const auto& e : EventsOf(id))
      if (e["type"] == type) found = e["data"];
    return found;
  }
  // Moves a STOPPING (or later) instance on, as the stopper would, until it is `state`.
  void MoveOnTo(const std::string& id, const std::string& state) {
    const std::vector<std::string> path = {"STOPPING", "STOPPED", "ARCHIVED", "TERMINATED"};
    auto at = std::find(path.begin(), path.end(), Get(id)["state"].get<std::string>());
    ASSERT_NE(at, path.end()) << Get(id);
    for (++at; at != path.end() && *(at - 1) != state; ++at)
      ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", *at}}).status, 200) << *at;
    ASSERT_EQ(Get(id)["state"], state);
  }

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

// Each report an instance is past (collection ones after COLLECTING, a grading failure after
// GRADING) is a stale no-op that records its key; its data is still checked first.
TEST_F(Receiver, AReportTheInstanceIsPastIsStaleOnceItsDataIsValid) {
  const std::string id = InstanceIn("GRADING");
  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", "STOPPING"}}).status, 200);
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  HttpResult bad = Send(Event("f-bad", "assessment.collection.failed", {{"instance_id", id}}));
  ASSERT_EQ(bad.status, 422) << bad.body;
  EXPECT_EQ(bad.Json()["field"], "data.error_code") << bad.body;
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
  for (const auto& [event_id, type, data] :
       {std::tuple{"p-1", "assessment.collection.completed", json{{"instance_id", id}}},
        std::tuple{"p-2", "assessment.collection.failed", json{{"instance_id", id}, {"error_code", "E"}}},
        std::tuple{"p-3", "assessment.grading.failed", json{{"instance_id", id}, {"error_code", "E"}}}}) {
    HttpResult r = Send(Event(event_id, type, data));
    ASSERT_EQ(r.status, 202) << type << ": " << r.body;
    EXPECT_EQ(r.Json()["outcome"], "stale") << type;
    EXPECT_EQ(Send(Event(event_id, type, data)).Json()["outcome"], "duplicate") << type;
  }
  EXPECT_EQ(Get(id)["state"], "STOPPING");
  EXPECT_NE(http_.Get("/metrics").body.find("ccm_events_received_total{outcome=\"stale\"} 3"), std::string::npos);
}

TEST_F(Receiver, CollectionCompletedNeedsOnlyTheInstanceIdAndStoresWhatItGets) {
  const std::string bare = InstanceIn("COLLECTING");
  HttpResult r = Send(Event("c-bare", "assessment.collection.completed", {{"instance_id", bare}}));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "applied");
  json i = Get(bare);
  EXPECT_EQ(i["state"], "GRADING");
  EXPECT_TRUE(i["collection"].is_null());
  EXPECT_TRUE(Last(bare, "ccm.lablet.instance.grading.started")["collection_id"].is_null());

  // The .v1 shape, with aggregate_id alone.
  const std::string v1 = InstanceIn("COLLECTING");
  r = Send(Event("c-v1", "assessment.collection.completed.v1", {{"aggregate_id", v1}}));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "applied");
  EXPECT_EQ(Get(v1)["state"], "GRADING");

  // Whatever optional field comes is stored; a null one counts as absent.
  const std::string partial = InstanceIn("COLLECTING");
  r = Send(Event("c-part", "assessment.collection.completed",
                 {{"instance_id", partial}, {"collection_id", "col-9"}, {"artifacts_uri", nullptr}}));
  ASSERT_EQ(r.status, 202) << r.body;
  i = Get(partial);
  EXPECT_EQ(i["state"], "GRADING");
  EXPECT_EQ(i["collection"], json({{"collection_id", "col-9"}, {"artifacts_uri", nullptr}}));
  EXPECT_EQ(Last(partial, "ccm.lablet.instance.grading.started")["collection_id"], "col-9");

  const std::string uri_only = InstanceIn("COLLECTING");
  ASSERT_EQ(Send(Event("c-uri", "assessment.collection.completed.v1",
                       {{"aggregate_id", uri_only}, {"artifacts_uri", "s3://b/x"}}))
                .status,
            202);
  EXPECT_EQ(Get(uri_only)["collection"], json({{"collection_id", nullptr}, {"artifacts_uri", "s3://b/x"}}));
}

TEST_F(Receiver, AReGradeIsKeptAsTheNextRevisionAndPublishedAgain) {
  const std::string id = InstanceIn("GRADING");
  ASSERT_EQ(Send(Event("g-1", "assessment.grading.completed", {{"instance_id", id}, {"score", Score(6, 10)}})).status,
            202);
  EXPECT_EQ(Get(id)["state"], "STOPPING");
  json first = Last(id, "ccm.lablet.instance.grading.completed");
  EXPECT_EQ(first["revision"], 1);
  EXPECT_EQ(first["score_event_id"], "g-1");
  EXPECT_EQ(first["new_state"], "GRADING");

  // Another event id: a re-grade, heard and published, the instance staying where it is.
  HttpResult r = Send(Event("g-2", "assessment.grading.completed",
                            {{"instance_id", id}, {"score", Score(9, 10)}, {"passed", true}}, "/appeals"));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "applied");
  json i = Get(id);
  EXPECT_EQ(i["state"], "STOPPING");
  EXPECT_EQ(i["grading_score"]["total"], 9.0);
  EXPECT_EQ(i["grading_score"]["passed"], true);
  ASSERT_EQ(i["scores"].size(), 2u);
  EXPECT_EQ(i["scores"][0]["revision"], 1);
  EXPECT_EQ(i["scores"][0]["event_id"], "g-1");
  EXPECT_EQ(i["scores"][0]["score"]["total"], 6.0);
  EXPECT_EQ(i["scores"][1]["revision"], 2);
  EXPECT_EQ(i["scores"][1]["event_id"], "g-2");
  EXPECT_EQ(i["scores"][1]["actor"], "event:/appeals");
  EXPECT_TRUE(i["scores"][1]["at"].is_string());
  EXPECT_EQ(Count("ccm.lablet.instance.grading.completed"), 2);
  EXPECT_EQ(Count("ccm.lablet.instance.stopping"), 1);  // no second move
  json second = Last(id, "ccm.lablet.instance.grading.completed");
  EXPECT_EQ(second["revision"], 2);
  EXPECT_EQ(second["score_event_id"], "g-2");
  EXPECT_EQ(second["score"]["total"], 9.0);
  EXPECT_EQ(second["previous_state"], "STOPPING");
  EXPECT_EQ(second["new_state"], "STOPPING");

  // The same event again is a duplicate: nothing is written.
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  r = Send(Event("g-2", "assessment.grading.completed", {{"instance_id", id}, {"score", Score(1, 10)}}, "/appeals"));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "duplicate");
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
  EXPECT_EQ(Get(id)["scores"].size(), 2u);

  // After the lab is stopped, archived, even terminated, a re-grade is still heard.
  MoveOnTo(id, "STOPPED");
  ASSERT_EQ(Send(Event("g-3", "assessment.grading.completed.v1",
                       {{"aggregate_id", id}, {"score", {{"total_points_earned", 7}, {"total_points_possible", 10}}}}))
                .status,
            202);
  EXPECT_EQ(Last(id, "ccm.lablet.instance.grading.completed")["revision"], 3);
  EXPECT_EQ(Last(id, "ccm.lablet.instance.grading.completed")["new_state"], "STOPPED");
  MoveOnTo(id, "TERMINATED");
  EXPECT_EQ(Last(id, "ccm.lablet.instance.terminated")["grading_score"]["total"], 7.0);
  EXPECT_EQ(Last(id, "ccm.lablet.instance.terminated")["outcome"], "graded");
  r = Send(Event("g-4", "assessment.grading.completed", {{"instance_id", id}, {"score", Score(10, 10)}}));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "applied");
  i = Get(id);
  EXPECT_EQ(i["state"], "TERMINATED");
  EXPECT_EQ(i["grading_score"]["total"], 10.0);
  EXPECT_EQ(i["scores"].size(), 4u);
  json fourth = Last(id, "ccm.lablet.instance.grading.completed");
  EXPECT_EQ(fourth["revision"], 4);
  EXPECT_EQ(fourth["new_state"], "TERMINATED");

  // The operator route is a re-grade too, with no event id.
  HttpResult op = http_.PostJson("/api/internal/instances/" + id + "/grading-result", {{"score", Score(5, 10)}});
  ASSERT_EQ(op.status, 200) << op.body;
  EXPECT_EQ(op.Json()["state"], "TERMINATED");
  EXPECT_EQ(op.Json()["grading_score"]["total"], 5.0);
  EXPECT_EQ(op.Json()["scores"][4]["revision"], 5);
  EXPECT_TRUE(op.Json()["scores"][4]["event_id"].is_null());
  json fifth = Last(id, "ccm.lablet.instance.grading.completed");
  EXPECT_EQ(fifth["revision"], 5);
  EXPECT_TRUE(fifth["score_event_id"].is_null());
  EXPECT_EQ(Count("ccm.lablet.instance.grading.completed"), 5);
}

TEST_F(Receiver, EachWayOfEndingSaysItsOutcomeAndFailure) {
  struct Case {
    const char* name;
    std::string id;
    std::string outcome;
    json failure;  // null when graded
  };
  std::vector<Case> cases;

  const std::string graded = InstanceIn("GRADING");
  ASSERT_EQ(Send(Event("e-g", "assessment.grading.completed", {{"instance_id", graded}, {"score", Score()}})).status, 202);
  cases.push_back({"graded", graded, "graded", nullptr});

  const std::string collection_failed = InstanceIn("COLLECTING");
  ASSERT_EQ(Send(Event("e-cf", "assessment.collection.failed",
                       {{"instance_id", collection_failed}, {"error_code", "NO_ARTIFACTS"}, {"error_message", "empty"}}))
                .status,
            202);
  cases.push_back({"collection failed", collection_failed, "collection_failed",
                   {{"stage", "collection"}, {"code", "NO_ARTIFACTS"}, {"message", "empty"}}});

  const std::string retries_exhausted = InstanceIn("COLLECTING");
  for (const char* e : {"e-r1", "e-r2", "e-r3", "e-r4"})
    ASSERT_EQ(Send(Event(e, "assessment.collection.failed",
                         {{"instance_id", retries_exhausted}, {"error_code", "WORKER_UNREACHABLE"}, {"retry_possible", true}}))
                  .status,
              202);
  cases.push_back({"retryable failures past the bound", retries_exhausted, "collection_failed",
                   {{"stage", "collection"},
                    {"code", "WORKER_UNREACHABLE"},
                    {"message", "the platform reported WORKER_UNREACHABLE (4 failures, no more retries)"}}});

  const std::string grading_failed = InstanceIn("GRADING");
  ASSERT_EQ(Send(Event("e-gf", "assessment.grading.failed.v1", {{"aggregate_id", grading_failed}, {"error_code", "RULES_MISSING"}}))
                .status,
            202);
  cases.push_back({"grading failed", grading_failed, "grading_failed",
                   {{"stage", "grading"}, {"code", "RULES_MISSING"}, {"message", "the Grading Engine reported RULES_MISSING"}}});

  const std::string deleted_running = InstanceIn("RUNNING");
  ASSERT_EQ(http_.Delete("/api/v1/instances/" + deleted_running).status / 100, 2);
  cases.push_back({"DELETE while RUNNING", deleted_running, "cancelled",
                   {{"stage", "running"}, {"code", "termination_requested"}, {"message", "termination requested by "}}});

  const std::string moved = InstanceIn("COLLECTING");
  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + moved + "/transition", {{"to", "STOPPING"}, {"reason", "lab broken"}})
                .status,
            200);
  cases.push_back({"an operator's move", moved, "cancelled",
                   {{"stage", "collection"}, {"code", "operator_move"}, {"message", "lab broken"}}});

  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Get(c.id)["state"], "STOPPING");
    json stopping = Last(c.id, "ccm.lablet.instance.stopping");
    EXPECT_EQ(stopping["outcome"], c.outcome);
    json failure = stopping["failure"];
    // The actor who asked is in the message; the rest is exact.
    if (c.failure.is_object() && c.failure["message"] == "termination requested by ") {
      EXPECT_EQ(failure["message"].get<std::string>().rfind("termination requested by ", 0), 0u) << failure;
      failure["message"] = c.failure["message"];
    }
    EXPECT_EQ(failure, c.failure);
    EXPECT_EQ(Get(c.id)["ending"]["outcome"], c.outcome);
    MoveOnTo(c.id, "TERMINATED");
    json terminated = Last(c.id, "ccm.lablet.instance.terminated");
    EXPECT_EQ(terminated["outcome"], c.outcome);
    EXPECT_EQ(terminated["failure"].is_null(), c.failure.is_null());
    if (c.failure.is_object()) {
      EXPECT_EQ(terminated["failure"]["code"], c.failure["code"]);
    }
  }

  // An instance that never started: terminated at once, cancelled while being scheduled.
  json body = {{"definition_id", def_}, {"owner_id", "c"}, {"timeslot_start", "2026-12-01T09:00:00Z"},
               {"timeslot_end", "2026-12-01T10:00:00Z"}};
  const std::string pending = http_.PostJson("/api/v1/instances", body).Json()["id"];
  ASSERT_EQ(http_.Delete("/api/v1/instances/" + pending).status / 100, 2);
  EXPECT_EQ(Get(pending)["state"], "TERMINATED");
  json terminated = Last(pending, "ccm.lablet.instance.terminated");
  EXPECT_EQ(terminated["outcome"], "cancelled");
  EXPECT_EQ(terminated["failure"]["stage"], "scheduling");
  EXPECT_EQ(terminated["failure"]["code"], "termination_requested");
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
                            Event("b-3", "com.example.unrelated", {{"anything", 1}})});
  HttpResult r = http_.Post("/api/v1/events", batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(r.status, 207) << r.body;
  json results = r.Json()["results"];
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0]["status"], 202);
  EXPECT_EQ(results[1]["status"], 422);
  EXPECT_EQ(results[1]["field"], "data.instance_id");
  EXPECT_EQ(results[1]["code"], "not_found");
  EXPECT_FALSE(results[0].contains("code"));
  // Each result as the OpenAPI document describes it.
  const json spec = json::parse(http::OpenApiDocument());
  for (const auto& result : results)
    EXPECT_EQ(testing::ValidateSchema(spec, spec["components"]["schemas"]["ReceiveResult"], result),
              std::vector<std::string>{})
        << result;
  EXPECT_EQ(results[2]["status"], 202);
  EXPECT_EQ(results[2]["outcome"], "ignored");
  EXPECT_EQ(Get(b)["state"], "STOPPING");
}

// A batch's events are received one after the other, each once the one before it has
// committed: a subject's events apply in the batch's order, and an event sent twice in one
// batch is a duplicate the second time.
TEST_F(Receiver, ABatchAppliesASubjectsEventsInItsOrder) {
  const std::string a = InstanceIn("COLLECTING");
  const json collected =
      Event("o-1", "assessment.collection.completed", {{"instance_id", a}, {"collection_id", "c"}, {"artifacts_uri", "s3://a"}});
  json batch = json::array(
      {collected, Event("o-2", "assessment.grading.completed", {{"instance_id", a}, {"score", Score()}}), collected});
  HttpResult r = http_.Post("/api/v1/events", batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(r.status, 202) << r.body;
  const json results = r.Json()["results"];
  ASSERT_EQ(results.size(), 3u) << r.body;
  EXPECT_EQ(results[0]["outcome"], "applied") << r.body;
  EXPECT_EQ(results[1]["outcome"], "applied") << r.body;
  EXPECT_EQ(results[2]["outcome"], "duplicate") << r.body;
  EXPECT_EQ(Get(a)["state"], "STOPPING");
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
      {"collection_id not a string", base({{"data", {{"instance_id", collecting}, {"collection_id", 5}}}}), kStructured,
       422, "data.collection_id"},
      {"empty artifacts_uri", base({{"data", {{"instance_id", collecting}, {"artifacts_uri", ""}}}}), kStructured, 422,
       "data.artifacts_uri"},
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
  // The error's code, as every route's problem carries it: what tells an unknown instance from
  // bad data under one 422, and an illegal move under 409. A content type has none (415).
  const json spec = json::parse(http::OpenApiDocument());
  const auto code_of = [](const Case& c) -> std::string {
    if (c.status == 415) return "";
    if (c.name == std::string("unknown instance")) return "not_found";
    if (c.status == 409) return "conflict";
    return "invalid_argument";
  };
  for (const auto& c : cases) {
    const std::string before = testing::DbSnapshot(stack_.DbPath());
    HttpResult r = http_.Post("/api/v1/events", c.body, c.content_type);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json") << c.name;
    EXPECT_EQ(r.Json().value("field", ""), c.field) << c.name << ": " << r.body;
    EXPECT_EQ(r.Json().value("code", ""), code_of(c)) << c.name << ": " << r.body;
    EXPECT_EQ(testing::ValidateSchema(spec, spec["components"]["schemas"]["Problem"], r.Json()),
              std::vector<std::string>{})
        << c.name << ": " << r.body;
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
  EXPECT_EQ(not_grading.ContentType(), "application/problem+json");
  EXPECT_EQ(not_grading.Json()["field"], "state");
  HttpResult bad = http_.PostJson(path, {{"score", Score(12, 10)}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.Json()["field"], "score.total");
  EXPECT_EQ(http_.PostJson(path, {{"score", Score()}, {"extra", 1}}).Json()["field"], "extra");
  EXPECT_EQ(http_.Post(path, "{}", "text/plain").status, 415);
  HttpResult ok = http_.PostJson(path, {{"score", Score(9, 10)}, {"passed", true}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.Json()["state"], "STOPPING");
  EXPECT_EQ(ok.Json()["grading_score"]["passed"], true);
  EXPECT_EQ(ok.Json()["scores"].size(), 1u);
  EXPECT_EQ(ok.Json()["ending"]["outcome"], "graded");
  EXPECT_EQ(Count("ccm.lablet.instance.grading.completed"), 1);
  EXPECT_EQ(Last(grading, "ccm.lablet.instance.grading.completed")["revision"], 1);
  // Again on the STOPPING instance: a re-grade, revision 2; the instance does not move.
  HttpResult again = http_.PostJson(path, {{"score", Score(10, 10)}});
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.Json()["state"], "STOPPING");
  EXPECT_EQ(again.Json()["grading_score"]["total"], 10.0);
  EXPECT_EQ(Last(grading, "ccm.lablet.instance.grading.completed")["revision"], 2);
  EXPECT_EQ(Count("ccm.lablet.instance.stopping"), 1);
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

// Distinct events racing on one instance: each commit that loses the race is decided again on
// a fresh read (answered from a handler thread, not the commit's), so every one is applied
// once, as its own revision.
TEST_F(Receiver, DistinctEventsRacingOnOneInstanceAreEachAppliedOnce) {
  const std::string id = InstanceIn("GRADING");
  constexpr int kThreads = 8, kEach = 5;
  std::atomic<int> applied{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      HttpClient client(stack_.BaseUrl());
      for (int n = 0; n < kEach; ++n) {
        const json event = Event("race-" + std::to_string(t) + "-" + std::to_string(n), "assessment.grading.completed",
                                 {{"instance_id", id}, {"score", Score(t, 10)}});
        HttpResult r = client.Post("/api/v1/events", event.dump(), kStructured);
        if (r.status == 202 && r.Json()["outcome"] == "applied" && r.Json()["id"] == event["id"])
          ++applied;
        else
          ++other;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(applied.load(), kThreads * kEach);
  const json i = Get(id);
  ASSERT_EQ(i["scores"].size(), static_cast<size_t>(kThreads * kEach));
  std::set<std::string> events;
  for (size_t n = 0; n < i["scores"].size(); ++n) {
    EXPECT_EQ(i["scores"][n]["revision"], n + 1);
    events.insert(i["scores"][n]["event_id"].get<std::string>());
  }
  EXPECT_EQ(events.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(Count("ccm.lablet.instance.grading.completed"), kThreads * kEach);
  EXPECT_EQ(Count("ccm.lablet.instance.stopping"), 1);
}

}  // namespace
}  // namespace ccm
