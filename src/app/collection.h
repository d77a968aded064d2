#pragma once

#include <chrono>
#include <string>

#include "app/background_loop.h"
#include "app/services.h"

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

// Collection: RUNNING -> COLLECTING, then the request to the Assessment Platform, retried
// with backoff while it fails (the instance stays COLLECTING and shows the error) and again
// after a retryable `assessment.collection.failed`. Thread-safe.
class CollectionService {
 public:
  struct Options {
    std::chrono::milliseconds base_backoff{1000};
    std::chrono::milliseconds max_backoff{5 * 60 * 1000};
    std::chrono::milliseconds reconcile_interval{1000};
  };
  CollectionService(Deps deps, AssessmentPlatform& platform, Options options)
      : d_(deps), platform_(platform), options_(options), loop_(
                                                                [this] {
                                                                  ReconcileOnce();
                                                                  return false;
                                                                },
                                                                options.reconcile_interval) {}

  // RUNNING -> COLLECTING (with collecting.started), then one request to the platform; a
  // failed request is recorded on the instance and left to the reconciler. Errors:
  // not_found, conflict (not RUNNING), invalid_argument.
  Result<domain::LabletInstance> Collect(const domain::InstanceId& id, const std::string& triggered_by,
                                         CollectionReason reason);
  // Requests the collection of every COLLECTING instance that is due. Returns how many
  // requests were made.
  int ReconcileOnce();

  // The reconciler on a background thread.
  void Start() { loop_.Start(); }
  void Stop() { loop_.Stop(); }


 private:
  // Requests the collection of `id` if it is COLLECTING and due, and records the outcome.
  Status Request(const domain::InstanceId& id);

  Deps d_;
  AssessmentPlatform& platform_;
  Options options_;
  BackgroundLoop loop_;
};

}  // namespace ccm::app
