// The retry helpers the use cases and reconcilers share: jittered backoff, bounded concurrent
// calls, and the retry of a write that lost a race.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "app/collection.h"
#include "app/services.h"
#include "runtime/jitter.h"

namespace ccm {
namespace {

using namespace std::chrono_literals;

TEST(Jittered, DrawsBetweenHalfAndAllOfTheWaitAndSpreadsAFleet) {
  std::set<std::int64_t> seen;
  for (int n = 0; n < 200; ++n) {
    const auto d = runtime::Jittered(1000ms);
    EXPECT_GE(d, 500ms);
    EXPECT_LE(d, 1000ms);
    seen.insert(d.count());
  }
  // A fleet retrying after one outage does not come back at one instant.
  EXPECT_GT(seen.size(), 50u);
  EXPECT_EQ(runtime::Jittered(0ms), 0ms);
}

TEST(Jittered, OnTheBackoffItStaysUnderTheCap) {
  for (int failures = 1; failures < 40; ++failures) {
    const auto d = runtime::Jittered(app::CollectionBackoff(failures, 1s, 5min));
    EXPECT_LE(d, 5min);
    EXPECT_GE(d, 500ms);
  }
}

TEST(RunConcurrently, RunsEveryItemOnceAndSeveralAtOnce) {
  constexpr size_t kItems = 40;
  std::vector<std::atomic<int>> runs(kItems);
  std::mutex mu;
  std::condition_variable cv;
  int inside = 0;
  bool met = false;
  app::RunConcurrently(kItems, 4, [&](size_t k) {
    ++runs[k];
    std::unique_lock lock(mu);
    ++inside;
    if (inside == 4) met = true;
    cv.notify_all();
    // The first items wait until four run at once (or give up after a while).
    if (k < 4) cv.wait_for(lock, 5s, [&] { return met; });
    --inside;
  });
  EXPECT_TRUE(met);
  for (const auto& r : runs) EXPECT_EQ(r.load(), 1);
}

TEST(RunConcurrently, NeverMoreThanTheLimit) {
  std::atomic<int> inside{0}, most{0};
  app::RunConcurrently(30, 3, [&](size_t) {
    const int now = ++inside;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(2ms);
    --inside;
  });
  EXPECT_LE(most.load(), 3);
  app::RunConcurrently(0, 3, [&](size_t) { ADD_FAILURE() << "no item to run"; });
}

TEST(RetryStale, TriesAStaleWriteAgainUntilItGoesThrough) {
  int calls = 0;
  Status s = app::RetryStale([&]() -> Status {
    if (++calls < 5) return Error::StaleVersion("instance x is at version 3, not the expected 2");
    return {};
  });
  EXPECT_TRUE(s);
  EXPECT_EQ(calls, 5);
}

TEST(RetryStale, AWriterThatKeepsLosingIsToldToTryAgainNotThatItConflicts) {
  int calls = 0;
  Status s = app::RetryStale([&]() -> Status {
    ++calls;
    return Error::StaleVersion("worker w is at version 9, not the expected 8");
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(s.error().message.find("try again"), std::string::npos);
  EXPECT_EQ(calls, 64);
}

TEST(RetryStale, OtherErrorsAndRealConflictsComeBackAtOnce) {
  int calls = 0;
  Status s = app::RetryStale([&]() -> Status {
    ++calls;
    return Error::Conflict("instance x is RUNNING", "state");
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kConflict);
  EXPECT_EQ(calls, 1);
}

TEST(RetryStale, AConflictOnAFieldNamedVersionIsNotAStaleVersion) {
  int calls = 0;
  Status s = app::RetryStale([&]() -> Status {
    ++calls;
    return Error::Conflict("definition d already has version 1.0.0", "version");
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kConflict);
  EXPECT_EQ(s.error().kind, ErrorKind::kUnspecified);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace ccm
