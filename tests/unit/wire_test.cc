// The wire formats: the typed decoding of the Assessment Platform's events (each type, each
// field rule, both score shapes, extra fields ignored), the score shared with the operator's
// route, what an idempotent create keeps, and the receipts of POST /api/v1/events.
#include <gtest/gtest.h>

#include "cloudevents/cloud_event.h"
#include "support/fixtures.h"
#include "wire/aggregates.h"
#include "wire/assessment_events.h"
#include "wire/event_data.h"
#include "wire/grading_score.h"
#include "wire/idempotency.h"
#include "wire/overview.h"
#include "wire/receipt.h"

namespace ccm::wire {
namespace {

using namespace ccm::domain;
using nlohmann::json;
using T = AssessmentEventType;

cloudevents::CloudEvent Event(const std::string& type, json data) {
  cloudevents::CloudEvent e;
  e.id = "evt-1";
  e.source = "/assessment";
  e.type = type;
  e.data = std::move(data);
  return e;
}

// The decoded data of an event of `type`, which must name its instance.
Result<AssessmentData> Data(T type, json data) {
  data["instance_id"] = "i-1";
  auto decoded = DecodeAssessmentEvent(type, Event("ignored.by.decode", std::move(data)));
  EXPECT_TRUE(decoded) << decoded.error().message;
  if (!decoded) return decoded.error();
  EXPECT_EQ(decoded->instance_id, "i-1");
  return decoded->data;
}

// The field the first broken rule of `data` names.
std::string FieldOf(T type, json data) {
  auto d = Data(type, std::move(data));
  EXPECT_FALSE(d);
  if (d) return "";
  EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument);
  return d.error().field;
}

json Score() { return {{"total", 8}, {"max", 10}, {"breakdown", json::array({{{"criterion", "ospf"}, {"points", 8}, {"max", 10}}})}}; }

// A lablet with every field set, and an entry in each of its lists.
LabletInstance EveryFieldSet() {
  LabletInstance i;
  i.id = {"i-1"};
  i.definition_id = {"d-1"};
  i.definition_version = "1.2.0";
  i.owner_id = "candidate-7";
  i.reservation_id = "r-1";
  i.assessment = AssessmentRef{"session-1", "part-2"};
  i.timeslot_start = FromUnixMillis(1795743983123);
  i.timeslot_end = FromUnixMillis(1795747583123);
  i.state = InstanceState::kStopping;
  i.state_history = {
      {InstanceState::kPending, InstanceState::kScheduled, FromUnixMillis(1795743000001), "placed", "ccm"},
      {InstanceState::kScheduled, InstanceState::kStopping, FromUnixMillis(1795743000002), "said \"stop\"", "op"}};
  i.worker_id = WorkerId{"w-1"};
  i.allocated_ports = {{"serial_1", 2000}, {"vnc_1", 2001}};
  i.cml_lab_id = "lab-1";
  i.collection = CollectionRef{"c-1", std::nullopt};
  i.grading_score = GradingScore{8, 10, true, {{"ospf", 8, 10}}};
  i.scores = {{1, *i.grading_score, "evt-9", "event:/platform", FromUnixMillis(1795743000003)}};
  i.ending = Ending{Outcome::kTimedOut, "collection", "collection_timed_out", "no answer"};
  i.pod_assigned = true;
  i.pod_error = "pod refused";
  i.pod_due_at = FromUnixMillis(1795743000004);
  i.pod_failures = 2;
  i.last_failure = FailureRecord{"grading", "E1", "broke", true, FromUnixMillis(1795743000005)};
  i.collection_failures = 3;
  i.collection_due_at = FromUnixMillis(1795743000006);
  i.collection_request_failures = 4;
  i.collection_request_error = "503";
  i.collection_requested_at = FromUnixMillis(1795743000007);
  i.collection_refused = true;
  i.termination_requested = true;
  i.cml_failures = 5;
  i.cml_error = "CML said no";
  i.cml_retry_at = FromUnixMillis(1795743000008);
  i.created_at = FromUnixMillis(1795743000000);
  i.scheduled_at = FromUnixMillis(1795743000009);
  i.started_at = FromUnixMillis(1795743000010);
  i.terminated_at = FromUnixMillis(1795743000011);
  i.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  i.tracestate = "ccm=1";
  i.version = 6;
  return i;
}

// Each field of a lablet under its key, as the API, the store and the console read it.
TEST(InstanceJson, WritesEveryFieldUnderItsKey) {
  // The text, key by key in the order it is written (sorted), as it was before objects were
  // built key by key.
  const std::string expected =
      R"json({"allocated_ports":{"serial_1":2000,"vnc_1":2001},"assessment":{"part_id":"part-2",)json"
      R"json("session_id":"session-1"},"cml_error":"CML said no","cml_failures":5,"cml_lab_id":"lab-1",)json"
      R"json("cml_retry_at":"2026-11-27T01:30:00.008Z","collection":{"artifacts_uri":null,)json"
      R"json("collection_id":"c-1"},"collection_due_at":"2026-11-27T01:30:00.006Z","collection_failures":3,)json"
      R"json("collection_refused":true,"collection_request_error":"503","collection_request_failures":4,)json"
      R"json("collection_requested_at":"2026-11-27T01:30:00.007Z","created_at":"2026-11-27T01:30:00.000Z",)json"
      R"json("definition_id":"d-1","definition_version":"1.2.0","ending":{"code":"collection_timed_out",)json"
      R"json("message":"no answer","outcome":"timed_out","stage":"collection"},)json"
      R"json("grading_score":{"breakdown":[{"criterion":"ospf","max":10.0,"points":8.0}],"max":10.0,)json"
      R"json("passed":true,"total":8.0},"id":"i-1","last_failure":{"at":"2026-11-27T01:30:00.005Z",)json"
      R"json("error_code":"E1","error_message":"broke","retry_possible":true,"stage":"grading"},)json"
      R"json("owner_id":"candidate-7","pod_assigned":true,"pod_due_at":"2026-11-27T01:30:00.004Z",)json"
      R"json("pod_error":"pod refused","pod_failures":2,"reservation_id":"r-1",)json"
      R"json("scheduled_at":"2026-11-27T01:30:00.009Z","scores":[{"actor":"event:/platform",)json"
      R"json("at":"2026-11-27T01:30:00.003Z","event_id":"evt-9","revision":1,)json"
      R"json("score":{"breakdown":[{"criterion":"ospf","max":10.0,"points":8.0}],"max":10.0,"passed":true,)json"
      R"json("total":8.0}}],"started_at":"2026-11-27T01:30:00.010Z","state":"STOPPING",)json"
      R"json("state_history":[{"actor":"ccm","at":"2026-11-27T01:30:00.001Z","from":"PENDING",)json"
      R"json("reason":"placed","to":"SCHEDULED"},{"actor":"op","at":"2026-11-27T01:30:00.002Z",)json"
      R"json("from":"SCHEDULED","reason":"said \"stop\"","to":"STOPPING"}],)json"
      R"json("terminated_at":"2026-11-27T01:30:00.011Z","termination_requested":true,)json"
      R"json("timeslot_end":"2026-11-27T02:46:23.123Z","timeslot_start":"2026-11-27T01:46:23.123Z",)json"
      R"json("trace_id":"0af7651916cd43dd8448eb211c80319c",)json"
      R"json("traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"ccm=1",)json"
      R"json("version":6,"worker_id":"w-1"})json";
  EXPECT_EQ(ToJson(EveryFieldSet()).dump(), expected);
  auto read = InstanceFromJson(json::parse(expected));
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(ToJson(*read).dump(), expected);
}

TEST(AssessmentEventType, NamesTheFourTypesWithOrWithoutV1) {
  const std::pair<const char*, T> all[] = {{"assessment.collection.completed", T::kCollectionCompleted},
                                           {"assessment.collection.failed", T::kCollectionFailed},
                                           {"assessment.grading.completed", T::kGradingCompleted},
                                           {"assessment.grading.failed", T::kGradingFailed}};
  for (const auto& [name, type] : all) {
    EXPECT_EQ(AssessmentEventTypeOf(name), type) << name;
    EXPECT_EQ(AssessmentEventTypeOf(std::string(name) + ".v1"), type) << name;
  }
  for (const char* other : {"assessment.collection.requested", "assessment.grading.completed.v2", "", ".v1",
                            "ccm.lablet.instance.running"})
    EXPECT_FALSE(AssessmentEventTypeOf(other)) << other;
}

TEST(DecodeAssessmentEvent, TheDataMustBeAnObjectNamingAnInstance) {
  for (json data : {json(nullptr), json::array(), json("text"), json(3)}) {
    auto d = DecodeAssessmentEvent(T::kGradingFailed, Event("assessment.grading.failed", data));
    ASSERT_FALSE(d) << data;
    EXPECT_EQ(d.error().field, "data");
  }
  cloudevents::CloudEvent no_data = Event("assessment.grading.failed", nullptr);
  no_data.data.reset();
  EXPECT_EQ(DecodeAssessmentEvent(T::kGradingFailed, no_data).error().field, "data");
  for (json data : {json::object(), json{{"instance_id", ""}}, json{{"instance_id", 7}}, json{{"aggregate_id", nullptr}}}) {
    auto d = DecodeAssessmentEvent(T::kGradingFailed, Event("assessment.grading.failed", data));
    ASSERT_FALSE(d) << data;
    EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(d.error().field, "data.instance_id");
  }
  auto by_aggregate = DecodeAssessmentEvent(T::kGradingFailed, Event("x", {{"aggregate_id", "i-9"}}));
  ASSERT_TRUE(by_aggregate);
  EXPECT_EQ(by_aggregate->instance_id, "i-9");
  // A bad field is kept apart: the instance is still named, so an unknown one is said first.
  ASSERT_FALSE(by_aggregate->data);
  EXPECT_EQ(by_aggregate->data.error().field, "data.error_code");
}

TEST(DecodeAssessmentEvent, CollectionCompletedIdsAreOptionalNonEmptyStrings) {
  auto none = Data(T::kCollectionCompleted, json::object());
  ASSERT_TRUE(none);
  const auto& empty = std::get<CollectionCompleted>(*none);
  EXPECT_FALSE(empty.collection_id);
  EXPECT_FALSE(empty.artifacts_uri);
  auto both = Data(T::kCollectionCompleted, {{"collection_id", "col-1"}, {"artifacts_uri", "s3://b/col-1"}, {"artifacts_uri_extra", 5}});
  ASSERT_TRUE(both);
  EXPECT_EQ(std::get<CollectionCompleted>(*both).collection_id, "col-1");
  EXPECT_EQ(std::get<CollectionCompleted>(*both).artifacts_uri, "s3://b/col-1");
  EXPECT_TRUE(Data(T::kCollectionCompleted, {{"collection_id", nullptr}}));  // null is absent
  for (const char* key : {"collection_id", "artifacts_uri"})
    for (json bad : {json(""), json(4), json::object()})
      EXPECT_EQ(FieldOf(T::kCollectionCompleted, {{key, bad}}), std::string("data.") + key) << bad;
}

TEST(DecodeAssessmentEvent, CollectionFailedNeedsACodeAndTakesAMessageAndARetryFlag) {
  auto d = Data(T::kCollectionFailed, {{"error_code", "timeout"}, {"error_message", "slow"}, {"retry_possible", true}});
  ASSERT_TRUE(d);
  const auto& f = std::get<CollectionFailed>(*d);
  EXPECT_EQ(f.error_code, "timeout");
  EXPECT_EQ(f.error_message, "slow");
  EXPECT_TRUE(f.retry_possible);
  auto bare = Data(T::kCollectionFailed, {{"error_code", "timeout"}, {"error_message", nullptr}});
  ASSERT_TRUE(bare);
  EXPECT_EQ(std::get<CollectionFailed>(*bare).error_message, "");
  EXPECT_FALSE(std::get<CollectionFailed>(*bare).retry_possible);
  EXPECT_EQ(FieldOf(T::kCollectionFailed, json::object()), "data.error_code");
  EXPECT_EQ(FieldOf(T::kCollectionFailed, {{"error_code", ""}}), "data.error_code");
  EXPECT_EQ(FieldOf(T::kCollectionFailed, {{"error_code", 500}}), "data.error_code");
  EXPECT_EQ(FieldOf(T::kCollectionFailed, {{"error_code", "x"}, {"error_message", 1}}), "data.error_message");
  EXPECT_EQ(FieldOf(T::kCollectionFailed, {{"error_code", "x"}, {"retry_possible", "yes"}}), "data.retry_possible");
  EXPECT_EQ(FieldOf(T::kCollectionFailed, {{"error_code", "x"}, {"retry_possible", nullptr}}), "data.retry_possible");
  // The rules apply in order: the code first.
  EXPECT_EQ(FieldOf(T::kCollectionFailed, {{"error_message", 1}, {"retry_possible", "yes"}}), "data.error_code");
}

TEST(DecodeAssessmentEvent, GradingFailedNeedsACode) {
  auto d = Data(T::kGradingFailed, {{"error_code", "engine_down"}, {"retry_possible", "ignored here"}});
  ASSERT_TRUE(d);
  EXPECT_EQ(std::get<GradingFailed>(*d).error_code, "engine_down");
  EXPECT_EQ(std::get<GradingFailed>(*d).error_message, "");
  EXPECT_EQ(FieldOf(T::kGradingFailed, {{"error_code", nullptr}}), "data.error_code");
  EXPECT_EQ(FieldOf(T::kGradingFailed, {{"error_code", "x"}, {"error_message", false}}), "data.error_message");
}

TEST(DecodeAssessmentEvent, GradingCompletedCarriesTheScoreAndKeepsOnlyUsableCollectionIds) {
  auto d = Data(T::kGradingCompleted, {{"score", Score()}, {"collection_id", "col-2"}, {"artifacts_uri", ""}, {"note", "x"}});
  ASSERT_TRUE(d);
  const auto& g = std::get<GradingCompleted>(*d);
  EXPECT_EQ(g.score, (GradingScore{8, 10, std::nullopt, {{"ospf", 8, 10}}}));
  EXPECT_EQ(g.collection_id, "col-2");
  EXPECT_FALSE(g.artifacts_uri);  // dropped, not refused: not the event's subject
  auto odd = Data(T::kGradingCompleted, {{"score", Score()}, {"collection_id", 12}});
  ASSERT_TRUE(odd);
  EXPECT_FALSE(std::get<GradingCompleted>(*odd).collection_id);
  EXPECT_EQ(FieldOf(T::kGradingCompleted, json::object()), "data.score");
  EXPECT_EQ(FieldOf(T::kGradingCompleted, {{"score", "8/10"}}), "data.score");
}

TEST(ParseGradingScore, ReadsTheCurrentShape) {
  json s = Score();
  s["passed"] = true;
  auto score = ParseGradingScore({{"score", s}});
  ASSERT_TRUE(score) << score.error().message;
  EXPECT_EQ(*score, (GradingScore{8, 10, true, {{"ospf", 8, 10}}}));
  // `passed` may sit beside the score; the score's own wins.
  EXPECT_EQ(ParseGradingScore({{"score", Score()}, {"passed", false}})->passed, false);
  EXPECT_EQ(ParseGradingScore({{"score", s}, {"passed", false}})->passed, true);
  EXPECT_FALSE(ParseGradingScore({{"score", {{"total", 1}, {"max", 2}}}})->passed);
  EXPECT_TRUE(ParseGradingScore({{"score", {{"total", 1}, {"max", 2}, {"breakdown", nullptr}}}}));
}

TEST(ParseGradingScore, ReadsTheOlderShape) {
  json older = {{"total_points_earned", 3},
                {"total_points_possible", 4},
                {"check_results", json::array({{{"check_name", "vlan"}, {"points_earned", 3}, {"points_possible", 4}}})}};
  auto score = ParseGradingScore({{"score", older}, {"passed", true}});
  ASSERT_TRUE(score) << score.error().message;
  EXPECT_EQ(*score, (GradingScore{3, 4, true, {{"vlan", 3, 4}}}));
}

TEST(ParseGradingScore, NamesTheFieldAsTheEventSpellsIt) {
  auto field = [](json data) {
    auto s = ParseGradingScore(data);
    EXPECT_FALSE(s) << data;
    return s ? std::string() : s.error().field;
  };
  EXPECT_EQ(field(json::object()), "data.score");
  EXPECT_EQ(field({{"score", {{"max", 10}}}}), "data.score.total");
  EXPECT_EQ(field({{"score", {{"total", "8"}, {"max", 10}}}}), "data.score.total");
  EXPECT_EQ(field({{"score", {{"total", 8}}}}), "data.score.max");
  EXPECT_EQ(field({{"score", {{"total", 8}, {"max", 10}, {"breakdown", {{"a", 1}}}}}}), "data.score.breakdown");
  EXPECT_EQ(field({{"score", {{"total", 8}, {"max", 10}, {"breakdown", json::array({1})}}}}), "data.score.breakdown[0]");
  EXPECT_EQ(field({{"score", {{"total", 8}, {"max", 10}, {"breakdown", json::array({{{"points", 1}, {"max", 1}}})}}}}),
            "data.score.breakdown[0].criterion");
  EXPECT_EQ(field({{"score", {{"total", 8}, {"max", 10}, {"breakdown", json::array({{{"criterion", "a"}, {"max", 1}}})}}}}),
            "data.score.breakdown[0].points");
  EXPECT_EQ(field({{"score", {{"total", 8}, {"max", 10}, {"passed", "yes"}}}}), "data.passed");
  EXPECT_EQ(field({{"score", {{"total", 8}, {"max", 10}}}, {"passed", 1}}), "data.passed");
  // Rules of domain::Validate, renamed for the older shape.
  EXPECT_EQ(field({{"score", {{"total", 11}, {"max", 10}}}}), "data.score.total");
  EXPECT_EQ(field({{"score", {{"total_points_earned", 11}, {"total_points_possible", 10}}}}),
            "data.score.total_points_earned");
  EXPECT_EQ(field({{"score", {{"total_points_earned", 1}, {"total_points_possible", 10},
                              {"check_results", json::array({{{"check_name", "a"}, {"points_earned", 5}, {"points_possible", 2}}})}}}}),
            "data.score.check_results[0].points_earned");
  EXPECT_EQ(field({{"score", {{"total_points_earned", 1}}}}), "data.score.total_points_possible");
}

TEST(KeptAnswer, ReadsBackWhatItWrote) {
  LabletInstance i = ccm::testing::MakeInstance("i-7");
  i.version = 1;
  const std::string text = EncodeKeptAnswer({"sha256:abc", i});
  auto back = DecodeKeptAnswer(text);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->digest, "sha256:abc");
  EXPECT_EQ(back->instance.id, i.id);
  EXPECT_EQ(back->instance.version, 1);
  for (const char* bad : {"", "[]", "{\"digest\":\"x\"}", "{\"instance\":{}}"}) {
    auto d = DecodeKeptAnswer(bad);
    ASSERT_FALSE(d) << bad;
    EXPECT_EQ(d.error().code, ErrorCode::kInternal) << bad;
  }
}

TEST(CanonicalDraft, TellsDraftsApart) {
  InstanceDraft a;
  a.definition_id = {"def-1"};
  a.owner_id = "o";
  a.timeslot_start = FromUnixMillis(1000);
  a.timeslot_end = FromUnixMillis(2000);
  InstanceDraft b = a;
  EXPECT_EQ(CanonicalDraft(a), CanonicalDraft(b));
  // The text is what digests were taken of: it must not change with the code.
  EXPECT_EQ(CanonicalDraft(a),
            R"({"definition_id":"def-1","definition_version":null,"owner_id":"o","reservation_id":null,)"
            R"("timeslot_end":2000,"timeslot_start":1000})");
  b.assessment = AssessmentRef{"s", "p"};
  EXPECT_NE(CanonicalDraft(a), CanonicalDraft(b));
  b = a;
  b.definition_version = "1.0.0";
  EXPECT_NE(CanonicalDraft(a), CanonicalDraft(b));
}

TEST(EventReceipt, AcceptedOrRefused) {
  EXPECT_EQ(ToJson(EventReceipt{.id = "e1", .status = 202, .outcome = "duplicate"}),
            (json{{"id", "e1"}, {"status", 202}, {"outcome", "duplicate"}}));
  EXPECT_EQ(ToJson(EventReceipt{.id = "e2", .status = 422, .title = "Unprocessable", .detail = "bad", .field = "data.x"}),
            (json{{"id", "e2"}, {"status", 422}, {"title", "Unprocessable"}, {"detail", "bad"}, {"field", "data.x"}}));
  EXPECT_FALSE(ToJson(EventReceipt{.id = "e3", .status = 409, .title = "Conflict", .detail = "no"}).contains("field"));
  const json batch = ToJson(std::vector<EventReceipt>{{.id = "a", .outcome = "applied"}, {.id = "b", .status = 409}});
  ASSERT_EQ(batch["results"].size(), 2u);
  EXPECT_EQ(batch["results"][0]["id"], "a");
  EXPECT_EQ(batch["results"][1]["status"], 409);
}

TEST(ScalingData, EachDecisionHasItsFields) {
  const Timestamp at = FromUnixMillis(0);
  EXPECT_EQ(ToJson(ScaleUpRequested{"w1", "m5", "2 pending", 2}, at),
            (json{{"worker_id", "w1"}, {"template", "m5"}, {"reason", "2 pending"}, {"pending_instances", 2},
                  {"timestamp", "1970-01-01T00:00:00.000Z"}}));
  EXPECT_EQ(ToJson(ScaleUpCompleted{"w1", "m5", "h1"}, at)["hostname"], "h1");
  EXPECT_EQ(ToJson(ScaleDownRequested{"w1", "idle"}, at)["reason"], "idle");
  EXPECT_EQ(ToJson(ScaleDownCompleted{"w1"}, at).size(), 2u);
}

TEST(Overview, NamesEveryStateAndANullWorkerForAStuckLabletWithoutOne) {
  Overview o;
  o.computed_at = FromUnixMillis(1'000);
  o.total = 3;
  o.per_state[domain::InstanceState::kScheduled] = 2;
  o.per_state[domain::InstanceState::kPending] = 1;
  o.stuck = {{"i1", domain::InstanceState::kScheduled, FromUnixMillis(0), "alice", ""}};
  o.stuck_total = 4;
  o.per_worker["w1"] = 2;
  const auto j = ToJson(o);
  EXPECT_EQ(j["computed_at"], "1970-01-01T00:00:01.000Z");
  EXPECT_EQ(j["per_state"].size(), 10u);
  EXPECT_EQ(j["per_state"]["SCHEDULED"], 2);
  EXPECT_EQ(j["per_state"]["RUNNING"], 0);
  EXPECT_EQ(j["stuck"]["total"], 4);
  EXPECT_EQ(j["stuck"]["items"][0]["state"], "SCHEDULED");
  EXPECT_TRUE(j["stuck"]["items"][0]["worker_id"].is_null());
  EXPECT_EQ(j["workers"], nlohmann::json::parse(R"([{"worker_id":"w1","lablets":2}])"));
}
}  // namespace
}  // namespace ccm::wire
