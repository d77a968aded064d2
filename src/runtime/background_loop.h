#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace ccm::runtime {

// Runs `work` on a thread of its own until Stop: again at once while it reports it had work
// (returns true), otherwise `idle` after the last run or when woken, but never sooner than
// `min_gap` after the last run, so that a stream of wakes (one per commit under load) costs at most one run
// per `min_gap`. Stop lets the run in progress finish (a loop whose runs are long checks
// StopRequested between its steps) and joins the thread. Thread-safe.
class BackgroundLoop {
 public:
  BackgroundLoop(std::function<bool()> work, std::chrono::milliseconds idle,
                 std::chrono::milliseconds min_gap = std::chrono::milliseconds(0))
      : work_(std::move(work)), idle_(idle), min_gap_(min_gap) {}
  ~BackgroundLoop() { Stop(); }
  BackgroundLoop(const BackgroundLoop&) = delete;
  BackgroundLoop& operator=(const BackgroundLoop&) = delete;

  void Start() {
    std::lock_guard lock(mu_);
    if (thread_.joinable()) return;
    stop_ = false;
    stop_requested_ = false;
    thread_ = std::thread([this] {
      std::unique_lock lock(mu_);
      while (!stop_) {
        lock.unlock();
        const bool busy = work_();
        lock.lock();
        if (busy) continue;
        // Wakes that come during the gap are kept (woken_) and served right after it.
        // The idle wait counts the gap: unwoken, the loop runs every max(idle, min_gap).
        if (min_gap_.count() > 0) cv_.wait_for(lock, min_gap_, [&] { return stop_; });
        if (idle_ > min_gap_) cv_.wait_for(lock, idle_ - min_gap_, [&] { return stop_ || woken_; });
        woken_ = false;
      }
    });
  }

  // Asks the loop to stop after the run in progress, without waiting (Stop waits): several
  // loops asked first and joined after finish their runs side by side.
  void RequestStop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    stop_requested_ = true;
    cv_.notify_all();
  }

  void Stop() {
    RequestStop();
    if (thread_.joinable()) thread_.join();
    stop_requested_ = false;
  }

  // Whether Stop (or RequestStop) was called and the loop has not been started again: a run
  // made of several steps ends after the step in progress.
  bool StopRequested() const { return stop_requested_.load(); }

  void Wake() {
    {
      std::lock_guard lock(mu_);
      woken_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::function<bool()> work_;
  std::chrono::milliseconds idle_;
  std::chrono::milliseconds min_gap_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
  std::atomic<bool> stop_requested_{false};  // stop_, readable without the lock
  std::thread thread_;
};

}  // namespace ccm::runtime
