#include "app/collection.h"

#include <vector>

#include "app/tracing.h"
#include "log/log_context.h"
#include "ports/page.h"
#include "ports/store.h"
#include "runtime/jitter.h"

namespace ccm::app {

using namespace ccm::domain;

std::string_view ToString(CollectionReason r) {
  switch (r) {
    case CollectionReason::kManual: return "manual";
    case CollectionReason::kTimeslotEnd: return "timeslot_end";
    case CollectionReason::kAssessmentRequest: return "assessment_request";
  }
  return "manual";
}

std::optional<CollectionReason> ParseCollectionReason(std::string_view name) {
  if (name == "manual") return CollectionReason::kManual;
  if (name == "timeslot_end") return CollectionReason::kTimeslotEnd;
  if (name == "assessment_request") return CollectionReason::kAssessmentRequest;
  return std::nullopt;
}

std::chrono::milliseconds CollectionBackoff(int failures, std::chrono::milliseconds base,
                                            std::chrono::milliseconds max) {
  const int shift = std::clamp(failures - 1, 0, 20);
  return std::min(max, base * (std::int64_t{1} << shift));
}

Result<LabletInstance> CollectionService::Collect(const InstanceId& id, const std::string& triggered_by,
                                                  CollectionReason reason) {
  if (triggered_by.empty()) return Error::InvalidArgument("triggered_by must not be empty", "triggered_by");
  log::Scope about({.lablet_id = id.value});
  auto moved = RetryStale([&]() -> Result<LabletInstance> {
    auto instance = d_.store.GetInstance(id);
    if (!instance) return instance;
    if (instance->state != InstanceState::kRunning)
      return Error::Conflict("instance " + id.value + " is " + std::string(ToString(instance->state)) +
                                 "; only a RUNNING instance can be collected",
                             "state");
    trace::Scope scope(WorkTrace(*instance));
    RecordTrace(*instance);
    auto change = MoveInstance(*instance, nullptr, InstanceState::kCollecting, d_.clock.Now(),
                               "collection: " + std::string(ToString(reason)), triggered_by);
    if (!change) return change.error();
    instance->collection_due_at = change->at;
    instance->collection_request_failures = 0;
    instance->collection_request_error.clear();
    instance->collection_refused = false;
    ports::Changes changes;
    changes.events.push_back(d_.events.InstanceMoved(*instance, *change, std::nullopt, nullptr, ToString(reason)));
    changes.instances.push_back(*instance);
    if (auto s = d_.store.Commit(changes); !s) return s.error();
    ++instance->version;
    return instance;
  });
  // The request goes out from the reconciler once the move is durable (the commit wakes it).
  if (moved) loop_.Wake();
  return moved;
}

Status CollectionService::Request(const InstanceId& id) {
  log::Scope about({.lablet_id = id.value});
  auto instance = d_.store.GetInstance(id);
  if (!instance) return instance.error();
  const Timestamp now = d_.clock.Now();
  if (instance->state != InstanceState::kCollecting || !instance->collection_due_at ||
      *instance->collection_due_at > now)
    return {};
  trace::Scope scope(WorkTrace(*instance));  // the platform's call joins the lablet's trace
  std::string hostname;
  if (instance->worker_id) {
    auto worker = d_.store.GetWorker(*instance->worker_id);
    if (worker) hostname = !worker->hostname.empty() ? worker->hostname : worker->public_ip;
  }
  const Status sent =
      platform_.TriggerCollection({instance->id.value, instance->cml_lab_id.value_or(""), hostname});
  // Only an unreachable or failing platform is asked again; a refusal is final.
  const bool refused = !sent && sent.error().code != ErrorCode::kUnavailable;
  if (metrics_) ++(sent ? metrics_->accepted : refused ? metrics_->refused : metrics_->failed);
  // Record the outcome on the instance as it is now (it may have moved meanwhile).
  return RetryStale([&]() -> Status {
    auto current = d_.store.GetInstance(id);
    if (!current) return current.error();
    if (current->state != InstanceState::kCollecting) return {};
    const Timestamp at = d_.clock.Now();
    if (sent) {
      current->collection_due_at.reset();
      current->collection_request_failures = 0;
      current->collection_request_error.clear();
      current->collection_requested_at = at;
    } else if (refused) {
      current->collection_due_at.reset();
      current->collection_refused = true;
      current->collection_request_error = sent.error().message;
    } else {
      ++current->collection_request_failures;
      current->collection_request_error = sent.error().message;
      current->collection_due_at = at + runtime::Jittered(CollectionBackoff(current->collection_request_failures,
                                                                   options_.base_backoff, options_.max_backoff));
    }
    RecordTrace(*current);
    ports::Changes changes;
    changes.instances.push_back(*current);
    return d_.store.Commit(changes);
  });
}

int CollectionService::ReconcileOnce() {
  ports::InstanceFilter collecting;
  collecting.state = InstanceState::kCollecting;
  ports::Page page{ports::kMaxPageLimit, ""};
  const Timestamp now = d_.clock.Now();
  std::vector<InstanceId> due;
  for (;;) {
    auto batch = d_.store.ListInstances(collecting, page);
    if (!batch) break;
    for (const auto& i : batch->items)
      if (i.collection_due_at && *i.collection_due_at <= now) due.push_back(i.id);
    if (batch->next.empty()) break;
    page.after = batch->next;
  }
  // A slow platform must not hold every other collection behind one request.
  RunConcurrently(due.size(), options_.max_concurrent_requests, [&](size_t k) { (void)Request(due[k]); });
  return static_cast<int>(due.size());
}

}  // namespace ccm::app
