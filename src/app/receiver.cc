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

std::optional<EventReceiver::Refusal> EventReceiver::RefusalOf(const Error& e) {
  if (e.Is(ErrorKind::kStaleVersion) || e.Is(ErrorKind::kDuplicate)) return std::nullopt;
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound: return Refusal::kUnprocessable;
    case ErrorCode::kConflict:
    case ErrorCode::kFailedPrecondition: return Refusal::kIllegalMove;
    default: return std::nullopt;
  }
}

Result<EventReceiver::Decision> EventReceiver::Decide(const cloudevents::CloudEvent& event) {
  const auto type = wire::AssessmentEventTypeOf(event.type);
  if (!type) return Decision{Outcome::kIgnored, {}};
  // Every decision commits the event's key, and a commit fails as a duplicate when the key is
  // there already: so a redelivery that would be taken again is caught by its commit, without
  // a read of its key first. Only one that would be refused (its instance gone since, a move
  // its state no longer allows, data a later check finds bad) reads its key, so that a
  // redelivery is a duplicate whatever its data or its instance are now.
  auto decision = DecideOn(*type, event);
  if (decision || !RefusalOf(decision.error())) return decision;
  auto seen_before = d_.store.IsProcessed(event.source, event.id, d_.clock.Now());
  if (!seen_before) return seen_before.error();
  if (*seen_before) return Decision{Outcome::kDuplicate, {}};
  return decision;
}

Result<EventReceiver::Decision> EventReceiver::DecideOn(wire::AssessmentEventType type,
                                                        const cloudevents::CloudEvent& event) {
  // Decoded once; an unknown instance is reported before bad fields.
  auto decoded = wire::DecodeAssessmentEvent(type, event);
  if (!decoded) return decoded.error();
  const std::string& instance_id = decoded->instance_id;

  const std::string actor = "event:" + event.source;
  // The event's trace parents what it causes; without one, the request's (a binary-mode
  // event's `traceparent` header) stays, else the lablet's own is used below.
  trace::Scope event_trace(EventTrace(event));
  // Committed with whatever the event changes, so that a redelivery is a duplicate; a
  // concurrent delivery of the same event is caught by the key's uniqueness at commit.
  const Timestamp now = d_.clock.Now();
  const ports::ProcessedKey key{event.source, event.id, now, now + options_.dedup_ttl};
  const auto naming_the_field = [](Error e) {
    if (e.code == ErrorCode::kNotFound) e.field = "data.instance_id";
    return e;
  };
  // An event the instance is already past is a stale no-op, decided on its state as stored now
  // (so current, as a no-op's read must be): only the event's key is committed, and the rest
  // of the instance is not read.
  auto head = d_.store.GetInstanceHead(InstanceId{instance_id});
  if (!head) return naming_the_field(head.error());
  if (!decoded->data) return decoded->data.error();
  if (std::visit([&](const auto& data) { return IsPast(head->state, data); }, *decoded->data)) {
    Decision stale{Outcome::kStale, {}};
    stale.changes.processed.push_back(key);
    return stale;
  }
  auto instance = d_.store.GetInstanceForUpdate(InstanceId{instance_id});
  if (!instance) return naming_the_field(instance.error());
  trace::Scope work(WorkTrace(*instance));
  RecordTrace(*instance);
  Decision decision{Outcome::kApplied, {}};
  ports::Changes& changes = decision.changes;
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
  if (!outcome) return outcome.error();
  decision.outcome = *outcome;
  changes.processed.push_back(key);
  return decision;
}

Result<EventReceiver::Outcome> EventReceiver::Committed(Outcome outcome, const Status& committed) {
  if (committed) return outcome;
  if (committed.error().Is(ErrorKind::kDuplicate)) return Outcome::kDuplicate;  // a concurrent delivery won
  return committed.error();
}

Result<EventReceiver::Outcome> EventReceiver::Counted(Result<Outcome> result) {
  if (!result) {
    metrics_.rejected++;
    return result;
  }
  switch (*result) {
    case Outcome::kApplied: metrics_.applied++; break;
    case Outcome::kDuplicate: metrics_.duplicate++; break;
    case Outcome::kStale: metrics_.stale++; break;
    case Outcome::kIgnored: metrics_.ignored++; break;
  }
  return result;
}

Result<EventReceiver::Outcome> EventReceiver::Receive(const cloudevents::CloudEvent& event) {
  return Counted(RetryStale([&]() -> Result<Outcome> {
    auto decision = Decide(event);
    if (!decision) return decision.error();
    if (decision->changes.empty()) return decision->outcome;
    return Committed(decision->outcome, d_.store.Commit(decision->changes));
  }));
}

void EventReceiver::ReceiveThen(const cloudevents::CloudEvent& event, std::function<void(Result<Outcome>)> then) {
  auto decision = Decide(event);
  if (!decision) {
    // A stale read is decided again by Receive, which counts it then.
    if (decision.error().Is(ErrorKind::kStaleVersion)) return then(decision.error());
    return then(Counted(decision.error()));
  }
  if (decision->changes.empty()) return then(Counted(decision->outcome));
  d_.store.CommitThen(std::move(decision->changes),
                      [this, outcome = decision->outcome, then = std::move(then)](Status committed) {
                        auto result = Committed(outcome, committed);
                        if (!result && result.error().Is(ErrorKind::kStaleVersion)) return then(result);
                        then(Counted(std::move(result)));
                      });
}

Status KeySweeper::SweepOnce() {
  ports::Changes changes;
  changes.sweep_keys_expired_by = clock_.Now();
  return store_.Commit(changes);
}

}  // namespace ccm::app
