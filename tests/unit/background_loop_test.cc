// BackgroundLoop: a wake runs the work soon, and a stream of wakes runs it at most once per
// minimum gap.
#include "app/background_loop.h"

#include <gtest/gtest.h>

#include <atomic>

namespace ccm::app {
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

}  // namespace
}  // namespace ccm::app
