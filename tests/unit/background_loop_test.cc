// BackgroundLoop: a wake runs the work soon, and a stream of wakes runs it at most once per
// minimum gap.
#include "runtime/background_loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace ccm::runtime {
namespace {

using namespace std::chrono_literals;

TEST(BackgroundLoop, AStreamOfWakesRunsTheWorkAtMostOncePerGap) {
  std::atomic<int> runs{0};
  BackgroundLoop loop([&] { ++runs; return false; }, 10s, 200ms);
  loop.Start();
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 500ms) {
    loop.Wake();
    std::this_thread::sleep_for(1ms);
  }
  loop.Stop();
  // One run at start, then at most one per 200 ms gap; without the gap it would be hundreds.
  EXPECT_GE(runs.load(), 2);
  EXPECT_LE(runs.load(), 4);
}

TEST(BackgroundLoop, AWakeAfterTheGapRunsAtOnceNotAfterTheIdlePeriod) {
  std::atomic<int> runs{0};
  BackgroundLoop loop([&] { ++runs; return false; }, 60s, 10ms);
  loop.Start();
  while (runs.load() < 1) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);
  loop.Wake();
  const auto start = std::chrono::steady_clock::now();
  while (runs.load() < 2 && std::chrono::steady_clock::now() - start < 5s) std::this_thread::sleep_for(1ms);
  loop.Stop();
  EXPECT_EQ(runs.load(), 2);  // woken, not waiting out the 60 s idle period
}

TEST(BackgroundLoop, StopEndsARunOfManyStepsAfterTheStepInProgress) {
  std::atomic<int> steps{0};
  std::atomic<bool> running{false};
  BackgroundLoop* self = nullptr;
  // One run of 100 steps of 20 ms each (2 s), which looks for a stop between steps.
  BackgroundLoop loop(
      [&] {
        running = true;
        for (int n = 0; n < 100 && !self->StopRequested(); ++n) {
          std::this_thread::sleep_for(20ms);
          ++steps;
        }
        return false;
      },
      60s);
  self = &loop;
  EXPECT_FALSE(loop.StopRequested());
  loop.Start();
  while (!running) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(100ms);
  const auto start = std::chrono::steady_clock::now();
  loop.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);  // not the 2 s of the whole run
  EXPECT_GE(steps.load(), 1);
  EXPECT_LT(steps.load(), 100);
  // Stopped, it can run again, and StopRequested says so.
  EXPECT_FALSE(loop.StopRequested());
  const int before = steps.load();
  loop.Start();
  while (steps.load() < before + 2) std::this_thread::sleep_for(1ms);
  loop.RequestStop();
  EXPECT_TRUE(loop.StopRequested());
  loop.Stop();
}

}  // namespace
}  // namespace ccm::runtime
