// BackgroundLoop: a wake runs the work soon, and a stream of wakes runs it at most once per
// minimum gap.
#include "runtime/background_loop.h"
#include "runtime/background_work.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>
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


// A task that writes what is done to it in a shared journal, and whose Stop waits for the
// end of its step: a RequestStop it has not been given yet would make that wait for ever.
class JournalTask final : public BackgroundTask {
 public:
  JournalTask(std::string name, std::vector<std::string>& journal, std::mutex& mu)
      : name_(std::move(name)), journal_(journal), mu_(mu) {}
  std::string_view name() const override { return name_; }
  void Start() override { Write("start"); }
  void RequestStop() override { Write("request stop"); }
  void Stop() override { Write("stop"); }
  void Wake() override { Write("wake"); }

 private:
  void Write(const std::string& what) {
    std::lock_guard lock(mu_);
    journal_.push_back(what + " " + name_);
  }
  std::string name_;
  std::vector<std::string>& journal_;
  std::mutex& mu_;
};

TEST(BackgroundWork, StartsInOrderAndAsksEveryTaskToStopBeforeWaitingForAny) {
  std::vector<std::string> journal;
  std::mutex mu;
  JournalTask a("a", journal, mu), b("b", journal, mu);
  BackgroundWork work;
  work.Add(a);
  work.Add(b);
  EXPECT_FALSE(work.running());
  work.Start();
  EXPECT_TRUE(work.running());
  work.Wake();
  work.Stop();
  EXPECT_FALSE(work.running());
  EXPECT_EQ(journal, (std::vector<std::string>{"start a", "start b", "wake a", "wake b", "request stop a",
                                               "request stop b", "stop a", "stop b"}));
}

TEST(BackgroundWork, EveryLoopIsAskedToStopWhileTheFirstIsStillInItsStep) {
  // Both loops are in a step that ends only when released. Stopping the work must ask the
  // second loop while the first one's step still runs: their steps end side by side, and the
  // whole stop lasts one step, not the sum of them.
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  std::atomic<int> in_step{0};
  auto step = [&] {
    ++in_step;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return released; });
    return false;
  };
  struct LoopTask final : BackgroundTask {
    explicit LoopTask(std::function<bool()> work) : loop(std::move(work), 10s) {}
    std::string_view name() const override { return "loop"; }
    void Start() override { loop.Start(); }
    void RequestStop() override { loop.RequestStop(); }
    void Stop() override { loop.Stop(); }
    void Wake() override { loop.Wake(); }
    BackgroundLoop loop;
  };
  LoopTask first(step), second(step);
  BackgroundWork work;
  work.Add(first);
  work.Add(second);
  work.Start();
  while (in_step.load() < 2) std::this_thread::sleep_for(1ms);
  std::thread stopping([&] { work.Stop(); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!(first.loop.StopRequested() && second.loop.StopRequested()) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(first.loop.StopRequested());
  EXPECT_TRUE(second.loop.StopRequested()) << "the second loop was not asked while the first one's step ran";
  {
    std::lock_guard lock(mu);
    released = true;
  }
  cv.notify_all();
  stopping.join();
  EXPECT_EQ(in_step.load(), 2);  // neither ran a second step
}

}  // namespace
}  // namespace ccm::runtime
