#pragma once

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include "app/services.h"
#include "ports/assessment_platform.h"
#include "runtime/background_loop.h"
#include "runtime/background_work.h"

namespace ccm::app {

// Why a collection is triggered.
enum class CollectionReason {
  kManual,             // an operator or the API asked
  kTimeslotEnd,        // the candidate's timeslot ended
  kAssessmentRequest,  // the Assessment Platform asked
};
std::string_view ToString(CollectionReason r);
std::optional<CollectionReason> ParseCollectionReason(std::string_view name);

// The wait before the next collection request after `failures` failures in a row: `base`
// doubling, capped at `max`.
std::chrono::milliseconds CollectionBackoff(int failures, std::chrono::milliseconds base = std::chrono::seconds(1),
                                            std::chrono::milliseconds max = std::chrono::minutes(5));

// Collection: RUNNING -> COLLECTING, then the request to the Assessment Platform, made by
// the collection reconciler (never while a caller waits), retried with jittered backoff while
// the platform cannot be reached or fails (the instance stays COLLECTING and shows the error)
// and again after a retryable `assessment.collection.failed`. A refusal for good (a 4xx other
// than 408 and 429) ends the requests: the instance shows it (`collection_refused`) and leaves
// COLLECTING by its time-out. Requests to a slow platform run concurrently, at most
// `max_concurrent_requests` at once. Thread-safe.
class CollectionService final : public runtime::BackgroundTask {
 public:
  struct Options {
    std::chrono::milliseconds base_backoff{1000};
    std::chrono::milliseconds max_backoff{5 * 60 * 1000};
    std::chrono::milliseconds reconcile_interval{1000};
    int max_concurrent_requests = 16;
  };
  // Counters for /metrics. Thread-safe.
  struct Metrics {
    std::atomic<std::uint64_t> accepted{0};  // requests the platform took
    std::atomic<std::uint64_t> failed{0};    // requests that will be made again
    std::atomic<std::uint64_t> refused{0};   // requests refused for good
  };
  CollectionService(Deps deps, ports::AssessmentPlatform& platform, Options options, Metrics* metrics = nullptr)
      : d_(deps), platform_(platform), options_(options), metrics_(metrics), loop_(
                                                                [this] {
                                                                  ReconcileOnce();
                                                                  return false;
                                                                },
                                                                options.reconcile_interval,
                                                                // every commit wakes it: at most one sweep per 100 ms
                                                                std::min(options.reconcile_interval,
                                                                         std::chrono::milliseconds(100))) {}

  // RUNNING -> COLLECTING (with collecting.started), committed with the request due at once;
  // returns then, without waiting for the platform. Errors: not_found, conflict (not RUNNING),
  // invalid_argument.
  Result<domain::LabletInstance> Collect(const domain::InstanceId& id, const std::string& triggered_by,
                                         CollectionReason reason);
  // Requests the collection of every COLLECTING instance that is due, concurrently, and
  // records each outcome. Returns how many requests were made.
  int ReconcileOnce();

  // The reconciler on a background thread.
  std::string_view name() const override { return "collection"; }
  void Start() override { loop_.Start(); }
  void RequestStop() override { loop_.RequestStop(); }
  void Stop() override { loop_.Stop(); }
  // The reconciler sweeps again soon (a collection became due).
  void Wake() override { loop_.Wake(); }

 private:
  // Requests the collection of `id` if it is COLLECTING and due, and records the outcome.
  Status Request(const domain::InstanceId& id);

  Deps d_;
  ports::AssessmentPlatform& platform_;
  Options options_;
  Metrics* metrics_;
  runtime::BackgroundLoop loop_;
};

}  // namespace ccm::app
