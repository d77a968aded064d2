// A write that loses a race to another writer of the same lablet, over real HTTP on a real
// SQLite file: its commit is refused as stale (tests/support/stale_commits.h stands for the
// other writer), the write is decided again on a fresh read and lands once; a move that named
// the version it expects is refused instead; one that keeps losing gets 503 and writes nothing.
// And what a redelivery costs: its commit, not a read of its key first.
#include <gtest/gtest.h>

#include "support/collection_event.h"
#include "support/db_snapshot.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/stack.h"
#include "support/stale_commits.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::CollectionCompleted;
using testing::HttpClient;
using testing::HttpResult;

class StaleRetry : public ::testing::Test {
 protected:
  StaleRetry()
      : stack_(testing::StoreKind::kSqlite, nullptr, {}, nullptr, {},
               [this](std::unique_ptr<ports::Store> inner) {
                 auto wrapped = std::make_unique<testing::StaleCommits>(std::move(inner));
                 store_ = wrapped.get();
                 return wrapped;
               }),
        http_(stack_.BaseUrl()) {
    const auto seed = testing::SeedLab(http_, testing::ReadTestData("sample_lab_template.yaml"));
    def_ = seed.definition_id;
    worker_ = seed.worker_id;
  }

  // A new instance moved through the API to each state of `path` in turn.
  std::string Instance(std::initializer_list<const char*> path) {
    json body = {{"definition_id", def_}, {"owner_id", "c"}, {"timeslot_start", "2026-12-01T09:00:00Z"},
                 {"timeslot_end", "2026-12-01T10:00:00Z"}};
    const std::string id = http_.PostJson("/api/v1/instances", body).Json()["id"];
    EXPECT_EQ(http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", worker_}}).status, 200);
    for (const char* to : path)
      EXPECT_EQ(http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", to}}).status, 200) << to;
    return id;
  }
  // One event, structured.
  HttpResult Send(const json& event) {
    return http_.Post("/api/v1/events", event.dump(), "application/cloudevents+json");
  }
  json Get(const std::string& id) { return http_.Get("/api/v1/instances/" + id).Json(); }
  int Outbox(const std::string& type) { return testing::OutboxCount(stack_.DbPath(), type); }
  std::string Snapshot() { return testing::DbSnapshot(stack_.DbPath()); }
  // ccm_events_received_total{outcome="..."} as /metrics serves it.
  std::string Received(const std::string& outcome) {
    const std::string text = http_.Get("/metrics").body;
    const std::string key = "ccm_events_received_total{outcome=\"" + outcome + "\"} ";
    const auto at = text.find(key);
    if (at == std::string::npos) return "absent";
    return text.substr(at + key.size(), text.find('\n', at) - at - key.size());
  }

  testing::StaleCommits* store_ = nullptr;  // set while stack_ is built
  testing::Stack stack_;
  HttpClient http_;
  std::string def_, worker_;
};

// POST /api/v1/events, one event: its queued commit loses, the event is decided again on a
// handler thread and applied once; sent again, it is a duplicate.
TEST_F(StaleRetry, AnEventWhoseCommitLosesIsDecidedAgainAndAppliedOnce) {
  const std::string id = Instance({"INSTANTIATING", "RUNNING", "COLLECTING"});
  const int grading_before = Outbox("ccm.lablet.instance.grading.started");
  store_->RefuseNext(1);
  HttpResult r = Send(CollectionCompleted("e-1", id));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.Json()["outcome"], "applied");
  EXPECT_EQ(store_->refused(), 1);
  EXPECT_EQ(Get(id)["state"], "GRADING");
  EXPECT_EQ(Outbox("ccm.lablet.instance.grading.started"), grading_before + 1);
  EXPECT_EQ(Received("applied"), "1");

  HttpResult again = Send(CollectionCompleted("e-1", id));
  ASSERT_EQ(again.status, 202) << again.body;
  EXPECT_EQ(again.Json()["outcome"], "duplicate");
  EXPECT_EQ(Outbox("ccm.lablet.instance.grading.started"), grading_before + 1);
}

// An event is decided without reading its key: every decision commits the key, and its commit
// fails on a key there already, so a redelivery is a duplicate there and writes nothing. Only
// an event that would be refused reads its key, so that a redelivery of one taken before is a
// duplicate whatever its data or its instance are now.
TEST_F(StaleRetry, OnlyAnEventThatWouldBeRefusedReadsItsKey) {
  const std::string id = Instance({"INSTANTIATING", "RUNNING", "COLLECTING"});
  const int reads_before = store_->key_reads();
  HttpResult applied = Send(CollectionCompleted("k-1", id));
  ASSERT_EQ(applied.status, 202) << applied.body;
  EXPECT_EQ(applied.Json()["outcome"], "applied");
  HttpResult stale = Send(CollectionCompleted("k-2", id));  // GRADING is past a collection
  ASSERT_EQ(stale.status, 202) << stale.body;
  EXPECT_EQ(stale.Json()["outcome"], "stale");
  EXPECT_EQ(store_->key_reads(), reads_before);

  // Both again: their commits find the keys, and nothing is written.
  const std::string before = Snapshot();
  for (const char* event_id : {"k-1", "k-2"}) {
    HttpResult again = Send(CollectionCompleted(event_id, id));
    ASSERT_EQ(again.status, 202) << again.body;
    EXPECT_EQ(again.Json()["outcome"], "duplicate") << event_id;
  }
  EXPECT_EQ(store_->key_reads(), reads_before);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Received("duplicate"), "2");

  // k-1 again, now naming an instance that does not exist: it would be refused, so its key is
  // read, and it is a duplicate. A new event the same way is refused.
  HttpResult redelivered = Send(CollectionCompleted("k-1", "no-such-instance"));
  ASSERT_EQ(redelivered.status, 202) << redelivered.body;
  EXPECT_EQ(redelivered.Json()["outcome"], "duplicate");
  EXPECT_EQ(store_->key_reads(), reads_before + 1);
  HttpResult refused = Send(CollectionCompleted("k-3", "no-such-instance"));
  EXPECT_EQ(refused.status, 422) << refused.body;
  EXPECT_EQ(refused.Json()["code"], "not_found");
  EXPECT_EQ(refused.Json()["field"], "data.instance_id");
  EXPECT_EQ(store_->key_reads(), reads_before + 2);
  EXPECT_EQ(Snapshot(), before);
}

// A batch's events are received in turn: the one whose queued commit loses is decided again
// before the next one. Here the next is the same lablet's score: had it come first, the
// collection would be stale.
TEST_F(StaleRetry, ABatchedEventWhoseCommitLosesIsRetriedInItsTurn) {
  const std::string a = Instance({"INSTANTIATING", "RUNNING", "COLLECTING"});
  const json graded = {{"specversion", "1.0"},
                       {"id", "b-2"},
                       {"source", "assessment"},
                       {"type", "assessment.grading.completed"},
                       {"datacontenttype", "application/json"},
                       {"data", {{"instance_id", a}, {"score", {{"total", 8}, {"max", 10}}}}}};
  store_->RefuseNext(1);
  const json batch = json::array({CollectionCompleted("b-1", a), graded});
  HttpResult r = http_.Post("/api/v1/events", batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(r.status, 202) << r.body;
  const json results = r.Json()["results"];
  ASSERT_EQ(results.size(), 2u) << r.body;
  for (const auto& result : results) EXPECT_EQ(result["outcome"], "applied") << r.body;
  EXPECT_EQ(store_->refused(), 1);
  const json instance = Get(a);
  EXPECT_EQ(instance["state"], "STOPPING");
  EXPECT_EQ(instance["collection"]["collection_id"], "c-b-1") << instance.dump();
}

// A move without an expected version: its queued commit loses, it is decided again and lands
// once (one version further, one event).
TEST_F(StaleRetry, AMoveWhoseCommitLosesIsDecidedAgainAndLandsOnce) {
  const std::string id = Instance({"INSTANTIATING"});
  const int version = Get(id)["version"];
  const int running_before = Outbox("ccm.lablet.instance.running");
  store_->RefuseNext(1);
  HttpResult r = http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", "RUNNING"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["state"], "RUNNING");
  EXPECT_EQ(r.Json()["version"], version + 1);
  EXPECT_EQ(store_->refused(), 1);
  EXPECT_EQ(Get(id)["version"], version + 1);
  EXPECT_EQ(Outbox("ccm.lablet.instance.running"), running_before + 1);
}

// A move that names the version it expects is not decided again: the race it lost is the
// conflict it asked to hear of (409, field version), and nothing is written.
TEST_F(StaleRetry, AMoveThatExpectsAVersionAndLosesIs409AndWritesNothing) {
  const std::string id = Instance({"INSTANTIATING"});
  const int version = Get(id)["version"];
  const std::string before = Snapshot();
  store_->RefuseNext(1);
  HttpResult r = http_.PostJson("/api/internal/instances/" + id + "/transition",
                                {{"to", "RUNNING"}, {"expected_version", version}});
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.ContentType(), "application/problem+json");
  EXPECT_EQ(r.Json()["field"], "version") << r.body;
  EXPECT_EQ(store_->refused(), 1);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Get(id)["state"], "INSTANTIATING");
}

// A write that loses every race it runs (its queued commit, then each of the retries) gets
// 503, try again, and writes nothing: the event is still new when it comes back.
TEST_F(StaleRetry, AWriteThatKeepsLosingIs503AndWritesNothing) {
  const std::string moving = Instance({"INSTANTIATING"});
  const std::string collecting = Instance({"INSTANTIATING", "RUNNING", "COLLECTING"});
  const std::string before = Snapshot();
  constexpr int kQueuedAndRetries = 1 + 64;
  store_->RefuseNext(1000);
  HttpResult move = http_.PostJson("/api/internal/instances/" + moving + "/transition", {{"to", "RUNNING"}});
  ASSERT_EQ(move.status, 503) << move.body;
  EXPECT_EQ(move.ContentType(), "application/problem+json");
  EXPECT_EQ(store_->refused(), kQueuedAndRetries);
  HttpResult event = Send(CollectionCompleted("k-1", collecting));
  ASSERT_EQ(event.status, 503) << event.body;
  EXPECT_EQ(event.ContentType(), "application/problem+json");
  EXPECT_EQ(store_->refused(), 2 * kQueuedAndRetries);
  EXPECT_EQ(Snapshot(), before);

  store_->RefuseNext(0);
  HttpResult later = Send(CollectionCompleted("k-1", collecting));
  ASSERT_EQ(later.status, 202) << later.body;
  EXPECT_EQ(later.Json()["outcome"], "applied");
  EXPECT_EQ(Get(collecting)["state"], "GRADING");
}

}  // namespace
}  // namespace ccm
