#include "app/collection.h"

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
  auto moved = RetryStale([&]() -> Result<LabletInstance> {
    auto instance = d_.store.GetInstance(id);
    if (!instance) return instance;
    if (instance->state != InstanceState::kRunning)
      return Error::Conflict("instance " + id.value + " is " + std::string(ToString(instance->state)) +
                                 "; only a RUNNING instance can be collected",
                             "state");
    auto change = MoveInstance(*instance, nullptr, InstanceState::kCollecting, d_.clock.Now(),
                               "collection: " + std::string(ToString(reason)), triggered_by);
    if (!change) return change.error();
    instance->collection_due_at = change->at;
    instance->collection_request_failures = 0;
    instance->collection_request_error.clear();
    Changes changes;
    changes.events.push_back(d_.events.InstanceMoved(
        *instance, *change, nullptr, nullptr,
        {{"triggered_by", triggered_by}, {"collection_reason", std::string(ToString(reason))}}));
    changes.instances.push_back(*instance);
    if (auto s = d_.store.Commit(changes); !s) return s.error();
    ++instance->version;
    return instance;
  });
  if (!moved) return moved;
  // The request goes out after the move is durable; if it fails, the reconciler retries.
  (void)Request(id);
  return d_.store.GetInstance(id);
}

Status CollectionService::Request(const InstanceId& id) {
  auto instance = d_.store.GetInstance(id);
  if (!instance) return instance.error();
  const Timestamp now = d_.clock.Now();
  if (instance->state != InstanceState::kCollecting || !instance->collection_due_at ||
      *instance->collection_due_at > now)
    return {};
  std::string hostname;
  if (instance->worker_id) {
    auto worker = d_.store.GetWorker(*instance->worker_id);
    if (worker) hostname = !worker->hostname.empty() ? worker->hostname : worker->public_ip;
  }
  const Status sent =
      platform_.TriggerCollection({instance->id.value, instance->cml_lab_id.value_or(""), hostname});
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
    } else {
      ++current->collection_request_failures;
      current->collection_request_error = sent.error().message;
      current->collection_due_at =
          at + CollectionBackoff(current->collection_request_failures, options_.base_backoff, options_.max_backoff);
    }
    Changes changes;
    changes.instances.push_back(*current);
    return d_.store.Commit(changes);
  });
}

int CollectionService::ReconcileOnce() {
  InstanceFilter collecting;
  collecting.state = InstanceState::kCollecting;
  Page page{kMaxPageLimit, ""};
  const Timestamp now = d_.clock.Now();
  int requested = 0;
  for (;;) {
    auto batch = d_.store.ListInstances(collecting, page);
    if (!batch) return requested;
    for (const auto& i : batch->items)
      if (i.collection_due_at && *i.collection_due_at <= now) {
        (void)Request(i.id);
        ++requested;
      }
    if (batch->next.empty()) return requested;
    page.after = batch->next;
  }
}

}  // namespace ccm::app
