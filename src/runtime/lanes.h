#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ccm::runtime {

// A fixed set of threads that run the parts of one job side by side: Run(n, work) calls
// work(i) once for every i in [0, n), on up to `lanes` threads at once (the caller's among
// them), and returns when every call is over. The lanes - 1 extra threads start with the
// object and are joined by its destructor: no thread is made per job. One Run at a time
// (Run is not re-entrant and not for several callers at once); `work` must not throw.
class Lanes {
 public:
  // `lanes` below 1 counts as 1 (every call on the caller's thread, no extra thread).
  explicit Lanes(int lanes);
  ~Lanes();
  Lanes(const Lanes&) = delete;
  Lanes& operator=(const Lanes&) = delete;

  int size() const { return static_cast<int>(threads_.size()) + 1; }
  void Run(std::size_t n, const std::function<void(std::size_t)>& work);

 private:
  void Serve();
  // Runs the job's calls not begun yet until none is left. Called with `lock` held; returns
  // with it held.
  void Drain(std::unique_lock<std::mutex>& lock);

  std::mutex mu_;
  std::condition_variable begun_;  // a job was handed out, or the object is going away
  std::condition_variable ended_;  // the job's last call is over
  const std::function<void(std::size_t)>* work_ = nullptr;
  std::size_t n_ = 0;
  std::size_t next_ = 0;       // the next call to begin
  std::size_t unfinished_ = 0;  // calls not over yet
  std::uint64_t job_ = 0;      // counts the jobs handed out
  bool closing_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ccm::runtime
