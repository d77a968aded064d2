#include "runtime/lanes.h"

#include <algorithm>

namespace ccm::runtime {

Lanes::Lanes(int lanes) {
  const int extra = std::max(1, lanes) - 1;
  threads_.reserve(static_cast<std::size_t>(extra));
  for (int t = 0; t < extra; ++t) threads_.emplace_back([this] { Serve(); });
}

Lanes::~Lanes() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  begun_.notify_all();
  for (auto& t : threads_) t.join();
}

void Lanes::Drain(std::unique_lock<std::mutex>& lock) {
  while (next_ < n_) {
    const std::size_t k = next_++;
    const auto* work = work_;
    lock.unlock();
    (*work)(k);
    lock.lock();
    if (--unfinished_ == 0) ended_.notify_all();
  }
}

void Lanes::Serve() {
  std::unique_lock lock(mu_);
  // From the first job on, not from the one handed out when this thread got to run: a thread
  // that starts late still joins the job in progress.
  std::uint64_t seen = 0;
  for (;;) {
    begun_.wait(lock, [&] { return closing_ || job_ != seen; });
    if (closing_) return;
    seen = job_;
    Drain(lock);
  }
}

void Lanes::Run(std::size_t n, const std::function<void(std::size_t)>& work) {
  if (n == 0) return;
  if (n == 1 || threads_.empty()) {  // nothing to share: no hand-over
    for (std::size_t k = 0; k < n; ++k) work(k);
    return;
  }
  std::unique_lock lock(mu_);
  work_ = &work;
  n_ = n;
  next_ = 0;
  unfinished_ = n;
  ++job_;
  begun_.notify_all();
  Drain(lock);
  ended_.wait(lock, [&] { return unfinished_ == 0; });
  work_ = nullptr;
  n_ = 0;
}

}  // namespace ccm::runtime
