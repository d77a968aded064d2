#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "ports/clock.h"
#include "ports/store.h"
#include "runtime/background_loop.h"
#include "runtime/background_work.h"

namespace ccm::app {

struct RetentionOptions {
  // TERMINATED instances are removed this long after they terminated.
  std::chrono::milliseconds instances = std::chrono::hours(30 * 24);
  // Delivered outbox events are removed this long after their delivery. Dead letters stay
  // until replayed; pending and held events until delivered.
  std::chrono::milliseconds events = std::chrono::hours(7 * 24);
  int batch = 500;                                      // records of each kind per write
  int max_batches = 20;                                 // per sweep, so that one sweep stays short
  std::chrono::milliseconds interval = std::chrono::minutes(10);
};

// Counters for /metrics. Thread-safe.
struct RetentionMetrics {
  std::atomic<std::uint64_t> instances{0};  // TERMINATED instances removed
  std::atomic<std::uint64_t> events{0};     // delivered events removed
};

// Retention: removes what is past its keeping time, in bounded batches (Store::Purge), so that
// the store does not grow without end (on etcd, until its quota turns it read-only). The
// leader runs it. Thread-safe.
class RetentionSweeper final : public runtime::BackgroundTask {
 public:
  // Not owned; each must outlive the sweeper.
  RetentionSweeper(ports::Store& store, ports::Clock& clock, RetentionOptions options, RetentionMetrics& metrics)
      : store_(store), clock_(clock), options_(options), metrics_(metrics), loop_(
                                                                                 [this] {
                                                                                   (void)SweepOnce();
                                                                                   return false;
                                                                                 },
                                                                                 options.interval) {}

  // Batch after batch until one comes back short (nothing older is left) or max_batches ran.
  // Returns what went. Errors: those of the store (what went before stays gone).
  Result<ports::PurgeCounts> SweepOnce();

  std::string_view name() const override { return "retention"; }
  void Start() override { loop_.Start(); }
  void RequestStop() override { loop_.RequestStop(); }
  void Stop() override { loop_.Stop(); }
  void Wake() override {}  // nothing ages faster for a commit

 private:
  ports::Store& store_;
  ports::Clock& clock_;
  RetentionOptions options_;
  RetentionMetrics& metrics_;
  runtime::BackgroundLoop loop_;
};

}  // namespace ccm::app
