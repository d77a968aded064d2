// CloudEvents 1.0.2 conformance over HTTP: POST /api/v1/events against a running stack with a
// real SQLite file. A message that is not a valid event (or a batch with one such element) is
// answered 400 and writes nothing.
#include <gtest/gtest.h>

#include "support/collection_event.h"
#include "support/db_snapshot.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/stack.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::CollectionCompleted;
using testing::HttpClient;
using testing::HttpResult;

class CloudEventsConformanceHttp : public ::testing::Test {
 protected:
  CloudEventsConformanceHttp() : http_(stack_.BaseUrl()) {
    const auto seed = testing::SeedLab(http_, testing::ReadTestData("sample_lab_template.yaml"));
    def_ = seed.definition_id;
    worker_ = seed.worker_id;
  }

  // A new instance moved to COLLECTING through the API.
  std::string Collecting() {
    json body = {{"definition_id", def_}, {"owner_id", "c"}, {"timeslot_start", "2026-12-01T09:00:00Z"},
                 {"timeslot_end", "2026-12-01T10:00:00Z"}};
    const std::string id = http_.PostJson("/api/v1/instances", body).Json()["id"];
    EXPECT_EQ(http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", worker_}}).status, 200);
    for (const char* to : {"INSTANTIATING", "RUNNING", "COLLECTING"})
      EXPECT_EQ(http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", to}}).status, 200);
    return id;
  }
  std::string State(const std::string& id) { return http_.Get("/api/v1/instances/" + id).Json()["state"]; }
  HttpResult Binary(const std::string& instance, const std::string& subject) {
    return http_.Send("POST", "/api/v1/events",
                      json{{"instance_id", instance}, {"collection_id", "c"}, {"artifacts_uri", "s3://a"}}.dump(),
                      {{"Content-Type", "application/json"},
                       {"ce-specversion", "1.0"},
                       {"ce-id", "bin-utf8"},
                       {"ce-source", "assessment"},
                       {"ce-subject", subject},
                       {"ce-type", "assessment.collection.completed"}});
  }

  testing::Stack stack_;
  HttpClient http_;
  std::string def_, worker_;
};

// http-protocol-binding.md §3.1.3.2: percent-decoded bytes that are not UTF-8 make the message
// invalid: 400 naming the attribute, and nothing stored (the same event, well-formed, is new).
TEST_F(CloudEventsConformanceHttp, BinaryHeaderThatIsNotUtf8Is400AndStoresNothing) {
  const std::string id = Collecting();
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  for (const char* bad : {"%C0%A0", "x%E2%82", "%80"}) {
    HttpResult r = Binary(id, bad);
    ASSERT_EQ(r.status, 400) << bad << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json");
    EXPECT_EQ(r.Json()["field"], "subject") << r.body;
    EXPECT_NE(r.Json()["detail"].get<std::string>().find("UTF-8"), std::string::npos) << r.body;
  }
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
  EXPECT_EQ(State(id), "COLLECTING");
  HttpResult ok = Binary(id, "caf%C3%A9");
  ASSERT_EQ(ok.status, 202) << ok.body;
  EXPECT_EQ(ok.Json()["outcome"], "applied");
  EXPECT_EQ(State(id), "GRADING");
}

// json-format.md §4: a batch with one invalid element is not a valid batch: 400 naming the
// element's index, none of its valid elements applied.
TEST_F(CloudEventsConformanceHttp, BatchWithOneBadElementIs400AndAppliesNothing) {
  const std::string a = Collecting();
  const std::string b = Collecting();
  json bad = CollectionCompleted("batch-3", b);
  bad.erase("type");
  const json batch =
      json::array({CollectionCompleted("batch-1", a), CollectionCompleted("batch-2", b), json("not an event"), bad});
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  HttpResult r = http_.Post("/api/v1/events", batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.ContentType(), "application/problem+json");
  EXPECT_EQ(r.Json()["field"], "[2]") << r.body;
  EXPECT_NE(r.Json()["detail"].get<std::string>().find("2 of 4"), std::string::npos) << r.body;
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
  EXPECT_EQ(State(a), "COLLECTING");
  EXPECT_EQ(State(b), "COLLECTING");

  // The valid ones were not recorded as processed: sent again, they are new and applied.
  const json valid = json::array({CollectionCompleted("batch-1", a), CollectionCompleted("batch-2", b)});
  HttpResult again = http_.Post("/api/v1/events", valid.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(again.status, 202) << again.body;
  const json results = again.Json()["results"];  // a copy: the parsed body is a temporary
  ASSERT_EQ(results.size(), 2u) << again.body;
  for (const auto& result : results) EXPECT_EQ(result["outcome"], "applied") << again.body;
  EXPECT_EQ(State(a), "GRADING");
  EXPECT_EQ(State(b), "GRADING");
}

// json-format.md §2.2: a null attribute is unset, so `"subject": null` is a valid event; a
// required attribute set to null is missing.
TEST_F(CloudEventsConformanceHttp, StructuredNullSubjectIsAcceptedAndNullIdRefused) {
  const std::string id = Collecting();
  json null_id = CollectionCompleted("s-0", id);
  null_id["id"] = nullptr;
  HttpResult refused = http_.Post("/api/v1/events", null_id.dump(), "application/cloudevents+json");
  ASSERT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(refused.Json()["field"], "id");

  json event = CollectionCompleted("s-1", id);
  event["subject"] = nullptr;
  event["datacontenttype"] = nullptr;
  event["myext"] = nullptr;
  HttpResult r = http_.Post("/api/v1/events", event.dump(), "application/cloudevents+json");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "applied");
  EXPECT_EQ(State(id), "GRADING");
}

}  // namespace
}  // namespace ccm
