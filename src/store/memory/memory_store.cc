#include "store/memory/memory_store.h"

#include <algorithm>

#include "store/shared.h"

namespace ccm::store {

using namespace ccm::domain;
using ports::Changes;
using ports::DeliveryState;
using ports::OutboxRecord;

// What one commit writes, decided before anything is written. Each map holds the value an
// object will have after the commit; Decide reads through it, so that a later part of a
// commit sees what an earlier part wrote (as it would inside a transaction).
struct MemoryStore::Plan {
  std::vector<LabletDefinition> definitions;  // new versions, in commit order
  std::set<std::string> deleted_definitions;
  std::map<std::string, LabletInstance> instances;
  std::map<std::string, Worker> workers;
  std::map<std::int64_t, OutboxRecord> records;  // new events, and records whose bookkeeping changes
  std::int64_t new_events = 0;
  std::optional<Timestamp> sweep_keys_expired_by;
  std::map<KeyId, ports::ProcessedKey> processed;
};

namespace {

// The staged value of `key` if the plan has one, else the stored one, else null.
template <typename Map>
const typename Map::mapped_type* Find(const Map& staged, const Map& stored, const typename Map::key_type& key) {
  if (auto it = staged.find(key); it != staged.end()) return &it->second;
  if (auto it = stored.find(key); it != stored.end()) return &it->second;
  return nullptr;
}

// One page of `items` (ordered by key) after `page.after`, kept when `keep` says so.
template <typename Map, typename Keep>
auto PageAfter(const Map& items, const ports::Page& page, Keep keep) {
  ports::PageOf<typename Map::mapped_type> out;
  for (auto it = items.upper_bound(page.after); it != items.end(); ++it) {
    if (!keep(it->second)) continue;
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = out.items.back().id.value;
      break;
    }
    out.items.push_back(it->second);
  }
  return out;
}

}  // namespace

MemoryStore::MemoryStore(Options options) : options_(std::move(options)) {}

// ---- reads ---------------------------------------------------------------------------------

Result<LabletDefinition> MemoryStore::GetDefinition(const DefinitionId& id, const std::optional<std::string>& version) {
  std::lock_guard lock(mu_);
  auto it = definitions_.find(id.value);
  return PickVersion(it == definitions_.end() ? std::vector<LabletDefinition>{} : it->second, id, version);
}

Result<ports::PageOf<LabletDefinition>> MemoryStore::ListDefinitions(const ports::DefinitionFilter& filter,
                                                                   const ports::Page& page) {
  std::lock_guard lock(mu_);
  ports::PageOf<LabletDefinition> out;
  for (auto it = definitions_.upper_bound(page.after); it != definitions_.end(); ++it) {
    // An id is listed when one of its versions matches, and shows its latest version.
    const bool matches = std::any_of(it->second.begin(), it->second.end(), [&](const LabletDefinition& d) {
      return (!filter.name || d.name == *filter.name) && (filter.include_deleted || !d.deleted);
    });
    if (!matches) continue;
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = out.items.back().id.value;
      break;
    }
    out.items.push_back(it->second.back());
  }
  return out;
}

Result<std::vector<LabletDefinition>> MemoryStore::ListDefinitionVersions(const DefinitionId& id) {
  std::lock_guard lock(mu_);
  auto it = definitions_.find(id.value);
  if (it == definitions_.end()) return Error::NotFound("definition " + id.value + " not found");
  return it->second;
}

Result<std::optional<DefinitionId>> MemoryStore::FindDefinitionByName(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = definition_names_.find(name);
  if (it == definition_names_.end()) return std::optional<DefinitionId>{};
  return std::optional<DefinitionId>(DefinitionId{it->second});
}

Result<LabletInstance> MemoryStore::GetInstance(const InstanceId& id) {
  std::lock_guard lock(mu_);
  auto it = instances_.find(id.value);
  if (it == instances_.end()) return Error::NotFound("instance " + id.value + " not found");
  return it->second;
}

Result<ports::PageOf<LabletInstance>> MemoryStore::ListInstances(const ports::InstanceFilter& filter,
                                                               const ports::Page& page) {
  std::lock_guard lock(mu_);
  return PageAfter(instances_, page, [&filter](const LabletInstance& i) { return Matches(filter, i); });
}

Result<std::map<InstanceState, ports::StateCount>> MemoryStore::CountInstances() {
  std::lock_guard lock(mu_);
  std::map<InstanceState, ports::StateCount> counts;
  for (const auto& [_, i] : instances_)
    if (i.state != InstanceState::kTerminated) Count(counts, i);
  return counts;
}

Result<Worker> MemoryStore::GetWorker(const WorkerId& id) {
  std::lock_guard lock(mu_);
  auto it = workers_.find(id.value);
  if (it == workers_.end()) return Error::NotFound("worker " + id.value + " not found");
  return it->second;
}

Result<ports::PageOf<Worker>> MemoryStore::ListWorkers(const ports::Page& page) {
  std::lock_guard lock(mu_);
  return PageAfter(workers_, page, [](const Worker&) { return true; });
}

Result<std::optional<std::string>> MemoryStore::ProcessedValue(const std::string& source, const std::string& id,
                                                               Timestamp now) {
  std::lock_guard lock(mu_);
  auto it = processed_.find({source, id});
  if (it == processed_.end() || it->second.expires_at <= now) return std::optional<std::string>{};
  return std::optional<std::string>(it->second.value);
}

Result<std::vector<OutboxRecord>> MemoryStore::DueEvents(Timestamp now, int limit) {
  std::lock_guard lock(mu_);
  std::vector<OutboxRecord> out;
  // A subject whose first pending event is still backing off is blocked from there on, so
  // that none of its events overtakes that one.
  std::set<std::string_view> blocked;
  for (auto seq = pending_.begin(); seq != pending_.end() && static_cast<int>(out.size()) < limit; ++seq) {
    const OutboxRecord& r = outbox_.at(*seq);
    if (blocked.count(r.event.subject)) continue;
    if (r.next_attempt_at > now) {
      blocked.insert(r.event.subject);
      continue;
    }
    out.push_back(r);
  }
  return out;
}

Result<ports::PageOf<OutboxRecord>> MemoryStore::ListEvents(const ports::EventFilter& f, const ports::Page& page) {
  auto after = ParseSeqCursor(page.after);
  if (!after) return after.error();
  std::lock_guard lock(mu_);
  ports::PageOf<OutboxRecord> out;
  for (auto it = outbox_.upper_bound(*after); it != outbox_.end(); ++it) {
    const OutboxRecord& r = it->second;
    if ((f.subject && r.event.subject != *f.subject) || (f.type && r.event.type != *f.type) ||
        (f.since && r.event.time < *f.since) || (f.until && r.event.time >= *f.until) ||
        (f.state && r.state != *f.state))
      continue;
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = std::to_string(out.items.back().seq);
      break;
    }
    out.items.push_back(r);
  }
  return out;
}

Result<OutboxRecord> MemoryStore::GetEvent(const std::string& event_id) {
  std::lock_guard lock(mu_);
  auto it = seq_of_event_.find(event_id);
  if (it == seq_of_event_.end()) return Error::NotFound("event " + event_id + " not found");
  return outbox_.at(it->second);
}

Result<ports::OutboxStats> MemoryStore::GetOutboxStats() {
  std::lock_guard lock(mu_);
  return ports::OutboxStats{last_seq_, static_cast<std::int64_t>(pending_.size()), dead_, held_};
}

Result<std::int64_t> MemoryStore::LastSeq() {
  std::lock_guard lock(mu_);
  return outbox_.empty() ? 0 : outbox_.rbegin()->first;
}

Status MemoryStore::Ping() { return {}; }

Result<ports::PurgeCounts> MemoryStore::Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) {
  std::lock_guard lock(mu_);
  ports::PurgeCounts counts;
  for (auto it = instances_.begin(); it != instances_.end() && counts.instances < limit;) {
    const LabletInstance& i = it->second;
    if (i.state == InstanceState::kTerminated && i.terminated_at && *i.terminated_at < terminated_before) {
      it = instances_.erase(it);
      ++counts.instances;
    } else {
      ++it;
    }
  }
  for (auto it = outbox_.begin(); it != outbox_.end() && counts.events < limit;) {
    const OutboxRecord& r = it->second;
    if (r.state != DeliveryState::kDelivered || !r.delivered_at || *r.delivered_at >= delivered_before) {
      ++it;
      continue;
    }
    // last_seq_ stays: the published count keeps what is purged.
    Index(r, -1);
    seq_of_event_.erase(r.event.id);
    auto subject = subjects_.find(r.event.subject);
    subject->second.erase(r.seq);
    if (subject->second.empty()) subjects_.erase(subject);
    it = outbox_.erase(it);
    ++counts.events;
  }
  return counts;
}

// ---- writes --------------------------------------------------------------------------------

Status MemoryStore::Commit(const Changes& changes) {
  if (changes.empty()) return {};
  {
    std::lock_guard lock(mu_);
    Plan plan;
    if (auto s = Decide(changes, plan); !s) return s;
    Apply(plan);
  }
  if (!changes.events.empty() && options_.on_events_committed) options_.on_events_committed();
  return {};
}

Status MemoryStore::Decide(const Changes& ch, Plan& plan) const {
  // Definitions: a version exists once, a name belongs to one id.
  for (const auto& d : ch.new_definitions) {
    const auto staged_owner = std::find_if(plan.definitions.begin(), plan.definitions.end(),
                                           [&d](const LabletDefinition& s) { return s.name == d.name; });
    const auto stored_owner = definition_names_.find(d.name);
    const std::string owner = staged_owner != plan.definitions.end() ? staged_owner->id.value
                              : stored_owner != definition_names_.end() ? stored_owner->second
                                                                        : d.id.value;
    if (owner != d.id.value) return NameTaken(d.name, owner);
    const auto same = [&d](const LabletDefinition& s) { return s.id == d.id && s.version == d.version; };
    const auto stored = definitions_.find(d.id.value);
    if (std::any_of(plan.definitions.begin(), plan.definitions.end(), same) ||
        (stored != definitions_.end() && std::any_of(stored->second.begin(), stored->second.end(), same)))
      return DefinitionVersionTaken(d.name, d.version);
    plan.definitions.push_back(d);
  }
  for (const auto& id : ch.deleted_definitions) {
    const bool staged = std::any_of(plan.definitions.begin(), plan.definitions.end(),
                                    [&id](const LabletDefinition& d) { return d.id == id; });
    if (!staged && !definitions_.count(id.value)) return Error::NotFound("definition " + id.value + " not found");
    plan.deleted_definitions.insert(id.value);
  }

  // Instances and workers: each written at the version it was read at.
  for (const auto& i : ch.instances) {
    const LabletInstance* before = Find(plan.instances, instances_, i.id.value);
    if ((before ? before->version : 0) != i.version || (i.version == 0 && before))
      return StaleVersion("instance", i.id.value, i.version);
    if (i.version == 0 && i.reservation_id && i.state != InstanceState::kTerminated) {
      // One instance not yet TERMINATED per reservation, counting those this commit writes.
      const auto holds = [&i](const LabletInstance& other) {
        return other.id != i.id && other.reservation_id == i.reservation_id && other.state != InstanceState::kTerminated;
      };
      const LabletInstance* holder = nullptr;
      for (const auto& [id, other] : plan.instances)
        if (holds(other)) holder = &other;
      for (const auto& [id, other] : instances_)
        if (!holder && !plan.instances.count(id) && holds(other)) holder = &other;
      if (holder)
        return ReservationHeld(*i.reservation_id, holder->id.value);
    }
    LabletInstance& after = plan.instances[i.id.value] = i;
    after.version = i.version + 1;
  }
  for (const auto& w : ch.workers) {
    const Worker* before = Find(plan.workers, workers_, w.id.value);
    if ((before ? before->version : 0) != w.version || (w.version == 0 && before))
      return StaleVersion("worker", w.id.value, w.version);
    Worker& after = plan.workers[w.id.value] = w;
    after.version = w.version + 1;
  }

  // New events take the next seqs, in their order; behind a dead letter of their subject
  // they are held.
  const auto record = [&](std::int64_t seq) { return Find(plan.records, outbox_, seq); };
  const auto subject_is_dead = [&](const std::string& subject) {
    auto seqs = subjects_.find(subject);
    if (seqs == subjects_.end()) return false;
    return std::any_of(seqs->second.begin(), seqs->second.end(),
                       [&](std::int64_t seq) { return record(seq)->state == DeliveryState::kDead; });
  };
  for (const auto& e : ch.events) {
    const bool staged = std::any_of(plan.records.begin(), plan.records.end(),
                                    [&e](const auto& r) { return r.second.event.id == e.id; });
    if (staged || seq_of_event_.count(e.id)) return Error::Internal("store: outbox event " + e.id + " exists already");
    OutboxRecord r;
    r.seq = last_seq_ + ++plan.new_events;
    r.event = e;
    r.state = subject_is_dead(e.subject) ? DeliveryState::kHeld : DeliveryState::kPending;
    plan.records[r.seq] = std::move(r);
  }

  // Delivery updates, then the held rule in each subject where one dead-lettered or replayed
  // an event.
  std::map<std::string, Timestamp> rule_subjects;  // subject -> when its released events are due
  for (const auto& d : ch.deliveries) {
    if (d.state == DeliveryState::kHeld)
      return HeldIsNotWritten();
    const OutboxRecord* before = record(d.seq);
    if (!before) return Error::NotFound("outbox event " + std::to_string(d.seq) + " not found");
    OutboxRecord& r = plan.records[d.seq] = *before;
    ApplyDelivery(r, d);
    if (TouchesSubject(d)) rule_subjects[r.event.subject] = d.at;
  }
  for (const auto& [subject, release_at] : rule_subjects) {
    std::set<std::int64_t> seqs;
    if (auto stored = subjects_.find(subject); stored != subjects_.end()) seqs = stored->second;
    for (const auto& [seq, r] : plan.records)
      if (r.event.subject == subject) seqs.insert(seq);
    std::vector<OutboxRecord> working;  // the subject in seq order, as this commit leaves it so far
    for (std::int64_t seq : seqs) working.push_back(*record(seq));
    std::vector<OutboxRecord*> members;
    for (auto& r : working) members.push_back(&r);
    KeepHeldRule(members, release_at, [&](size_t n) { plan.records[working[n].seq] = working[n]; });
  }

  // Dedup keys: the sweep first, then each key, refused while a live one exists.
  plan.sweep_keys_expired_by = ch.sweep_keys_expired_by;
  for (const auto& k : ch.processed) {
    const KeyId key{k.source, k.id};
    const ports::ProcessedKey* before = Find(plan.processed, processed_, key);
    const bool swept = before && !plan.processed.count(key) && plan.sweep_keys_expired_by &&
                       before->expires_at <= *plan.sweep_keys_expired_by;
    if (before && !swept && before->expires_at > k.processed_at)
      return AlreadyProcessed(k.source, k.id);
    plan.processed[key] = k;
  }
  return {};
}

void MemoryStore::Apply(Plan& plan) {
  std::set<std::string> touched;
  for (auto& d : plan.definitions) {
    definition_names_.emplace(d.name, d.id.value);
    touched.insert(d.id.value);
    definitions_[d.id.value].push_back(std::move(d));
  }
  for (const auto& id : touched) SortBySemVer(definitions_[id]);
  for (const auto& id : plan.deleted_definitions)
    for (auto& d : definitions_[id]) d.deleted = true;
  for (auto& [id, i] : plan.instances) instances_[id] = std::move(i);
  for (auto& [id, w] : plan.workers) workers_[id] = std::move(w);
  for (auto& [seq, r] : plan.records) {
    auto it = outbox_.find(seq);
    if (it == outbox_.end()) {
      seq_of_event_[r.event.id] = seq;
      subjects_[r.event.subject].insert(seq);
      it = outbox_.emplace(seq, std::move(r)).first;
    } else {
      Index(it->second, -1);
      it->second = std::move(r);
    }
    Index(it->second, +1);
  }
  last_seq_ += plan.new_events;
  if (plan.sweep_keys_expired_by)
    std::erase_if(processed_, [&](const auto& k) { return k.second.expires_at <= *plan.sweep_keys_expired_by; });
  for (auto& [key, k] : plan.processed) processed_[key] = std::move(k);
}

void MemoryStore::Index(const OutboxRecord& r, int sign) {
  switch (r.state) {
    case DeliveryState::kPending:
      if (sign > 0) pending_.insert(r.seq); else pending_.erase(r.seq);
      break;
    case DeliveryState::kDead: dead_ += sign; break;
    case DeliveryState::kHeld: held_ += sign; break;
    case DeliveryState::kDelivered: break;
  }
}

}  // namespace ccm::store
