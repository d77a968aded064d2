#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace ccm::app {

// Runs `work` on a thread of its own until Stop: again at once while it reports it had work
// (returns true), otherwise after `idle` or when woken. Thread-safe.
class BackgroundLoop {
 public:
  BackgroundLoop(std::function<bool()> work, std::chrono::milliseconds idle) : work_(std::move(work)), idle_(idle) {}
  ~BackgroundLoop() { Stop(); }
  BackgroundLoop(const BackgroundLoop&) = delete;
  BackgroundLoop& operator=(const BackgroundLoop&) = delete;

  void Start() {
    std::lock_guard lock(mu_);
    if (thread_.joinable()) return;
    stop_ = false;
    thread_ = std::thread([this] {
      std::unique_lock lock(mu_);
      while (!stop_) {
        lock.unlock();
        const bool busy = work_();
        lock.lock();
        if (busy) continue;
        cv_.wait_for(lock, idle_, [&] { return stop_ || woken_; });
        woken_ = false;
      }
    });
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

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
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
  std::thread thread_;
};

}  // namespace ccm::app
