#include "app/receiver.h"

#include "app/collection.h"
#include "app/tracing.h"
#include "ports/store.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace ccm::app {

using namespace ccm::domain;

namespace {

// The trace an inbound event's Distributed Tracing extension names, as the parent of a span
// for what ccm does with it. nullopt when it has none, or an invalid one: the extension is
// optional, so an invalid value is ignored (and said at debug level), never refused.
std::optional<trace::TraceContext> EventTrace(const cloudevents::CloudEvent& event) {
  const auto tp = event.extensions.find("traceparent");
  if (tp == event.extensions.end()) return std::nullopt;
  std::string state;
  if (auto ts = event.extensions.find("tracestate"); ts != event.extensions.end() && ts->second.is_string())
    state = ts->second.get<std::string>();
  std::optional<trace::TraceContext> parent;
  if (tp->second.is_string()) parent = trace::Parse(tp->second.get<std::string>(), state);
  if (!parent) {
    spdlog::debug("event {} from {}: traceparent {} is not a valid W3C traceparent; ignored", event.id, event.source,
                  tp->second.dump().substr(0, 64));
    return std::nullopt;
  }
  return parent->Child();
}

}  // namespace

Result<EventReceiver::Outcome> EventReceiver::Receive(const cloudevents::CloudEvent& event) {
  const auto type = wire::AssessmentEventTypeOf(event.type);
  if (!type) {
    metrics_.ignored++;
    return Outcome::kIgnored;
  }
  auto fail = [this](Error e) -> Result<Outcome> {
    metrics_.rejected++;
    return e;
  };
  // A redelivery is recognized by its key alone, before its data is looked at.
  auto seen_before = d_.store.IsProcessed(event.source, event.id, d_.clock.Now());
  if (!seen_before) return fail(seen_before.error());
  if (*seen_before) {
    metrics_.duplicate++;
    return Outcome::kDuplicate;
  }
  // Decoded once; an unknown instance is reported before bad fields.
  auto decoded = wire::DecodeAssessmentEvent(*type, event);
  if (!decoded) return fail(decoded.error());
  const std::string& instance_id = decoded->instance_id;

  const std::string actor = "event:" + event.source;
  // The event's trace parents what it causes; without one, the request's (a binary-mode
  // event's `traceparent` header) stays, else the lablet's own is used below.
  trace::Scope event_trace(EventTrace(event));
  auto result = RetryStale([&]() -> Result<Outcome> {
    // A concurrent delivery of the same event is caught by the key's uniqueness at commit.
    const Timestamp now = d_.clock.Now();
    const auto naming_the_field = [](Error e) {
      if (e.code == ErrorCode::kNotFound) e.field = "data.instance_id";
      return e;
    };
    auto instance = d_.store.GetInstanceForUpdate(InstanceId{instance_id});
    if (!instance) return naming_the_field(instance.error());
    if (!decoded->data) return decoded->data.error();
    trace::Scope work(WorkTrace(*instance));
    RecordTrace(*instance);
    ports::Changes changes;
    const std::int64_t read_at = instance->version;
    auto outcome = std::visit([&](const auto& data) { return Apply(*instance, data, event.id, actor, changes); },
                              *decoded->data);
    if (outcome && *outcome == Outcome::kApplied &&
        (changes.instances.empty() || changes.instances.back().id != instance->id))
      changes.instances.push_back(*instance);
    // A refusal, or an outcome that leaves the instance as it was, is decided on a read that
    // its commit does not guard: it must have been current.
    if (!outcome || std::none_of(changes.instances.begin(), changes.instances.end(),
                                 [&](const LabletInstance& i) { return i.id == instance->id; }))
      if (auto current = ConfirmCurrent(d_.store, instance->id, read_at); !current)
        return naming_the_field(current.error());
    if (!outcome) return outcome;
    changes.processed.push_back({event.source, event.id, now, now + options_.dedup_ttl});
    auto committed = d_.store.Commit(changes);
    if (!committed) {
      if (committed.error().Is(ErrorKind::kDuplicate))
        return Outcome::kDuplicate;  // a concurrent delivery of the same event won
      return committed.error();
    }
    return outcome;
  });
  if (!result) return fail(result.error());
  switch (*result) {
    case Outcome::kApplied: metrics_.applied++; break;
    case Outcome::kDuplicate: metrics_.duplicate++; break;
    case Outcome::kStale: metrics_.stale++; break;
    case Outcome::kIgnored: metrics_.ignored++; break;
  }
  return result;
}

Status KeySweeper::SweepOnce() {
  ports::Changes changes;
  changes.sweep_keys_expired_by = clock_.Now();
  return store_.Commit(changes);
}

}  // namespace ccm::app
