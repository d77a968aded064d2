#pragma once

#include <chrono>
#include <mutex>
#include <optional>

#include "domain/result.h"
#include "ports/clock.h"
#include "ports/store.h"
#include "wire/overview.h"

namespace ccm::app {

// The time-outs past which an instance counts as stuck (those the reconcilers apply).
struct StuckTimeouts {
  std::chrono::milliseconds instantiation{std::chrono::minutes(15)};  // SCHEDULED, INSTANTIATING
  std::chrono::milliseconds collecting{std::chrono::minutes(30)};     // COLLECTING
  std::chrono::milliseconds grading{std::chrono::minutes(60)};        // GRADING
};

// GET /api/v1/overview: instances per state, those stuck past their state's time-out and the
// instances per worker, computed by paging through the Store's instance listing. The answer is
// kept for `cache_for` (by `clock`), so that many consoles cost one listing every few seconds;
// it reads only the store it is given, so every replica answers alike. Thread-safe: callers
// that arrive while a listing runs wait for it and share its answer.
class OverviewService {
 public:
  OverviewService(ports::Store& store, ports::Clock& clock, StuckTimeouts timeouts,
                  std::chrono::milliseconds cache_for = std::chrono::seconds(2));

  // Errors: unavailable (the store); nothing is cached then.
  Result<wire::Overview> Get();

 private:
  Result<wire::Overview> Compute(Timestamp now);

  ports::Store& store_;
  ports::Clock& clock_;
  const StuckTimeouts timeouts_;
  const std::chrono::milliseconds cache_for_;
  std::mutex mu_;  // held while one caller computes: the others wait for its answer
  std::optional<wire::Overview> cached_;
};

}  // namespace ccm::app
