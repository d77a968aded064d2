#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/definition.h"
#include "domain/result.h"
#include "ports/outbox.h"
#include "ports/store.h"

namespace ccm::store {

// What every store does alike: the versions of one definition, the outbox's page cursor.

// Whether `i` passes `filter` (every field of it), for the stores that filter in memory.
inline bool Matches(const ports::InstanceFilter& filter, const domain::LabletInstance& i) {
  return (!filter.state || i.state == *filter.state) &&
         (!filter.worker_id || (i.worker_id && i.worker_id->value == *filter.worker_id)) &&
         (!filter.owner_id || i.owner_id == *filter.owner_id) &&
         (!filter.starts_by || i.timeslot_start <= *filter.starts_by) &&
         (!filter.ends_by || i.timeslot_end <= *filter.ends_by) &&
         (!filter.pod_due_by || (i.pod_due_at && *i.pod_due_at <= *filter.pod_due_by));
}

// Adds `i` to `counts` (Store::CountInstances).
inline void Count(std::map<domain::InstanceState, ports::StateCount>& counts, const domain::LabletInstance& i) {
  auto& c = counts[i.state];
  ++c.count;
  if (!c.oldest_entered_at || i.EnteredAt() < *c.oldest_entered_at) c.oldest_entered_at = i.EnteredAt();
}

// Oldest first, by semver precedence (1.10.0 after 1.2.0).
inline void SortBySemVer(std::vector<domain::LabletDefinition>& versions) {
  std::sort(versions.begin(), versions.end(), [](const domain::LabletDefinition& a, const domain::LabletDefinition& b) {
    return Compare(*domain::ParseSemVer(a.version), *domain::ParseSemVer(b.version)) < 0;
  });
}

// `version` among `versions` (sorted), or the latest when it is empty. Errors: not_found.
inline Result<domain::LabletDefinition> PickVersion(std::vector<domain::LabletDefinition> versions,
                                                    const domain::DefinitionId& id,
                                                    const std::optional<std::string>& version) {
  if (versions.empty()) return Error::NotFound("definition " + id.value + " not found");
  if (!version) return std::move(versions.back());
  for (auto& d : versions)
    if (d.version == *version) return std::move(d);
  return Error::NotFound("definition " + id.value + " has no version " + *version);
}

// The outbox seq a page cursor (`Page::after`) names; 0 for the first page. Errors:
// invalid_argument naming `after`.
inline Result<std::int64_t> ParseSeqCursor(const std::string& after) {
  if (after.empty()) return std::int64_t{0};
  try {
    return static_cast<std::int64_t>(std::stoll(after));
  } catch (const std::exception&) {
    return Error::InvalidArgument("after must be the next value of a previous page", "after");
  }
}

// The Store contract's refusals (ports/store.h, Store::Commit), worded once for every store.

// An aggregate that changed since it was read at `expected`.
inline Error StaleVersion(std::string_view what, const std::string& id, std::int64_t expected) {
  return Error::StaleVersion(std::string(what) + " " + id + " changed since it was read at version " +
                             std::to_string(expected));
}
// A processed-event key that is still live: the event was already applied.
inline Error AlreadyProcessed(const std::string& source, const std::string& id) {
  return Error::Duplicate("event (" + source + ", " + id + ") was already processed");
}
inline Error DefinitionVersionTaken(const std::string& name, const std::string& version) {
  return Error::Conflict("definition " + name + " already has version " + version, "version");
}
inline Error NameTaken(const std::string& name, const std::string& owner) {
  return Error::Conflict("name " + name + " belongs to definition " + owner, "name");
}
inline Error ReservationHeld(const std::string& reservation, const std::string& holder) {
  return Error::Conflict("reservation " + reservation + " is held by instance " + holder + ", which has not terminated",
                         "reservation_id");
}
// A delivery update may not write `held`: the store decides it (DeliveryState's rule).
inline Error HeldIsNotWritten() {
  return Error::InvalidArgument("store: held is decided by the store, not written", "state");
}

// The delivery rules every store keeps (ports/outbox.h, DeliveryState and DeliveryUpdate).

// Whether `d` dead-letters or replays its event: then the held rule runs on its subject.
inline bool TouchesSubject(const ports::DeliveryUpdate& d) {
  return d.state == ports::DeliveryState::kDead || (d.state == ports::DeliveryState::kPending && d.attempts == 0);
}

// `r`'s bookkeeping after the delivery update `d`.
inline void ApplyDelivery(ports::OutboxRecord& r, const ports::DeliveryUpdate& d) {
  r.state = d.state;
  r.attempts = d.attempts;
  if (d.state == ports::DeliveryState::kPending) r.next_attempt_at = d.at;
  if (d.state == ports::DeliveryState::kDelivered) r.delivered_at = d.at;
  r.dead_at = d.state == ports::DeliveryState::kDead ? std::optional<Timestamp>(d.at) : std::nullopt;
  r.last_error = d.error;
}

// The held rule on one subject's records, given in seq order: a record not delivered is held
// exactly when an earlier one is dead. A released record starts afresh (attempt 0, due at
// `release_at`). Calls `changed(n)` for each record `subject[n]` it moves; returns whether
// the subject is left with a dead letter.
template <typename Changed>
bool KeepHeldRule(const std::vector<ports::OutboxRecord*>& subject, Timestamp release_at, Changed changed) {
  bool behind_dead = false;
  for (size_t n = 0; n < subject.size(); ++n) {
    ports::OutboxRecord& r = *subject[n];
    if (r.state == ports::DeliveryState::kDead) {
      behind_dead = true;
    } else if (r.state == ports::DeliveryState::kPending && behind_dead) {
      r.state = ports::DeliveryState::kHeld;
      changed(n);
    } else if (r.state == ports::DeliveryState::kHeld && !behind_dead) {
      r.state = ports::DeliveryState::kPending;
      r.attempts = 0;
      r.next_attempt_at = release_at;
      changed(n);
    }
  }
  return behind_dead;
}

}  // namespace ccm::store
