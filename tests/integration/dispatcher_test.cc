// The dispatcher against a real SQLite outbox, with a scripted sink and a fake clock.
#include <gtest/gtest.h>

#include <deque>

#include <prometheus/text_serializer.h>

#include "app/dispatcher.h"
#include "app/event_service.h"
#include "metrics/metrics.h"
#include "ports/event_sink.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "runtime/circuit_breaker.h"
#include "store/memory/memory_store.h"
#include "support/fake_clock.h"

namespace ccm {
namespace {

using namespace std::chrono_literals;
using ports::DeliveryOutcome;
using ports::DeliveryState;

// Answers with scripted outcomes (then success) and records what it was sent.
class ScriptedSink : public ports::EventSink {
 public:
  explicit ScriptedSink(int batch = 1) : batch_(batch) {}
  int MaxBatch() const override { return batch_; }
  DeliveryOutcome Send(std::span<const ports::OutboxEvent> events) override {
    ++calls;
    DeliveryOutcome o{DeliveryOutcome::kDelivered, 202, "", {}};
    if (!script.empty()) {
      o = script.front();
      script.pop_front();
    }
    if (o.kind == DeliveryOutcome::kDelivered)
      for (const auto& e : events) received.push_back(e);
    return o;
  }
  std::deque<DeliveryOutcome> script;
  std::vector<ports::OutboxEvent> received;
  int calls = 0;

 private:
  int batch_;
};

DeliveryOutcome Retry(int status, std::optional<std::chrono::milliseconds> after = {}) {
  return {DeliveryOutcome::kRetry, status, "", after};
}

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<store::MemoryStore>();
    options_.base_backoff = 100ms;
    options_.max_backoff = 1000ms;
    options_.max_attempts = 4;
    options_.breaker_threshold = 3;
    options_.breaker_cooldown = 5000ms;
  }

  void Publish(const std::string& id, const std::string& subject) {
    ports::Changes c;
    c.events = {{id, subject, "ccm.test", clock_.Now(), "{\"id\":\"" + id + "\"}"}};
    ASSERT_TRUE(store_->Commit(c));
  }

  ports::OutboxRecord Record(const std::string& id) { return *store_->GetEvent(id); }

  std::unique_ptr<store::MemoryStore> store_;
  testing::FakeClock clock_{FromUnixMillis(1'800'000'000'000)};
  app::DispatcherOptions options_;
  app::DispatchMetrics metrics_;
};

TEST_F(DispatcherTest, DeliversInCommitOrderAndRecordsIt) {
  ScriptedSink sink;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  for (int n = 0; n < 5; ++n) Publish("e" + std::to_string(n), n % 2 ? "a" : "b");
  EXPECT_EQ(*d.RunOnce(), 5);
  ASSERT_EQ(sink.received.size(), 5u);
  for (int n = 0; n < 5; ++n) EXPECT_EQ(sink.received[n].id, "e" + std::to_string(n));
  EXPECT_EQ(Record("e3").state, DeliveryState::kDelivered);
  EXPECT_EQ(Record("e3").delivered_at, clock_.Now());
  EXPECT_EQ(*d.RunOnce(), 0);  // nothing twice
  EXPECT_EQ(metrics_.delivered.load(), 5u);
}

TEST_F(DispatcherTest, AFailedEventHoldsBackItsSubjectOnly) {
  ScriptedSink sink;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("a1", "a");
  Publish("b1", "b");
  Publish("a2", "a");
  sink.script = {Retry(500)};  // a1 fails
  EXPECT_EQ(*d.RunOnce(), 1);  // b1 goes; a2 waits behind a1
  ASSERT_EQ(sink.received.size(), 1u);
  EXPECT_EQ(sink.received[0].id, "b1");
  EXPECT_EQ(Record("a1").attempts, 1);
  EXPECT_EQ(Record("a1").last_error, "HTTP 500");
  EXPECT_EQ(Record("a2").state, DeliveryState::kPending);
  EXPECT_EQ(*d.RunOnce(), 0);  // a1 is backing off, so a2 too
  clock_.Advance(200ms);       // past the first backoff ceiling (100 ms)
  EXPECT_EQ(*d.RunOnce(), 2);
  EXPECT_EQ(sink.received[1].id, "a1");
  EXPECT_EQ(sink.received[2].id, "a2");
  EXPECT_EQ(metrics_.retried.load(), 1u);
}

TEST_F(DispatcherTest, HonoursRetryAfter) {
  ScriptedSink sink;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("e1", "s");
  sink.script = {Retry(429, 3000ms)};
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(Record("e1").next_attempt_at, clock_.Now() + 3000ms);
  clock_.Advance(2999ms);
  EXPECT_EQ(*d.RunOnce(), 0);
  clock_.Advance(1ms);
  EXPECT_EQ(*d.RunOnce(), 1);
}

TEST_F(DispatcherTest, AFinalRefusalDeadLettersAtOnceAndHoldsTheRestOfItsSubject) {
  ScriptedSink sink;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("e1", "s");
  Publish("e2", "s");
  sink.script = {{DeliveryOutcome::kFinal, 400, "bad event", {}}};
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(Record("e1").state, DeliveryState::kDead);
  EXPECT_EQ(Record("e1").last_error, "HTTP 400: bad event");
  EXPECT_EQ(Record("e2").state, DeliveryState::kHeld);
  EXPECT_EQ(sink.calls, 1);
  EXPECT_EQ(metrics_.dead_lettered.load(), 1u);
}

TEST_F(DispatcherTest, ASubjectWaitsBehindItsDeadLetterWhileOthersFlow) {
  ScriptedSink sink;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("a1", "a");
  Publish("b1", "b");
  Publish("a2", "a");
  Publish("a3", "a");
  sink.script = {{DeliveryOutcome::kFinal, 400, "", {}}};  // a1 is refused for good
  EXPECT_EQ(*d.RunOnce(), 1);
  ASSERT_EQ(sink.received.size(), 1u);
  EXPECT_EQ(sink.received[0].id, "b1");
  EXPECT_EQ(Record("a1").state, DeliveryState::kDead);
  EXPECT_EQ(Record("a2").state, DeliveryState::kHeld);
  EXPECT_EQ(Record("a3").state, DeliveryState::kHeld);

  // Later events of the held subject are held as they come; the other subject goes on.
  Publish("a4", "a");
  Publish("b2", "b");
  EXPECT_EQ(Record("a4").state, DeliveryState::kHeld);
  clock_.Advance(10min);
  EXPECT_EQ(*d.RunOnce(), 1);
  EXPECT_EQ(sink.received.back().id, "b2");
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(store_->GetOutboxStats()->held, 3);
  const auto families = metrics::AppCollector({.outbox = [this] { return store_->GetOutboxStats(); }, .dispatch = &metrics_}).Read();
  ASSERT_TRUE(families);
  EXPECT_NE(prometheus::TextSerializer().Serialize(*families).find("ccm_outbox_held_events 3\n"), std::string::npos);
}

TEST_F(DispatcherTest, ReplayingADeadLetterDeliversItsSubjectInOrder) {
  ScriptedSink sink;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  app::EventService events(*store_, *store_, clock_, nullptr);
  Publish("a1", "a");
  Publish("a2", "a");
  Publish("b1", "b");
  Publish("a3", "a");
  sink.script = {{DeliveryOutcome::kFinal, 400, "", {}}};
  EXPECT_EQ(*d.RunOnce(), 1);  // b1
  ASSERT_TRUE(events.Replay("a1"));
  EXPECT_EQ(Record("a2").state, DeliveryState::kPending);
  EXPECT_EQ(Record("a3").state, DeliveryState::kPending);
  EXPECT_EQ(*d.RunOnce(), 3);
  std::vector<std::string> ids;
  for (const auto& e : sink.received) ids.push_back(e.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"b1", "a1", "a2", "a3"}));
  EXPECT_EQ(store_->GetOutboxStats()->held, 0);
}

TEST_F(DispatcherTest, ReplayingEveryDeadLetterKeepsEachSubjectInOrder) {
  ScriptedSink sink(4);  // batch: one refusal kills a1 and a2 together
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  app::EventService events(*store_, *store_, clock_, nullptr);
  for (const char* id : {"a1", "a2", "b1"}) Publish(id, std::string(1, id[0]));
  sink.script = {{DeliveryOutcome::kFinal, 400, "", {}}};
  EXPECT_EQ(*d.RunOnce(), 0);
  Publish("a3", "a");
  Publish("b2", "b");
  EXPECT_EQ(Record("a3").state, DeliveryState::kHeld);
  EXPECT_EQ(Record("b2").state, DeliveryState::kHeld);
  // The later dead letter alone stays behind the earlier one.
  ASSERT_TRUE(events.Replay("a2"));
  EXPECT_EQ(Record("a2").state, DeliveryState::kHeld);
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(*events.ReplayAll(), 2);  // a1, b1
  EXPECT_EQ(*d.RunOnce(), 5);
  std::vector<std::string> ids;
  for (const auto& e : sink.received) ids.push_back(e.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"a1", "a2", "b1", "a3", "b2"}));
}

TEST_F(DispatcherTest, AttemptLimitDeadLettersThenReplayDelivers) {
  ScriptedSink sink;
  options_.breaker_threshold = 100;  // this test is about attempts, not the breaker
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("e1", "s");
  sink.script = {Retry(503), Retry(503), Retry(503), Retry(503)};
  for (int n = 0; n < 4; ++n) {
    (void)d.RunOnce();
    clock_.Advance(2000ms);
  }
  auto dead = Record("e1");
  EXPECT_EQ(dead.state, DeliveryState::kDead);
  EXPECT_EQ(dead.attempts, 4);
  EXPECT_NE(dead.last_error.find("attempt limit"), std::string::npos) << dead.last_error;
  EXPECT_EQ(*d.RunOnce(), 0);

  app::EventService events(*store_, *store_, clock_, nullptr);
  auto replayed = events.Replay("e1");
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->state, DeliveryState::kPending);
  EXPECT_EQ(replayed->attempts, 0);
  EXPECT_EQ(events.Replay("e1").error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(events.Replay("nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(*d.RunOnce(), 1);
}

TEST_F(DispatcherTest, EventsOlderThanTheAgeLimitAreDeadLettered) {
  ScriptedSink sink;
  options_.max_age = 60'000ms;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("e1", "s");
  clock_.Advance(61'000ms);
  sink.script = {Retry(500)};
  (void)d.RunOnce();
  EXPECT_EQ(Record("e1").state, DeliveryState::kDead);
  EXPECT_NE(Record("e1").last_error.find("age limit"), std::string::npos);
}

TEST_F(DispatcherTest, ARetryAfterLongerThanTheCapCountsAsTheCap) {
  ScriptedSink sink;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);  // the default cap: 5 minutes
  Publish("e1", "s");
  sink.script = {Retry(429, std::chrono::hours(24 * 365))};
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(Record("e1").next_attempt_at, clock_.Now() + 5min);
  clock_.Advance(5min);
  EXPECT_EQ(*d.RunOnce(), 1);
}

TEST_F(DispatcherTest, AnEventPastTheAgeLimitIsDeadLetteredWhileItWaits) {
  ScriptedSink sink;
  options_.max_age = 60s;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("e1", "s");
  Publish("e2", "s");
  sink.script = {Retry(429, 4min)};
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(Record("e1").next_attempt_at, clock_.Now() + 60s);  // not past the age limit
  clock_.Advance(59s);
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(Record("e1").state, DeliveryState::kPending);
  clock_.Advance(1s);
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(sink.calls, 1);  // not tried again: given up on
  EXPECT_EQ(Record("e1").state, DeliveryState::kDead);
  EXPECT_NE(Record("e1").last_error.find("HTTP 429"), std::string::npos) << Record("e1").last_error;
  EXPECT_NE(Record("e1").last_error.find("age limit"), std::string::npos) << Record("e1").last_error;
  EXPECT_EQ(Record("e2").state, DeliveryState::kHeld);
}

TEST_F(DispatcherTest, AProbeThatOnlyDeadLettersAnOldEventDoesNotJamTheBreaker) {
  ScriptedSink sink;
  options_.breaker_threshold = 1;
  options_.max_age = 60s;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("e1", "s1");
  sink.script = {Retry(500)};
  EXPECT_EQ(*d.RunOnce(), 0);  // the breaker opens
  Publish("e2", "s2");
  clock_.Advance(61s);
  EXPECT_EQ(*d.RunOnce(), 0);  // the probe round finds e1 past its age: dead, nothing sent
  EXPECT_EQ(Record("e1").state, DeliveryState::kDead);
  EXPECT_EQ(sink.calls, 1);
  EXPECT_EQ(*d.RunOnce(), 1);  // e2 goes
}

TEST_F(DispatcherTest, TheBreakerOpensStopsSendingAndProbesBeforeClosing) {
  ScriptedSink sink;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  for (int n = 0; n < 10; ++n) Publish("e" + std::to_string(n), "s" + std::to_string(n));
  sink.script = {Retry(500), Retry(500), Retry(500)};
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(sink.calls, 3);  // opened after 3 failures in a row: the other 7 were not tried
  EXPECT_EQ(metrics_.breaker_state.load(), 1);
  clock_.Advance(1000ms);
  EXPECT_EQ(*d.RunOnce(), 0);
  EXPECT_EQ(sink.calls, 3);  // open: nothing sent
  clock_.Advance(5000ms);
  sink.script = {Retry(500)};
  EXPECT_EQ(*d.RunOnce(), 0);  // half-open: one probe, which fails
  EXPECT_EQ(sink.calls, 4);
  EXPECT_EQ(metrics_.breaker_state.load(), 1);
  clock_.Advance(5000ms);
  EXPECT_EQ(*d.RunOnce(), 1);  // the probe succeeds (one event) and closes it
  EXPECT_EQ(metrics_.breaker_state.load(), 0);
  clock_.Advance(5000ms);
  EXPECT_EQ(*d.RunOnce(), 9);
}

TEST_F(DispatcherTest, BatchModeSendsManyPerRequest) {
  ScriptedSink sink(4);
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  for (int n = 0; n < 10; ++n) Publish("e" + std::to_string(n), "s");
  EXPECT_EQ(*d.RunOnce(), 10);
  EXPECT_EQ(sink.calls, 3);  // 4 + 4 + 2
}

TEST(CircuitBreaker, ClosedOpenHalfOpen) {
  runtime::CircuitBreaker b(2, std::chrono::milliseconds(100));
  const Timestamp t0 = FromUnixMillis(0);
  EXPECT_TRUE(b.Allow(t0));
  b.OnFailure(t0);
  EXPECT_EQ(b.state(), runtime::CircuitBreaker::State::kClosed);
  b.OnFailure(t0);
  EXPECT_EQ(b.state(), runtime::CircuitBreaker::State::kOpen);
  EXPECT_FALSE(b.Allow(t0 + std::chrono::milliseconds(99)));
  EXPECT_TRUE(b.Allow(t0 + std::chrono::milliseconds(100)));   // the probe
  EXPECT_FALSE(b.Allow(t0 + std::chrono::milliseconds(101)));  // only one
  b.OnSuccess();
  EXPECT_EQ(b.state(), runtime::CircuitBreaker::State::kClosed);
  EXPECT_TRUE(b.Allow(t0 + std::chrono::milliseconds(102)));
}

}  // namespace
}  // namespace ccm
