#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/result.h"
#include "domain/time.h"
#include "ports/page.h"

namespace ccm::ports {

// One CloudEvent waiting in the outbox, already encoded in the JSON event format.
struct OutboxEvent {
  std::string id;
  std::string subject;
  std::string type;
  Timestamp time;
  std::string json;  // the whole structured-mode CloudEvent
};

// Where an outbox event is in its delivery. Per subject, delivery follows seq, and a dead
// letter holds back what comes after it: an event that is not delivered is held exactly when
// an earlier event of its subject is dead. The store keeps that rule on every commit.
enum class DeliveryState {
  kPending,    // waiting to be sent (or to be retried)
  kDelivered,  // the sink accepted it
  kDead,       // given up on: a final refusal, too many attempts, or too old; an operator may replay it
  kHeld,       // behind a dead letter of its subject; released, in seq order, when that one is replayed
};
std::string_view ToString(DeliveryState s);
std::optional<DeliveryState> ParseDeliveryState(std::string_view name);

// An outbox event with its delivery bookkeeping.
struct OutboxRecord {
  std::int64_t seq = 0;  // commit order (increasing, not dense); per subject, delivery follows it
  OutboxEvent event;
  DeliveryState state = DeliveryState::kPending;
  int attempts = 0;
  Timestamp next_attempt_at;
  std::optional<Timestamp> delivered_at;
  std::optional<Timestamp> dead_at;
  std::string last_error;
};

// A change to one outbox event's delivery bookkeeping: `state` is kPending, kDelivered or kDead
// (kHeld is the store's to decide; writing it is invalid_argument). A dead letter holds its
// subject's later events. kPending with attempts 0 replays a dead event: pending again (held
// behind an earlier dead letter of its subject), and the held events after it, up to the
// subject's next dead letter, become pending with attempts 0 and keep their order.
struct DeliveryUpdate {
  std::int64_t seq = 0;
  DeliveryState state = DeliveryState::kPending;
  int attempts = 0;
  Timestamp at;               // delivered_at, dead_at, or the next attempt when pending
  std::string error;          // why the last attempt failed
  std::string event_id;       // the event's id: the etcd store finds the record by it
};

struct EventFilter {
  std::optional<std::string> subject;
  std::optional<std::string> type;
  std::optional<Timestamp> since;  // event time, inclusive
  std::optional<Timestamp> until;  // event time, exclusive
  std::optional<DeliveryState> state;
};

// Counts over the whole outbox.
struct OutboxStats {
  std::int64_t published = 0;  // events ever written
  std::int64_t pending = 0;
  std::int64_t dead = 0;
  std::int64_t held = 0;  // waiting behind a dead letter of their subject
};

// Reading the outbox that Store::Commit writes (new events in Changes::events, their
// delivery in Changes::deliveries). Every store implements it beside Store, over the same
// state: what a commit that returned wrote, a read that starts after it sees. Readers that
// only read events (the dispatcher's rounds, the events API, the metrics) take this port
// alone. Thread-safe.
class Outbox {
 public:
  virtual ~Outbox() = default;

  // Pending events due at `now`, in seq order, at most `limit`. For each subject only the
  // events before its first one still waiting out a backoff are returned, so that a subject
  // is never delivered out of order; held events are never returned. One indexed read.
  virtual Result<std::vector<OutboxRecord>> DueEvents(Timestamp now, int limit) = 0;
  // Outbox events matching `filter`, in seq order; Page::after is a seq.
  virtual Result<PageOf<OutboxRecord>> ListEvents(const EventFilter& filter, const Page& page) = 0;
  // Errors: not_found.
  virtual Result<OutboxRecord> GetEvent(const std::string& event_id) = 0;
  virtual Result<OutboxStats> GetOutboxStats() = 0;
  // The seq of the newest event in the outbox, 0 when it holds none: every event committed
  // after the call has a greater seq, so ListEvents after it lists only those. One small
  // read, however long the outbox. Errors: unavailable when the store cannot be reached.
  virtual Result<std::int64_t> LastSeq() = 0;
};

}  // namespace ccm::ports
