#pragma once

#include <atomic>
#include <string_view>
#include <vector>

namespace ccm::runtime {

// Work that runs in the background while this replica leads: delivery, collection requests,
// the reconcilers, the sweeps. Each runs on threads of its own between Start and Stop.
// Implementations are thread-safe.
class BackgroundTask {
 public:
  virtual ~BackgroundTask() = default;
  // For logs: "dispatcher", "reconcilers", ...
  virtual std::string_view name() const = 0;
  virtual void Start() = 0;
  // Asks the task to end after its current step, without waiting (Stop waits).
  virtual void RequestStop() = 0;
  // Ends the current step and joins the task's threads. The task may be started again.
  virtual void Stop() = 0;
  // Something changed (a commit): the task looks again soon. Harmless while stopped.
  virtual void Wake() = 0;
};

// The leader's background work: tasks started together when this replica starts leading and
// stopped together when it stops. The tasks are added before the first Start and are not
// owned. Start, Stop and Wake may be called from any thread; Start and Stop not at once.
class BackgroundWork {
 public:
  void Add(BackgroundTask& task) { tasks_.push_back(&task); }

  // Starts each task, in the order they were added.
  void Start() {
    for (auto* t : tasks_) t->Start();
    running_ = true;
  }

  // Asks every task first, then waits for each: their current steps end side by side, so the
  // whole stop takes as long as the longest step, not the sum of them.
  void Stop() {
    running_ = false;
    for (auto* t : tasks_) t->RequestStop();
    for (auto* t : tasks_) t->Stop();
  }

  void Wake() {
    for (auto* t : tasks_) t->Wake();
  }

  bool running() const { return running_.load(); }
  const std::vector<BackgroundTask*>& tasks() const { return tasks_; }

 private:
  std::vector<BackgroundTask*> tasks_;
  std::atomic<bool> running_{false};
};

}  // namespace ccm::runtime
