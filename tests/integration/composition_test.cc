// compose::Composition: the one wiring of the use cases that `ccm serve`, the tests' stack and
// the fuzz target share. What runs in the background follows from the adapters given; the
// leader's dispatcher delivers what the API's use cases commit.
#include "compose/composition.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "os/clock.h"
#include "store/memory/memory_store.h"
#include "support/fixtures.h"
#include "support/scheduling.h"
#include "support/stack.h"

namespace ccm {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> TaskNames(compose::Composition& c) {
  std::vector<std::string> names;
  for (const auto* t : c.background().tasks()) names.emplace_back(t->name());
  return names;
}

// Records what it is sent, and accepts it.
class RecordingSink : public ports::EventSink {
 public:
  int MaxBatch() const override { return 1; }
  ports::DeliveryOutcome Send(std::span<const ports::OutboxEvent> events) override {
    std::lock_guard lock(mu_);
    for (const auto& e : events) types_.push_back(e.type);
    return {ports::DeliveryOutcome::kDelivered, 202, "", {}};
  }
  std::vector<std::string> types() {
    std::lock_guard lock(mu_);
    return types_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> types_;
};

struct Adapters {
  store::MemoryStore store;
  os::SystemClock clock;
  os::UuidV7Generator ids;
  testing::Unreachable platform;
};

TEST(Composition, WithoutSinkOrCmlTheLeaderOnlyRequestsCollectionsAndKeepsRetention) {
  Adapters a;
  compose::Composition c(
      {.store = a.store, .outbox = a.store, .clock = a.clock, .ids = a.ids, .platform = a.platform}, {});
  EXPECT_EQ(TaskNames(c), (std::vector<std::string>{"collection", "retention"}));
  EXPECT_EQ(c.dispatcher(), nullptr);
}

TEST(Composition, EachAdapterAddsItsWorkInTheOrderItStarts) {
  Adapters a;
  RecordingSink sink;
  testing::NoCml cml;
  compose::Settings settings;
  settings.key_sweep = 10min;
  compose::Composition c(
      {.store = a.store,
       .outbox = a.store,
       .clock = a.clock,
       .ids = a.ids,
       .platform = a.platform,
       .cml = &cml,
       .sink = &sink},
      settings);
  EXPECT_EQ(TaskNames(c), (std::vector<std::string>{"dispatcher", "collection", "key sweep", "retention",
                                                    "reconcilers", "orphan sweep"}));
  ASSERT_NE(c.dispatcher(), nullptr);
}

TEST(Composition, WhatTheApiCommitsTheLeadersDispatcherDeliversOnceWoken) {
  Adapters a;
  RecordingSink sink;
  compose::Settings settings;
  settings.dispatch.idle_poll = 1h;  // only a wake makes it look
  compose::Composition c(
      {.store = a.store, .outbox = a.store, .clock = a.clock, .ids = a.ids, .platform = a.platform, .sink = &sink},
      settings);
  c.background().Start();
  ASSERT_TRUE(c.workers().Register(testing::MakeWorkerDraft("w1"), "test"));
  c.Wake();
  auto outbox = a.store.ListEvents({}, {});
  ASSERT_TRUE(outbox);
  ASSERT_FALSE(outbox->items.empty());
  std::vector<std::string> committed;
  for (const auto& r : outbox->items) committed.push_back(r.event.type);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (sink.types().size() < committed.size() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  c.background().Stop();
  EXPECT_EQ(sink.types(), committed);
  EXPECT_EQ(committed.front(), "ccm.worker.pending");
}

}  // namespace
}  // namespace ccm
