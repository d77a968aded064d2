// The dispatcher against a real SQLite outbox, with a scripted sink and a fake clock.
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

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
#include "support/stale_commits.h"
#include "support/wait.h"

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
    options_.concurrency = 1;  // the scripted sink answers in call order: one request at a time
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

TEST_F(DispatcherTest, AProbeAnsweredWithAFinalRefusalClosesTheBreaker) {
  ScriptedSink sink;
  options_.breaker_threshold = 1;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  Publish("e1", "s1");
  Publish("e2", "s2");
  Publish("e3", "s3");
  sink.script = {Retry(500)};
  EXPECT_EQ(*d.RunOnce(), 0);  // the breaker opens
  EXPECT_EQ(metrics_.breaker_state.load(), 1);
  clock_.Advance(5000ms);
  sink.script = {{DeliveryOutcome::kFinal, 400, "bad event", {}}};
  EXPECT_EQ(*d.RunOnce(), 0);  // the probe: e1, refused for good; the sink answered, so it is up
  EXPECT_EQ(sink.calls, 2);
  EXPECT_EQ(Record("e1").state, DeliveryState::kDead);
  EXPECT_EQ(metrics_.breaker_state.load(), 0);
  EXPECT_EQ(*d.RunOnce(), 2);  // without the answer closing it, no probe would ever go out again
  EXPECT_EQ(sink.calls, 4);
}

TEST_F(DispatcherTest, BatchModeSendsManyPerRequest) {
  ScriptedSink sink(4);
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  for (int n = 0; n < 10; ++n) Publish("e" + std::to_string(n), "s");
  EXPECT_EQ(*d.RunOnce(), 10);
  EXPECT_EQ(sink.calls, 3);  // 4 + 4 + 2
}

// A sink for several lanes: records every call (which thread, which events), counts the
// requests in flight, and answers through `answer` (delivered when unset). The first call
// waits (up to 10 s) for a second one to be in flight, so a test can tell that requests
// overlap without relying on timing; `hold` keeps every call waiting until Release.
class LaneSink : public ports::EventSink {
 public:
  explicit LaneSink(int batch = 1) : batch_(batch) {}
  int MaxBatch() const override { return batch_; }
  DeliveryOutcome Send(std::span<const ports::OutboxEvent> events) override {
    std::unique_lock lock(mu_);
    const int call = calls_++;
    max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    changed_.notify_all();
    if (call == 0 && rendezvous) changed_.wait_for(lock, 10s, [&] { return max_in_flight_ >= 2; });
    changed_.wait(lock, [&] { return !hold_; });
    DeliveryOutcome o{DeliveryOutcome::kDelivered, 202, "", {}};
    if (answer) o = answer(events);
    std::vector<std::string> ids;
    for (const auto& e : events) ids.push_back(e.id);
    sent_.push_back({std::this_thread::get_id(), ids});
    if (o.kind == DeliveryOutcome::kDelivered)
      for (const auto& e : events) delivered_[e.subject].push_back(e.id);
    --in_flight_;
    changed_.notify_all();
    return o;
  }
  void Hold() {
    std::lock_guard lock(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard lock(mu_);
    hold_ = false;
    changed_.notify_all();
  }
  // Waits (up to 10 s) until `n` calls are in flight.
  bool InFlight(int n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, 10s, [&] { return in_flight_ >= n; });
  }
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  int max_in_flight() {
    std::lock_guard lock(mu_);
    return max_in_flight_;
  }
  // Ids delivered, by subject, in the order the sink took them.
  std::map<std::string, std::vector<std::string>> delivered() {
    std::lock_guard lock(mu_);
    return delivered_;
  }
  struct Call {
    std::thread::id thread;
    std::vector<std::string> ids;
  };
  std::vector<Call> sent() {
    std::lock_guard lock(mu_);
    return sent_;
  }

  bool rendezvous = true;
  // Called under the sink's lock.
  std::function<DeliveryOutcome(std::span<const ports::OutboxEvent>)> answer;

 private:
  int batch_;
  std::mutex mu_;
  std::condition_variable changed_;
  bool hold_ = false;
  int calls_ = 0;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  std::map<std::string, std::vector<std::string>> delivered_;
  std::vector<Call> sent_;
};

class ConcurrentDispatcherTest : public DispatcherTest {
 protected:
  // `n` events over `subjects` subjects, ids that sort in commit order.
  std::map<std::string, std::vector<std::string>> PublishMany(int n, int subjects) {
    std::map<std::string, std::vector<std::string>> by_subject;
    for (int k = 0; k < n; ++k) {
      char id[16];
      std::snprintf(id, sizeof id, "e%05d", k);
      const std::string subject = "s" + std::to_string(k % subjects);
      Publish(id, subject);
      by_subject[subject].push_back(id);
    }
    return by_subject;
  }
};

TEST_F(ConcurrentDispatcherTest, SendsOnSeveralLanesAtOnceNeverMoreThanTheSettingInOrderPerSubject) {
  LaneSink sink;
  options_.concurrency = 3;
  options_.round_size = 50;  // several rounds
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  const auto published = PublishMany(200, 17);
  int delivered = 0;
  for (int round = 0; round < 10 && delivered < 200; ++round) delivered += *d.RunOnce();
  EXPECT_EQ(delivered, 200);
  EXPECT_EQ(metrics_.delivered.load(), 200u);
  EXPECT_GE(sink.max_in_flight(), 2);
  EXPECT_LE(sink.max_in_flight(), 3);
  EXPECT_EQ(sink.delivered(), published);  // each subject exactly once, in seq order
  EXPECT_EQ(store_->GetOutboxStats()->pending, 0);
  EXPECT_EQ(Record("e00199").state, DeliveryState::kDelivered);
}

TEST_F(ConcurrentDispatcherTest, OneLaneSendsOneRequestAtATime) {
  LaneSink sink;
  sink.rendezvous = false;
  options_.concurrency = 1;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  const auto published = PublishMany(60, 7);
  EXPECT_EQ(*d.RunOnce(), 60);
  EXPECT_EQ(sink.max_in_flight(), 1);
  std::vector<std::string> order;
  for (const auto& call : sink.sent()) order.insert(order.end(), call.ids.begin(), call.ids.end());
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));  // the round's order, as before lanes
  EXPECT_EQ(sink.delivered(), published);
}

TEST_F(ConcurrentDispatcherTest, FailuresStopOnlyTheirSubjectAndRetriesKeepItsOrder) {
  LaneSink sink;
  options_.concurrency = 4;
  options_.breaker_threshold = 1'000'000;  // about order, not the breaker
  options_.max_attempts = 1000;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  const auto published = PublishMany(300, 23);
  // Every subject but s0 fails now and then (a fixed pattern of calls); s0 fails every time
  // until the tenth round.
  std::map<std::string, int> tries;
  int round = 0;
  sink.answer = [&](std::span<const ports::OutboxEvent> events) {
    const auto& e = events.front();
    const int n = ++tries[e.id];
    if (e.subject == "s0" && round < 10) return Retry(503);
    if ((std::hash<std::string>{}(e.id) + static_cast<size_t>(n)) % 4 == 0) return Retry(500);
    return DeliveryOutcome{DeliveryOutcome::kDelivered, 202, "", {}};
  };
  int delivered = 0;
  for (; round < 200 && delivered < 300; ++round) {
    delivered += *d.RunOnce();
    if (round == 0) {
      EXPECT_GT(delivered, 0);  // the others went on while s0 failed
      EXPECT_EQ(sink.delivered().count("s0"), 0u);
    }
    clock_.Advance(2000ms);  // past any backoff (1 s at most here)
  }
  EXPECT_EQ(delivered, 300);
  EXPECT_GT(metrics_.retried.load(), 10u);
  EXPECT_EQ(sink.delivered(), published);  // per subject: each once, in seq order, s0 too
}

TEST_F(ConcurrentDispatcherTest, TheBreakerOpeningStopsEveryLane) {
  LaneSink sink;
  sink.answer = [](std::span<const ports::OutboxEvent>) { return Retry(500); };
  options_.concurrency = 4;
  options_.breaker_threshold = 3;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  PublishMany(100, 100);  // one event per subject: only the breaker stops them
  EXPECT_EQ(*d.RunOnce(), 0);
  // Three failures open it; the lanes' requests already out end, and no lane sends another.
  EXPECT_GE(sink.calls(), 3);
  EXPECT_LE(sink.calls(), 3 + options_.concurrency - 1);
  EXPECT_EQ(metrics_.breaker_state.load(), 1);
  int untried = 0;
  for (int k = 0; k < 100; ++k) {
    char id[16];
    std::snprintf(id, sizeof id, "e%05d", k);
    if (Record(id).attempts == 0) ++untried;
  }
  EXPECT_EQ(untried, 100 - sink.calls());
  const int calls = sink.calls();
  clock_.Advance(1000ms);
  EXPECT_EQ(*d.RunOnce(), 0);  // open: nothing sent
  EXPECT_EQ(sink.calls(), calls);
}

TEST_F(ConcurrentDispatcherTest, AStopEndsTheRoundAfterTheRequestsInFlightAndRecordsThem) {
  LaneSink sink;
  options_.concurrency = 4;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  PublishMany(80, 8);
  sink.Hold();
  Result<int> delivered = 0;
  std::thread round([&] { delivered = d.RunOnce(); });
  ASSERT_TRUE(sink.InFlight(4));
  d.RequestStop();
  sink.Release();
  round.join();
  ASSERT_TRUE(delivered);
  EXPECT_EQ(*delivered, 4);  // the four requests out when the stop came; no lane sent more
  EXPECT_EQ(sink.calls(), 4);
  size_t received = 0;
  for (const auto& [subject, ids] : sink.delivered()) {
    received += ids.size();
    for (const auto& id : ids) EXPECT_EQ(Record(id).state, DeliveryState::kDelivered) << id;
  }
  EXPECT_EQ(received, 4u);
  EXPECT_EQ(store_->GetOutboxStats()->pending, 76);  // the rest untouched, for the next round
}

TEST_F(ConcurrentDispatcherTest, BatchesFormPerLane) {
  LaneSink sink(5);
  options_.concurrency = 3;
  options_.round_size = 1000;
  app::Dispatcher d(*store_, *store_, sink, clock_, options_, metrics_);
  const auto published = PublishMany(120, 10);
  EXPECT_EQ(*d.RunOnce(), 120);  // one round
  EXPECT_EQ(sink.delivered(), published);
  // A subject's events all go from one lane: every batch that holds one comes from one thread.
  std::map<std::string, std::set<std::thread::id>> threads_of;
  std::map<std::string, std::string> subject_of;
  for (const auto& [subject, ids] : published)
    for (const auto& id : ids) subject_of[id] = subject;
  for (const auto& call : sink.sent()) {
    EXPECT_LE(call.ids.size(), 5u);
    for (const auto& id : call.ids) threads_of[subject_of[id]].insert(call.thread);
  }
  for (const auto& [subject, threads] : threads_of) EXPECT_EQ(threads.size(), 1u) << subject;
  std::set<std::thread::id> lanes;
  for (const auto& call : sink.sent()) lanes.insert(call.thread);
  EXPECT_GE(lanes.size(), 2u);
  EXPECT_LE(lanes.size(), 3u);
}

// Full rounds follow one another, each sent while the one before's outcomes are committed.
class PipelinedDispatcherTest : public ConcurrentDispatcherTest {
 protected:
  void SetUp() override {
    ConcurrentDispatcherTest::SetUp();
    options_.concurrency = 2;
    options_.round_size = 10;
    options_.breaker_threshold = 1'000'000;  // about rounds, not the breaker
  }
  // The store's commits from here on go through `gated_`, which wraps it; the dispatcher reads
  // the outbox from the store itself (`memory_`).
  void Gate() {
    memory_ = store_.get();
    gated_ = std::make_unique<testing::StaleCommits>(std::move(store_));
  }
  // The first commit of outcomes waits (up to 10 s) until the sink has been called more than
  // `calls` times, that is, until the next round is out; says in `overlapped` whether it was.
  void HoldFirstOutcomesUntilCalls(LaneSink& sink, int calls) {
    gated_->before_commit = [this, &sink, calls](const ports::Changes& c) {
      if (c.deliveries.empty() || outcome_commits_++ > 0) return;
      overlapped_ = testing::Eventually([&] { return sink.calls() > calls; }, 10s);
    };
  }
  ports::OutboxRecord MemoryRecord(const std::string& id) { return *memory_->GetEvent(id); }

  store::MemoryStore* memory_ = nullptr;
  std::unique_ptr<testing::StaleCommits> gated_;
  std::atomic<int> outcome_commits_{0};
  std::atomic<bool> overlapped_{false};
};

TEST_F(PipelinedDispatcherTest, AFullRoundIsSentWhileTheOneBeforeIsCommitted) {
  LaneSink sink;
  sink.rendezvous = false;
  const auto published = PublishMany(35, 4);
  Gate();
  HoldFirstOutcomesUntilCalls(sink, 10);  // the first round is ten calls
  app::Dispatcher d(*gated_, *memory_, sink, clock_, options_, metrics_);
  EXPECT_EQ(*d.RunOnce(), 35);  // four rounds, the last one short
  EXPECT_TRUE(overlapped_.load());
  EXPECT_EQ(sink.calls(), 35);  // none twice: a round leaves out the one before's events
  EXPECT_EQ(sink.delivered(), published);
  EXPECT_EQ(outcome_commits_.load(), 4);  // every round's outcomes, recorded by the return
  EXPECT_EQ(memory_->GetOutboxStats()->pending, 0);
  EXPECT_EQ(MemoryRecord("e00034").state, DeliveryState::kDelivered);
}

TEST_F(PipelinedDispatcherTest, ASubjectStoppedInARoundIsLeftOutOfTheNextWhileItsOutcomesAreCommitted) {
  LaneSink sink;
  sink.rendezvous = false;
  const auto published = PublishMany(40, 3);  // s1: e00001, e00004, e00007, e00010, ...
  bool failed = false;  // e00001 fails once
  sink.answer = [&failed](std::span<const ports::OutboxEvent> events) {
    if (events.front().id == "e00001" && !std::exchange(failed, true)) return Retry(503);
    return DeliveryOutcome{DeliveryOutcome::kDelivered, 202, "", {}};
  };
  Gate();
  // The first round: e00000 to e00009 less s1's e00004 and e00007, which wait behind e00001.
  HoldFirstOutcomesUntilCalls(sink, 8);
  app::Dispatcher d(*gated_, *memory_, sink, clock_, options_, metrics_);
  // Until e00001's failure is committed the store has it pending and due, so the second round
  // leaves s1 out itself: of e00010 to e00019 it sends the six of s0 and s2, and being short,
  // is the last.
  EXPECT_EQ(*d.RunOnce(), 7 + 6);
  EXPECT_TRUE(overlapped_.load());
  EXPECT_EQ(sink.delivered().count("s1"), 0u);
  EXPECT_EQ(MemoryRecord("e00001").attempts, 1);
  EXPECT_EQ(MemoryRecord("e00004").state, DeliveryState::kPending);
  clock_.Advance(2000ms);  // past the backoff
  EXPECT_EQ(*d.RunOnce(), 40 - 13);
  EXPECT_EQ(sink.delivered(), published);  // s1 in order, each once
}

TEST_F(PipelinedDispatcherTest, ASubjectDeadLetteredInARoundIsLeftOutOfTheNextAndHeldOnceCommitted) {
  LaneSink sink;
  sink.rendezvous = false;
  PublishMany(40, 3);  // s1: e00001, e00004, e00007, e00010, ...
  sink.answer = [](std::span<const ports::OutboxEvent> events) {
    if (events.front().id == "e00001") return DeliveryOutcome{DeliveryOutcome::kFinal, 400, "", {}};
    return DeliveryOutcome{DeliveryOutcome::kDelivered, 202, "", {}};
  };
  Gate();
  HoldFirstOutcomesUntilCalls(sink, 8);
  app::Dispatcher d(*gated_, *memory_, sink, clock_, options_, metrics_);
  const auto delivered = d.RunOnce();
  ASSERT_TRUE(delivered);
  EXPECT_EQ(*delivered, 7 + 6);  // as with a retry: the second round sends only s0's and s2's
  EXPECT_TRUE(overlapped_.load());
  EXPECT_EQ(sink.delivered().count("s1"), 0u);
  EXPECT_EQ(MemoryRecord("e00001").state, DeliveryState::kDead);
  // Once the dead letter is committed, the store holds the subject's later events.
  EXPECT_EQ(MemoryRecord("e00004").state, DeliveryState::kHeld);
  EXPECT_EQ(MemoryRecord("e00010").state, DeliveryState::kHeld);
  EXPECT_EQ(memory_->GetOutboxStats()->held, 12);
}

TEST_F(PipelinedDispatcherTest, AFailedCommitIsNotFollowedByTheNextRoundsSoBothAreSentAgainInOrder) {
  LaneSink sink;
  sink.rendezvous = false;
  PublishMany(20, 4);
  Gate();
  HoldFirstOutcomesUntilCalls(sink, 10);
  gated_->RefuseNext(1);  // the first round's outcomes
  app::Dispatcher d(*gated_, *memory_, sink, clock_, options_, metrics_);
  EXPECT_FALSE(d.RunOnce());
  EXPECT_TRUE(overlapped_.load());
  EXPECT_EQ(sink.calls(), 20);  // the second round went out while the first was committed...
  EXPECT_EQ(gated_->passed(), 0);  // ...but its outcomes were not committed after the refusal
  EXPECT_EQ(memory_->GetOutboxStats()->pending, 20);
  EXPECT_EQ(*d.RunOnce(), 20);  // everything again
  for (const auto& [subject, ids] : sink.delivered()) {
    ASSERT_EQ(ids.size(), 10u) << subject;  // the subject's five events, twice over, in order
    for (size_t k = 0; k < 5; ++k) EXPECT_EQ(ids[k], ids[k + 5]) << subject;
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.begin() + 5)) << subject;
  }
  EXPECT_EQ(memory_->GetOutboxStats()->pending, 0);
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
