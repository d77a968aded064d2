#include "runtime/lanes.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace ccm::runtime {
namespace {

using namespace std::chrono_literals;

TEST(Lanes, RunsEveryPartOnceOnAtMostItsThreadsAndKeepsThem) {
  Lanes lanes(3);
  EXPECT_EQ(lanes.size(), 3);
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::thread::id> threads;
  int in_flight = 0;
  int most = 0;
  bool waited = false;
  for (int job = 0; job < 50; ++job) {
    std::vector<int> runs(7, 0);
    lanes.Run(runs.size(), [&](size_t k) {
      std::unique_lock lock(mu);
      ++runs[k];
      threads.insert(std::this_thread::get_id());
      most = std::max(most, ++in_flight);
      cv.notify_all();
      // The first part of the first job to begin waits for a second one to begin: the parts
      // overlap. (Not part 0: its thread may take it only once the others have run them all.)
      if (job == 0 && !waited) {
        waited = true;
        cv.wait_for(lock, 10s, [&] { return most >= 2; });
      }
      --in_flight;
    });
    EXPECT_EQ(runs, std::vector<int>(7, 1)) << "job " << job;
  }
  EXPECT_GE(most, 2);
  EXPECT_LE(most, 3);
  EXPECT_LE(threads.size(), 3u);  // the same threads, job after job (the caller's among them)
  EXPECT_TRUE(threads.count(std::this_thread::get_id()));
}

TEST(Lanes, OneLaneRunsEverythingOnTheCallersThreadInOrder) {
  Lanes lanes(0);  // counts as 1
  EXPECT_EQ(lanes.size(), 1);
  std::vector<size_t> order;
  const auto caller = std::this_thread::get_id();
  lanes.Run(5, [&](size_t k) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    order.push_back(k);
  });
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4}));
  lanes.Run(0, [&](size_t) { ADD_FAILURE() << "nothing to run"; });
}

}  // namespace
}  // namespace ccm::runtime
