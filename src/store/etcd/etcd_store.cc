#include "store/etcd/etcd_store.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "cloudevents/json_parse.h"
#include "store/shared.h"
#include "wire/aggregates.h"

namespace ccm::store {

using namespace ccm::domain;
using ports::Changes;
using etcd::KeyValue;
using nlohmann::json;

namespace {

// A path segment of a key: '/' and '%' escaped, so that (source, id) pairs cannot collide.
std::string KeyPart(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '%') out += "%25";
    else if (c == '/') out += "%2F";
    else out += c;
  }
  return out;
}

Result<json> ParseValue(const KeyValue& kv) {
  json j = cloudevents::ParseJsonOrDiscarded(kv.value);
  if (j.is_discarded()) return Error::Internal("store: the value of " + kv.key + " is not JSON");
  return j;
}

template <typename T, typename Parse>
Result<T> ParseAs(const KeyValue& kv, Parse parse) {
  auto j = ParseValue(kv);
  if (!j) return j.error();
  return parse(*j);
}

// An outbox event's seq: the revision of the commit that wrote it, then its place among that
// commit's events. Revisions are etcd's global commit order, so seqs are too, with no counter
// for concurrent commits to fight over.
constexpr int kSeqIndexBits = 10;
constexpr size_t kMaxEventsPerCommit = 250;

std::int64_t SeqOf(std::int64_t create_revision, std::int64_t n) { return (create_revision << kSeqIndexBits) | n; }

json RecordToJson(const ports::OutboxRecord& r, std::int64_t n) {
  return {{"n", n},
          {"id", r.event.id},
          {"subject", r.event.subject},
          {"type", r.event.type},
          {"time_ms", ToUnixMillis(r.event.time)},
          {"event", r.event.json},
          {"state", std::string(ports::ToString(r.state))},
          {"attempts", r.attempts},
          {"next_attempt_ms", ToUnixMillis(r.next_attempt_at)},
          {"delivered_ms", r.delivered_at ? json(ToUnixMillis(*r.delivered_at)) : json()},
          {"dead_ms", r.dead_at ? json(ToUnixMillis(*r.dead_at)) : json()},
          {"last_error", r.last_error}};
}

// The record stored at `kv` (outbox/events/{id}), with its seq.
Result<ports::OutboxRecord> ReadRecord(const KeyValue& kv) {
  auto parsed = ParseValue(kv);
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  try {
    ports::OutboxRecord r;
    r.seq = SeqOf(kv.create_revision, j.at("n").get<std::int64_t>());
    r.event = {j.at("id").get<std::string>(), j.at("subject").get<std::string>(), j.at("type").get<std::string>(),
               FromUnixMillis(j.at("time_ms").get<std::int64_t>()), j.at("event").get<std::string>()};
    r.state = ports::ParseDeliveryState(j.at("state").get<std::string>()).value_or(ports::DeliveryState::kPending);
    r.attempts = j.at("attempts").get<int>();
    r.next_attempt_at = FromUnixMillis(j.at("next_attempt_ms").get<std::int64_t>());
    if (!j.at("delivered_ms").is_null()) r.delivered_at = FromUnixMillis(j.at("delivered_ms").get<std::int64_t>());
    if (!j.at("dead_ms").is_null()) r.dead_at = FromUnixMillis(j.at("dead_ms").get<std::int64_t>());
    r.last_error = j.at("last_error").get<std::string>();
    return r;
  } catch (const json::exception& e) {
    return Error::Internal(std::string("store: outbox record ") + kv.key + " does not read back: " + e.what());
  }
}

// The index that lists records in `state`, if any: pending/, dead/ or held/.
std::optional<std::string> IndexOf(ports::DeliveryState state) {
  switch (state) {
    case ports::DeliveryState::kPending: return "outbox/pending/";
    case ports::DeliveryState::kDead: return "outbox/dead/";
    case ports::DeliveryState::kHeld: return "outbox/held/";
    case ports::DeliveryState::kDelivered: return std::nullopt;
  }
  return std::nullopt;
}

// A record a commit read and may write back: its state as read, and whether it changed.
struct Touched {
  ports::OutboxRecord record;
  ports::DeliveryState was = ports::DeliveryState::kPending;
  bool dirty = false;
};

// Records in seq order.
Result<std::vector<ports::OutboxRecord>> ReadRecords(const std::vector<KeyValue>& kvs) {
  std::vector<ports::OutboxRecord> out;
  for (const auto& kv : kvs) {
    if (kv.mod_revision == 0) continue;  // gone since its index was read
    auto r = ReadRecord(kv);
    if (!r) return r.error();
    out.push_back(std::move(r.value()));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

// Port -> the instance holding it, over every allocation of a worker.
std::map<int, std::string> PortHolders(const Worker& w) {
  std::map<int, std::string> out;
  for (const auto& [instance, ports] : w.port_allocations)
    for (const auto& [_, port] : ports) out[port] = instance;
  return out;
}

constexpr int kMaxCommitAttempts = 200;
constexpr int kReadChunk = 200;
constexpr size_t kOpsPerRead = 100;  // below etcd's default --max-txn-ops (128)

}  // namespace

EtcdStore::EtcdStore(Options options) : options_(std::move(options)), client_(options_.client) {}

// The dedup leases are not revoked: their keys must outlive this process.
EtcdStore::~EtcdStore() = default;

Result<std::unique_ptr<EtcdStore>> EtcdStore::Open(Options options) {
  if (options.client.endpoints.empty()) return Error::InvalidArgument("store: no etcd endpoints", "CCM_STORE");
  while (!options.prefix.empty() && options.prefix.back() == '/') options.prefix.pop_back();
  std::unique_ptr<EtcdStore> store(new EtcdStore(std::move(options)));
  if (auto s = store->Ping(); !s) return s.error();
  return store;
}

Status EtcdStore::Ping() {
  auto r = client_.Range(Key("controller/leader"), {}, 0, true);
  if (!r) return r.error();
  return {};
}

std::vector<std::string> EtcdStore::EventIndexPrefixes() const {
  return {Key(*IndexOf(ports::DeliveryState::kPending)), Key(*IndexOf(ports::DeliveryState::kHeld))};
}

Result<std::vector<KeyValue>> EtcdStore::GetMany(const std::vector<std::string>& keys) {
  std::vector<KeyValue> out;
  out.reserve(keys.size());
  for (size_t from = 0; from < keys.size(); from += kOpsPerRead) {
    std::vector<etcd::Op> ops;
    for (size_t n = from; n < std::min(keys.size(), from + kOpsPerRead); ++n) ops.push_back(etcd::GetOp(keys[n]));
    auto t = client_.Txn({}, std::move(ops));
    if (!t) return t.error();
    for (size_t n = 0; n < t->ranges.size(); ++n) {
      if (t->ranges[n].kvs.empty()) out.push_back({keys[from + n], {}, 0, 0, 0, 0});
      else out.push_back(t->ranges[n].kvs.front());
    }
  }
  return out;
}

void EtcdStore::Remember(const std::string& key, Known known) {
  std::lock_guard lock(known_mu_);
  // Bounds, not a policy: a miss only costs a read.
  if (known_.size() >= 100'000 || (known.instance && known_instances_ >= kInstancesKept)) {
    known_.clear();
    known_instances_ = 0;
  }
  Known& kept = known_[key];
  // The same revision is the same value: a read that saw what is kept keeps its instance.
  if (!known.instance && kept.instance && kept.mod_revision == known.mod_revision) known.instance = kept.instance;
  known_instances_ += (known.instance ? 1 : 0) - (kept.instance ? 1 : 0);
  kept = std::move(known);
}

void EtcdStore::Forget(const std::string& key) {
  std::lock_guard lock(known_mu_);
  auto it = known_.find(key);
  if (it == known_.end()) return;
  if (it->second.instance) --known_instances_;
  known_.erase(it);
}

void EtcdStore::KeepForUpdate(const std::string& key, const LabletInstance& i) {
  std::lock_guard lock(known_mu_);
  auto it = known_.find(key);
  // Only over what the read itself remembered: a commit or read since then knows better.
  if (it == known_.end() || it->second.version != i.version || it->second.instance ||
      known_instances_ >= kInstancesKept)
    return;
  it->second.instance = std::make_shared<const LabletInstance>(i);
  ++known_instances_;
}

std::optional<EtcdStore::Known> EtcdStore::Recall(const std::string& key, std::int64_t version) {
  std::lock_guard lock(known_mu_);
  auto it = known_.find(key);
  if (it == known_.end() || it->second.version != version) return std::nullopt;
  return it->second;
}

namespace {

// Visits the keys in [from, end) in key order, `chunk` at a time, until `visit` says stop.
Status Scan(etcd::Client& client, std::string from, const std::string& end,
            const std::function<Result<bool>(const KeyValue&)>& visit) {
  for (;;) {
    auto r = client.Range(from, end, kReadChunk);
    if (!r) return r.error();
    for (const auto& kv : r->kvs) {
      auto go_on = visit(kv);
      if (!go_on) return go_on.error();
      if (!*go_on) return {};
    }
    if (!r->more || r->kvs.empty()) return {};
    from = r->kvs.back().key + '\0';
  }
}

}  // namespace

// ---- reads ---------------------------------------------------------------------------------

namespace {

// Every version of one definition, oldest first by semver.
Result<std::vector<LabletDefinition>> ReadVersions(etcd::Client& client, const std::string& prefix) {
  auto r = client.Range(prefix, etcd::PrefixEnd(prefix));
  if (!r) return r.error();
  std::vector<LabletDefinition> out;
  for (const auto& kv : r->kvs) {
    auto d = ParseAs<LabletDefinition>(kv, wire::DefinitionFromJson);
    if (!d) return d.error();
    out.push_back(std::move(d.value()));
  }
  SortBySemVer(out);
  return out;
}

}  // namespace

Result<LabletDefinition> EtcdStore::GetDefinition(const DefinitionId& id, const std::optional<std::string>& version) {
  auto versions = ReadVersions(client_, Key("definitions/" + KeyPart(id.value) + "/"));
  if (!versions) return versions.error();
  return PickVersion(std::move(versions.value()), id, version);
}

Result<std::vector<LabletDefinition>> EtcdStore::ListDefinitionVersions(const DefinitionId& id) {
  auto versions = ReadVersions(client_, Key("definitions/" + KeyPart(id.value) + "/"));
  if (versions && versions->empty()) return Error::NotFound("definition " + id.value + " not found");
  return versions;
}

Result<std::optional<DefinitionId>> EtcdStore::FindDefinitionByName(const std::string& name) {
  auto r = client_.Range(Key("definition-names/" + KeyPart(name)));
  if (!r) return r.error();
  if (r->kvs.empty()) return std::optional<DefinitionId>{};
  return std::optional<DefinitionId>(DefinitionId{r->kvs.front().value});
}

Result<ports::PageOf<LabletDefinition>> EtcdStore::ListDefinitions(const ports::DefinitionFilter& filter,
                                                                  const ports::Page& page) {
  // Definitions are few (one per lab, a handful of versions each): one range reads them all.
  const std::string prefix = Key("definitions/");
  auto r = client_.Range(prefix, etcd::PrefixEnd(prefix));
  if (!r) return r.error();
  std::map<std::string, std::vector<LabletDefinition>> by_id;
  for (const auto& kv : r->kvs) {
    auto d = ParseAs<LabletDefinition>(kv, wire::DefinitionFromJson);
    if (!d) return d.error();
    by_id[d->id.value].push_back(std::move(d.value()));
  }
  ports::PageOf<LabletDefinition> out;
  for (auto& [id, versions] : by_id) {
    if (id <= page.after) continue;
    const bool named = !filter.name || std::any_of(versions.begin(), versions.end(),
                                                   [&](const LabletDefinition& d) { return d.name == *filter.name; });
    if (!named || (!filter.include_deleted && versions.front().deleted)) continue;
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = out.items.back().id.value;
      break;
    }
    SortBySemVer(versions);
    out.items.push_back(versions.back());
  }
  return out;
}

Result<LabletInstance> EtcdStore::ReadInstance(const KeyValue& kv) {
  auto i = ParseAs<LabletInstance>(kv, wire::InstanceFromJson);
  if (i) Remember(kv.key, {kv.mod_revision, kv.version, std::string(ToString(i->state)), {}, nullptr});
  return i;
}

Result<Worker> EtcdStore::ReadWorker(const KeyValue& kv) {
  auto w = ParseAs<Worker>(kv, wire::WorkerFromJson);
  if (w) Remember(kv.key, {kv.mod_revision, kv.version, {}, PortHolders(*w), nullptr});
  return w;
}

Result<LabletInstance> EtcdStore::GetInstance(const InstanceId& id) {
  const std::string key = Key("instances/" + KeyPart(id.value));
  auto r = client_.Range(key);
  if (!r) return r.error();
  if (r->kvs.empty()) {
    Forget(key);
    return Error::NotFound("instance " + id.value + " not found");
  }
  return ReadInstance(r->kvs.front());
}

Result<LabletInstance> EtcdStore::GetInstanceForUpdate(const InstanceId& id) {
  const std::string key = Key("instances/" + KeyPart(id.value));
  std::shared_ptr<const LabletInstance> kept;
  {
    std::lock_guard lock(known_mu_);
    if (auto it = known_.find(key); it != known_.end()) kept = it->second.instance;
  }
  if (kept) return *kept;  // copied outside the lock every read and commit takes
  auto i = GetInstance(id);
  if (i) KeepForUpdate(key, *i);
  return i;
}

Result<ports::InstanceHead> EtcdStore::GetInstanceHead(const InstanceId& id) {
  auto i = GetInstance(id);
  if (!i) return i.error();
  KeepForUpdate(Key("instances/" + KeyPart(id.value)), *i);
  return ports::InstanceHead{i->state, i->version};
}

Result<ports::PageOf<LabletInstance>> EtcdStore::ListInstances(const ports::InstanceFilter& filter, const ports::Page& page) {
  ports::PageOf<LabletInstance> out;
  bool full = false;
  auto take = [&](const LabletInstance& i) -> bool {
    if (!Matches(filter, i)) return true;
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = out.items.back().id.value;
      full = true;
      return false;
    }
    out.items.push_back(i);
    return true;
  };
  if (filter.state) {
    // The state index names the ids; their bodies are read in batches.
    const std::string prefix = Key("instances-by-state/" + std::string(ToString(*filter.state)) + "/");
    std::string from = page.after.empty() ? prefix : prefix + KeyPart(page.after) + '\0';
    while (!full) {
      auto r = client_.Range(from, etcd::PrefixEnd(prefix), kReadChunk);
      if (!r) return r.error();
      std::vector<std::string> keys;
      for (const auto& kv : r->kvs) keys.push_back(Key("instances/" + kv.key.substr(prefix.size())));
      auto bodies = GetMany(keys);
      if (!bodies) return bodies.error();
      for (const auto& kv : *bodies) {
        if (kv.mod_revision == 0) continue;  // gone since the index was read
        auto i = ReadInstance(kv);
        if (!i) return i.error();
        if (!take(*i)) break;
      }
      if (!r->more || r->kvs.empty()) break;
      from = r->kvs.back().key + '\0';
    }
    return out;
  }
  const std::string prefix = Key("instances/");
  auto s = Scan(client_, page.after.empty() ? prefix : prefix + KeyPart(page.after) + '\0', etcd::PrefixEnd(prefix),
                [&](const KeyValue& kv) -> Result<bool> {
                  auto i = ReadInstance(kv);
                  if (!i) return i.error();
                  return take(*i);
                });
  if (!s) return s.error();
  return out;
}

Result<std::map<InstanceState, ports::StateCount>> EtcdStore::CountInstances() {
  // Read through the state index, every live state in turn (no index of entry times here).
  std::map<InstanceState, ports::StateCount> counts;
  for (const InstanceState state : kAllInstanceStates) {
    if (state == InstanceState::kTerminated) continue;
    ports::InstanceFilter filter;
    filter.state = state;
    ports::Page page{ports::kMaxPageLimit, ""};
    for (;;) {
      auto got = ListInstances(filter, page);
      if (!got) return got.error();
      for (const auto& i : got->items) Count(counts, i);
      if (got->next.empty()) break;
      page.after = got->next;
    }
  }
  return counts;
}

Result<Worker> EtcdStore::GetWorker(const WorkerId& id) {
  auto r = client_.Range(Key("workers/" + KeyPart(id.value)));
  if (!r) return r.error();
  if (r->kvs.empty()) return Error::NotFound("worker " + id.value + " not found");
  return ReadWorker(r->kvs.front());
}

Result<std::string> EtcdStore::GetWorkerHostname(const WorkerId& id) {
  auto r = client_.Range(Key("workers/" + KeyPart(id.value)));
  if (!r) return r.error();
  if (r->kvs.empty()) return Error::NotFound("worker " + id.value + " not found");
  auto hostname = cloudevents::FindTopLevelString(r->kvs.front().value, "hostname");
  if (!hostname) return Error::Internal("store: worker " + id.value + " has no hostname");
  return std::move(*hostname);
}

Result<ports::PageOf<Worker>> EtcdStore::ListWorkers(const ports::Page& page) {
  const std::string prefix = Key("workers/");
  auto r = client_.Range(page.after.empty() ? prefix : prefix + KeyPart(page.after) + '\0', etcd::PrefixEnd(prefix),
                         page.limit + 1);
  if (!r) return r.error();
  ports::PageOf<Worker> out;
  for (const auto& kv : r->kvs) {
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = out.items.back().id.value;
      break;
    }
    auto w = ReadWorker(kv);
    if (!w) return w.error();
    out.items.push_back(std::move(w.value()));
  }
  return out;
}

Result<std::optional<std::string>> EtcdStore::ProcessedValue(const std::string& source, const std::string& id,
                                                             Timestamp now) {
  auto r = client_.Range(Key("events/processed/" + KeyPart(source) + "/" + KeyPart(id)));
  if (!r) return r.error();
  if (r->kvs.empty()) return std::optional<std::string>();
  auto j = ParseValue(r->kvs.front());
  if (!j) return j.error();
  if (j->value("expires_ms", std::int64_t{0}) <= ToUnixMillis(now)) return std::optional<std::string>();
  return std::optional<std::string>(j->value("value", ""));
}

Result<std::vector<ports::OutboxRecord>> EtcdStore::DueEvents(Timestamp now, int limit) {
  // The pending index in creation order, bounded as in the SQLite store, then the records.
  const std::string prefix = Key("outbox/pending/");
  const std::int64_t window = static_cast<std::int64_t>(limit) * 4 + 64;
  auto pending = client_.RangeByCreation(prefix, 0, window);
  if (!pending) return pending.error();
  // Keys created in one transaction (a commit's events, a replay with the events it releases)
  // share a create revision, and etcd does not order them among themselves: a window cut
  // through the last such group could keep a subject's later event and drop its earlier one.
  // That group waits for the next round.
  if (static_cast<std::int64_t>(pending->kvs.size()) == window) {
    const std::int64_t last = pending->kvs.back().create_revision;
    if (pending->kvs.front().create_revision != last)
      std::erase_if(pending->kvs, [last](const KeyValue& kv) { return kv.create_revision == last; });
  }
  std::vector<std::string> keys;
  for (const auto& kv : pending->kvs) keys.push_back(Key("outbox/events/" + kv.key.substr(prefix.size())));
  auto kvs = GetMany(keys);
  if (!kvs) return kvs.error();
  auto records = ReadRecords(*kvs);
  if (!records) return records.error();
  std::vector<ports::OutboxRecord> out;
  std::set<std::string> blocked;
  for (auto& r : *records) {
    if (static_cast<int>(out.size()) == limit) break;
    if (r.state != ports::DeliveryState::kPending || blocked.count(r.event.subject)) continue;
    if (r.next_attempt_at > now) {
      blocked.insert(r.event.subject);
      continue;
    }
    out.push_back(std::move(r));
  }
  return out;
}

Result<ports::PageOf<ports::OutboxRecord>> EtcdStore::ListEvents(const ports::EventFilter& f, const ports::Page& page) {
  auto cursor = ParseSeqCursor(page.after);
  if (!cursor) return cursor.error();
  std::int64_t after = *cursor;
  // Creation order from the revision of `after` on; a chunk always reaches past one
  // revision (one commit holds at most kMaxEventsPerCommit events), so each round moves on.
  const std::string prefix = Key("outbox/events/");
  const std::int64_t chunk = page.limit + 1 + static_cast<std::int64_t>(kMaxEventsPerCommit);
  ports::PageOf<ports::OutboxRecord> out;
  for (;;) {
    auto r = client_.RangeByCreation(prefix, after >> kSeqIndexBits, chunk);
    if (!r) return r.error();
    auto records = ReadRecords(r->kvs);
    if (!records) return records.error();
    for (auto& rec : *records) {
      if (rec.seq <= after) continue;
      after = rec.seq;
      if ((f.subject && rec.event.subject != *f.subject) || (f.type && rec.event.type != *f.type) ||
          (f.since && rec.event.time < *f.since) || (f.until && rec.event.time >= *f.until) ||
          (f.state && rec.state != *f.state))
        continue;
      if (static_cast<int>(out.items.size()) == page.limit) {
        out.next = std::to_string(out.items.back().seq);
        return out;
      }
      out.items.push_back(std::move(rec));
    }
    if (static_cast<std::int64_t>(r->kvs.size()) < chunk) return out;
  }
}

Result<ports::OutboxRecord> EtcdStore::GetEvent(const std::string& event_id) {
  auto r = client_.Range(Key("outbox/events/" + KeyPart(event_id)));
  if (!r) return r.error();
  if (r->kvs.empty()) return Error::NotFound("event " + event_id + " not found");
  return ReadRecord(r->kvs.front());
}

Result<ports::OutboxStats> EtcdStore::GetOutboxStats() {
  ports::OutboxStats stats;
  // Events removed by retention still count as published.
  auto purged = client_.Range(Key("outbox/purged"));
  if (!purged) return purged.error();
  std::int64_t removed = 0;
  if (!purged->kvs.empty()) {
    const auto& v = purged->kvs.front().value;
    std::from_chars(v.data(), v.data() + v.size(), removed);
  }
  for (auto [area, count] : {std::pair{"outbox/events/", &stats.published}, std::pair{"outbox/pending/", &stats.pending},
                             std::pair{"outbox/dead/", &stats.dead}, std::pair{"outbox/held/", &stats.held}}) {
    auto r = client_.Range(Key(area), etcd::PrefixEnd(Key(area)), 0, true);
    if (!r) return r.error();
    *count = r->count;
  }
  stats.published += removed;
  return stats;
}

Result<std::int64_t> EtcdStore::LastSeq() {
  // Seqs come from revisions, with no counter key: the newest record names the last commit
  // that wrote events, and the events of that one commit (at most kMaxEventsPerCommit) hold
  // the greatest seq.
  const std::string prefix = Key("outbox/events/");
  auto newest = client_.RangeByCreation(prefix, 0, 1, true);
  if (!newest) return newest.error();
  if (newest->kvs.empty()) return std::int64_t{0};
  auto first = ReadRecord(newest->kvs.front());
  if (!first) return first.error();
  auto last_commit = client_.RangeByCreation(prefix, newest->kvs.front().create_revision,
                                             static_cast<std::int64_t>(kMaxEventsPerCommit) + 1);
  if (!last_commit) return last_commit.error();
  auto records = ReadRecords(last_commit->kvs);
  if (!records) return records.error();
  // Purged meanwhile, that commit's other events are gone: the one read first still bounds them.
  return records->empty() ? first->seq : std::max(first->seq, records->back().seq);
}

Result<ports::PurgeCounts> EtcdStore::PurgeFenced(Timestamp terminated_before, Timestamp delivered_before, int limit,
                                                const std::optional<Fence>& fence) {
  std::vector<etcd::Compare> fenced;
  if (fence) {
    fenced.push_back(etcd::CreateRevisionIs(fence->key, fence->create_revision));
    if (fence->lease != 0) fenced.push_back(etcd::LeaseIs(fence->key, fence->lease));
  }
  // Deletes each record read (guarded by its mod revision) with its index entry, and `extra`
  // operations under `extra_compare`, in one transaction; false when something changed
  // meanwhile (the next purge looks again).
  using Doomed = std::vector<std::pair<KeyValue, std::string>>;  // record, index key
  auto remove = [&](const Doomed& doomed, std::vector<etcd::Compare> extra_compare,
                    std::vector<etcd::Op> extra) -> Result<bool> {
    std::vector<etcd::Compare> compare = fenced;
    std::vector<etcd::Op> ops;
    for (auto& c : extra_compare) compare.push_back(std::move(c));
    for (const auto& [kv, index_key] : doomed) {
      compare.push_back(etcd::ModRevisionIs(kv.key, kv.mod_revision));
      ops.push_back(etcd::DeleteOp(kv.key));
      ops.push_back(etcd::DeleteOp(index_key));
    }
    for (auto& op : extra) ops.push_back(std::move(op));
    auto t = client_.Txn(std::move(compare), std::move(ops));
    if (!t) return t.error();
    return t->succeeded;
  };
  constexpr size_t kPerTxn = 30;  // 2 deletes and 1 compare each, under etcd's default 128
  auto chunks = [](const Doomed& all, size_t from) {
    return Doomed(all.begin() + static_cast<std::ptrdiff_t>(from),
                  all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), from + kPerTxn)));
  };
  ports::PurgeCounts counts;

  // Instances: the first TERMINATED ones of the state index, when they ended long enough ago.
  const std::string index = Key("instances-by-state/TERMINATED/");
  auto listed = client_.Range(index, etcd::PrefixEnd(index), limit);
  if (!listed) return listed.error();
  std::vector<std::string> keys;
  for (const auto& kv : listed->kvs) keys.push_back(Key("instances/" + kv.key.substr(index.size())));
  auto bodies = GetMany(keys);
  if (!bodies) return bodies.error();
  const std::string cutoff = FormatRfc3339(terminated_before);
  std::vector<std::pair<KeyValue, std::string>> instances;
  for (size_t n = 0; n < bodies->size(); ++n) {
    const KeyValue& kv = (*bodies)[n];
    auto j = ParseValue(kv);
    if (kv.mod_revision == 0 || !j || j->value("state", "") != "TERMINATED") continue;
    const json& at = (*j)["terminated_at"];
    if (at.is_string() && at.get<std::string>() < cutoff) instances.push_back({kv, listed->kvs[n].key});
  }
  for (size_t from = 0; from < instances.size(); from += kPerTxn) {
    const Doomed part = chunks(instances, from);
    auto done = remove(part, {}, {});
    if (!done) return done.error();
    if (!*done) break;
    counts.instances += static_cast<int>(part.size());
    for (const auto& [kv, _] : part) Forget(kv.key);
  }

  // Events: the oldest of the outbox (event ids are ordered by time), delivered long enough
  // ago; their subject entries go with them, and the published count keeps them.
  const std::string events = Key("outbox/events/");
  auto oldest = client_.Range(events, etcd::PrefixEnd(events), limit);
  if (!oldest) return oldest.error();
  std::vector<std::pair<KeyValue, std::string>> delivered;
  for (const auto& kv : oldest->kvs) {
    auto r = ReadRecord(kv);
    if (!r || r->state != ports::DeliveryState::kDelivered || !r->delivered_at || *r->delivered_at >= delivered_before)
      continue;
    delivered.push_back({kv, Key("outbox/subjects/" + KeyPart(r->event.subject) + "/" + kv.key.substr(events.size()))});
  }
  const std::string purged_key = Key("outbox/purged");
  for (size_t from = 0; from < delivered.size(); from += kPerTxn) {
    const Doomed part = chunks(delivered, from);
    // The count of purged events moves with them, guarded like them.
    auto purged = client_.Range(purged_key);
    if (!purged) return purged.error();
    std::int64_t before = 0, revision = 0;
    if (!purged->kvs.empty()) {
      const auto& v = purged->kvs.front().value;
      std::from_chars(v.data(), v.data() + v.size(), before);
      revision = purged->kvs.front().mod_revision;
    }
    auto done = remove(part, {etcd::ModRevisionIs(purged_key, revision)},
                       {etcd::PutOp(purged_key, std::to_string(before + static_cast<std::int64_t>(part.size())))});
    if (!done) return done.error();
    if (!*done) break;
    counts.events += static_cast<int>(part.size());
  }
  return counts;
}

// ---- writes --------------------------------------------------------------------------------

Result<std::int64_t> EtcdStore::LeaseFor(Timestamp expires_at) {
  using namespace std::chrono;
  const std::int64_t bucket_ms = duration_cast<milliseconds>(options_.dedup_bucket).count();
  const std::int64_t bucket = ToUnixMillis(expires_at) / bucket_ms;
  std::lock_guard lock(lease_mu_);
  // Buckets that have ended are forgotten (their leases expire on their own).
  const std::int64_t wall_ms = duration_cast<milliseconds>(options_.wall_clock().time_since_epoch()).count();
  // A lease lives until its bucket's end, and at least a minute: keys stamped with a time
  // that is already past (a clock behind the wall clock) still get one.
  const std::int64_t ttl_s = std::max<std::int64_t>(60, ((bucket + 1) * bucket_ms - wall_ms) / 1000 + 60);
  auto it = bucket_leases_.find(bucket);
  if (it != bucket_leases_.end()) return it->second;
  auto lease = client_.GrantLease(seconds(ttl_s));
  if (!lease) return lease.error();
  // Leases of buckets long past may have expired: never reuse one.
  for (auto old = bucket_leases_.begin(); old != bucket_leases_.end();)
    old = old->first * bucket_ms + bucket_ms + 60'000 < wall_ms ? bucket_leases_.erase(old) : std::next(old);
  bucket_leases_[bucket] = *lease;
  return *lease;
}

Status EtcdStore::Commit(const Changes& changes) { return CommitFenced(changes, std::nullopt); }

Status EtcdStore::CommitFenced(const Changes& changes, const std::optional<Fence>& fence) {
  if (changes.empty()) return {};
  // Delivery bookkeeping alone (the dispatcher's rounds, a replay of every dead letter) may
  // touch hundreds of events: it goes in transactions of a bounded size, each all or nothing.
  constexpr size_t kDeliveriesPerTxn = 40;  // three operations each, under etcd's default 128
  const bool deliveries_only = changes.new_definitions.empty() && changes.deleted_definitions.empty() &&
                               changes.instances.empty() && changes.workers.empty() && changes.events.empty() &&
                               changes.processed.empty() && !changes.sweep_keys_expired_by;
  // An update that dead-letters or replays an event reads and guards every record of its
  // subject (the held rule): it goes alone, so that one round dead-lettering many subjects
  // does not make one transaction too large for etcd to take (and the round stuck on it).
  if (deliveries_only && changes.deliveries.size() > 1 &&
      (changes.deliveries.size() > kDeliveriesPerTxn ||
       std::any_of(changes.deliveries.begin(), changes.deliveries.end(), TouchesSubject))) {
    Changes part;
    const auto flush = [&]() -> Status {
      if (part.deliveries.empty()) return {};
      Status s = CommitFenced(part, fence);
      part.deliveries.clear();
      return s;
    };
    for (const auto& d : changes.deliveries) {
      if (TouchesSubject(d) || part.deliveries.size() == kDeliveriesPerTxn)
        if (auto s = flush(); !s) return s;
      part.deliveries.push_back(d);
      if (TouchesSubject(d))
        if (auto s = flush(); !s) return s;
    }
    return flush();
  }
  thread_local std::minstd_rand jitter(std::random_device{}());
  for (int attempt = 0; attempt < kMaxCommitAttempts; ++attempt) {
    auto done = TryCommit(changes, fence, attempt == 0);
    if (!done) return done.error();
    if (*done) {
      if (changes.sweep_keys_expired_by)
        if (auto s = SweepKeys(*changes.sweep_keys_expired_by); !s) return s;
      if (!changes.events.empty() && options_.on_events_committed) options_.on_events_committed();
      return {};
    }
    ++retries_;
    // Another commit changed a key this one read: decide again on fresh reads, after a
    // short random pause so that racing commits spread out.
    std::this_thread::sleep_for(std::chrono::microseconds(jitter() % (200 * (1 + std::min(attempt, 20)))));
  }
  return Error::StaleVersion("store: the commit kept racing other writers");
}

Status EtcdStore::SweepKeys(Timestamp expired_by) {
  // Leases remove keys once their hour is over; this catches keys stamped by a clock that
  // runs ahead of the wall clock, and is what the explicit sweep promises.
  const std::string prefix = Key("events/processed/");
  std::vector<std::string> expired;
  auto s = Scan(client_, prefix, etcd::PrefixEnd(prefix), [&](const KeyValue& kv) -> Result<bool> {
    auto j = ParseValue(kv);
    if (j && j->value("expires_ms", std::int64_t{0}) <= ToUnixMillis(expired_by)) expired.push_back(kv.key);
    return true;
  });
  if (!s) return s;
  for (size_t from = 0; from < expired.size(); from += kOpsPerRead) {
    std::vector<etcd::Op> ops;
    for (size_t n = from; n < std::min(expired.size(), from + kOpsPerRead); ++n) ops.push_back(etcd::DeleteOp(expired[n]));
    if (auto t = client_.Txn({}, std::move(ops)); !t) return t.error();
  }
  return {};
}

// ---- one commit attempt: read, decide, write -------------------------------------------------

// The keys a commit names, under the store's prefix.
struct EtcdStore::CommitKeys {
  const EtcdStore& store;
  std::string operator()(std::string_view area) const { return store.Key(area); }
  std::string Version(const LabletDefinition& d) const {
    return store.Key("definitions/" + KeyPart(d.id.value) + "/" + KeyPart(d.version));
  }
  std::string Name(const std::string& name) const { return store.Key("definition-names/" + KeyPart(name)); }
  std::string Instance(const InstanceId& id) const { return store.Key("instances/" + KeyPart(id.value)); }
  std::string Worker(const WorkerId& id) const { return store.Key("workers/" + KeyPart(id.value)); }
  std::string Record(const std::string& event_id) const { return store.Key("outbox/events/" + KeyPart(event_id)); }
  std::string Processed(const ports::ProcessedKey& k) const {
    return store.Key("events/processed/" + KeyPart(k.source) + "/" + KeyPart(k.id));
  }
  std::string Blocked(const std::string& subject) const { return store.Key("outbox/blocked/" + KeyPart(subject)); }
  std::string SubjectPrefix(const std::string& subject) const {
    return store.Key("outbox/subjects/" + KeyPart(subject) + "/");
  }
  // The reservation a new instance takes, or a terminated one gives up (see Store::Commit).
  std::optional<std::string> Reservation(const LabletInstance& i) const {
    if (!i.reservation_id || (i.version != 0 && i.state != InstanceState::kTerminated)) return std::nullopt;
    return store.Key("reservations/" + KeyPart(*i.reservation_id));
  }
};

// What one attempt read: every key the commit depends on, and the guards that keep it true
// until the write.
struct EtcdStore::CommitReads {
  std::deque<KeyValue> kvs;  // a deque: by_key points into it
  std::unordered_map<std::string, const KeyValue*> by_key;
  // Per instance and per worker of the commit: what it was, and whether that was recalled
  // (then decide guards it) rather than read (then its read is guarded here).
  std::vector<std::pair<Known, bool>> instances, workers;
  std::map<std::string, std::vector<std::string>> rule_subjects;  // subject -> its record keys
  std::vector<std::vector<KeyValue>> deleted_versions;           // per deleted definition
  std::set<std::string> event_subjects;
  std::vector<etcd::Compare> guards;
  bool already_written = false;  // an earlier attempt was committed (its answer was lost)

  const KeyValue& Get(const std::string& key) const { return *by_key.at(key); }
  void Add(std::vector<KeyValue> got) {
    for (auto& kv : got) {
      guards.push_back(etcd::ModRevisionIs(kv.key, kv.mod_revision));
      const KeyValue& kept = kvs.emplace_back(std::move(kv));
      by_key[kept.key] = &kept;
    }
  }
};

// What one attempt writes: the guards and one operation per key (etcd refuses a transaction
// that names a key twice: a later write of the same key, such as one name for several
// versions, replaces the earlier). Dedup keys wait for their lease, which is found when writing.
struct EtcdStore::CommitPlan {
  struct LeasedPut {
    std::string key;
    std::string value;
    Timestamp expires_at;
  };
  std::vector<etcd::Compare> compare;
  std::map<std::string, etcd::Op> writes;
  std::vector<LeasedPut> leased;
  // Each instance of the commit as it is written, read back from its value, in order.
  std::vector<std::shared_ptr<const LabletInstance>> instances;

  void Put(const std::string& key, const std::string& value) { writes[key] = etcd::PutOp(key, value); }
  void Delete(const std::string& key) { writes[key] = etcd::DeleteOp(key); }
};

// 1. Read: what the commit depends on, in one read (less what a recent read already told),
// then what the held rule and deleted definitions need.
Result<EtcdStore::CommitReads> EtcdStore::ReadForCommit(const Changes& ch, bool optimistic) {
  if (ch.events.size() > kMaxEventsPerCommit)
    return Error::InvalidArgument("store: at most " + std::to_string(kMaxEventsPerCommit) + " events per commit",
                                  "events");
  for (const auto& d : ch.deliveries) {
    if (d.event_id.empty()) return Error::InvalidArgument("store: a delivery update names no event id", "event_id");
    if (d.state == ports::DeliveryState::kHeld) return HeldIsNotWritten();
  }
  const CommitKeys keys{*this};
  CommitReads reads;
  std::vector<std::string> wanted;
  for (const auto& d : ch.new_definitions) {
    wanted.push_back(keys.Version(d));
    wanted.push_back(keys.Name(d.name));
  }
  const auto recall = [&](const std::string& key, std::int64_t version) {
    std::optional<Known> known = optimistic ? Recall(key, version) : std::nullopt;
    if (!known) wanted.push_back(key);
    return std::pair<Known, bool>{known.value_or(Known{}), known.has_value()};
  };
  for (const auto& i : ch.instances) reads.instances.push_back(recall(keys.Instance(i.id), i.version));
  for (const auto& w : ch.workers) reads.workers.push_back(recall(keys.Worker(w.id), w.version));
  for (const auto& d : ch.deliveries) wanted.push_back(keys.Record(d.event_id));
  for (const auto& k : ch.processed) wanted.push_back(keys.Processed(k));
  for (const auto& i : ch.instances)
    if (auto key = keys.Reservation(i)) wanted.push_back(*key);
  for (const auto& e : ch.events) reads.event_subjects.insert(e.subject);
  if (!optimistic) {
    for (const auto& e : ch.events) wanted.push_back(keys.Record(e.id));
    for (const auto& subject : reads.event_subjects) wanted.push_back(keys.Blocked(subject));
  }
  if (!wanted.empty()) {
    auto got = GetMany(wanted);
    if (!got) return got.error();
    reads.Add(std::move(got.value()));
  }
  // An earlier attempt whose answer was lost (a timeout, a member dying mid-request, the
  // client then asking another member) may have been written. Event ids are new to each
  // commit, so finding this commit's first event means all of it is there: done.
  if (!optimistic && !ch.events.empty() && reads.Get(keys.Record(ch.events.front().id)).mod_revision != 0) {
    reads.already_written = true;
    return reads;
  }
  if (auto s = KnowWhatWasRead(ch, reads); !s) return s.error();
  if (auto s = ReadRuleSubjects(ch, reads); !s) return s.error();
  for (const auto& id : ch.deleted_definitions) {
    const std::string prefix = Key("definitions/" + KeyPart(id.value) + "/");
    auto r = client_.Range(prefix, etcd::PrefixEnd(prefix));
    if (!r) return r.error();
    if (r->kvs.empty()) return Error::NotFound("definition " + id.value + " not found");
    for (const auto& kv : r->kvs) reads.guards.push_back(etcd::ModRevisionIs(kv.key, kv.mod_revision));
    reads.deleted_versions.push_back(std::move(r->kvs));
  }
  return reads;
}

// The state of each instance and the ports of each worker just read, remembered for the
// next commit on them.
Status EtcdStore::KnowWhatWasRead(const Changes& ch, CommitReads& reads) {
  const CommitKeys keys{*this};
  const auto know = [&](std::pair<Known, bool>& before, const std::string& key, auto describe) -> Status {
    if (before.second) return {};
    const KeyValue& kv = reads.Get(key);
    before.first = Known{kv.mod_revision, kv.version, {}, {}, nullptr};
    if (kv.mod_revision == 0) {
      Forget(key);  // gone (purged by another replica): nothing of it may be recalled
      return {};
    }
    if (auto s = describe(kv, before.first); !s) return s;
    Remember(key, before.first);
    return {};
  };
  for (size_t n = 0; n < ch.instances.size(); ++n) {
    auto s = know(reads.instances[n], keys.Instance(ch.instances[n].id), [](const KeyValue& kv, Known& k) -> Status {
      auto old = ParseValue(kv);
      if (!old) return old.error();
      k.state = old->value("state", "");
      return {};
    });
    if (!s) return s;
  }
  for (size_t n = 0; n < ch.workers.size(); ++n) {
    auto s = know(reads.workers[n], keys.Worker(ch.workers[n].id), [](const KeyValue& kv, Known& k) -> Status {
      auto old = ParseAs<Worker>(kv, wire::WorkerFromJson);
      if (!old) return old.error();
      k.ports = PortHolders(*old);
      return {};
    });
    if (!s) return s;
  }
  return {};
}

// The subjects where a delivery update dead-letters or replays an event: all their events
// (through outbox/subjects/), and whether they are blocked. A rare path: a round that only
// delivers or retries reads nothing more.
Status EtcdStore::ReadRuleSubjects(const Changes& ch, CommitReads& reads) {
  const CommitKeys keys{*this};
  for (const auto& d : ch.deliveries) {
    if (!TouchesSubject(d)) continue;
    const KeyValue& kv = reads.Get(keys.Record(d.event_id));
    if (kv.mod_revision == 0) continue;  // reported as not found by decide
    auto r = ReadRecord(kv);
    if (!r) return r.error();
    if (reads.rule_subjects.count(r->event.subject)) continue;
    const std::string prefix = keys.SubjectPrefix(r->event.subject);
    auto members = client_.Range(prefix, etcd::PrefixEnd(prefix));
    if (!members) return members.error();
    // A new event of the subject written after this read must make this commit decide again.
    reads.guards.push_back(etcd::NothingChangedSince(prefix, members->revision));
    auto& record_keys = reads.rule_subjects[r->event.subject];
    for (const auto& m : members->kvs) record_keys.push_back(keys.Record(m.key.substr(prefix.size())));
  }
  if (reads.rule_subjects.empty()) return {};
  std::vector<std::string> more;
  for (const auto& [subject, record_keys] : reads.rule_subjects) {
    more.push_back(keys.Blocked(subject));
    for (const auto& k : record_keys) more.push_back(k);
  }
  std::sort(more.begin(), more.end());
  more.erase(std::unique(more.begin(), more.end()), more.end());
  std::erase_if(more, [&reads](const std::string& k) { return reads.by_key.count(k) > 0; });
  auto got = GetMany(more);
  if (!got) return got.error();
  reads.Add(std::move(got.value()));
  return {};
}

// 2. Decide: from what was read, the guards and the operations, or the commit's refusal.
// No I/O: everything it needs is in the reads.
class EtcdStore::CommitDecision {
 public:
  CommitDecision(CommitKeys keys, const Changes& ch, const CommitReads& reads, bool optimistic)
      : keys_(keys), ch_(ch), reads_(reads), optimistic_(optimistic) {}

  Result<CommitPlan> Decide() {
    plan_.compare = reads_.guards;
    for (auto step : {&CommitDecision::Definitions, &CommitDecision::Instances, &CommitDecision::Workers,
                      &CommitDecision::Deliveries, &CommitDecision::ProcessedKeys, &CommitDecision::NewEvents})
      if (auto s = (this->*step)(); !s) return s.error();
    return std::move(plan_);
  }

 private:
  // A version exists once; a name belongs to one id. Deleting marks every version.
  Status Definitions() {
    for (const auto& d : ch_.new_definitions) {
      const KeyValue& version = reads_.Get(keys_.Version(d));
      const KeyValue& name = reads_.Get(keys_.Name(d.name));
      if (version.mod_revision != 0) return DefinitionVersionTaken(d.name, d.version);
      if (name.mod_revision != 0 && name.value != d.id.value) return NameTaken(d.name, name.value);
      plan_.Put(version.key, wire::ToJson(d, wire::Secrets::kShown).dump());
      plan_.Put(name.key, d.id.value);
    }
    for (const auto& versions : reads_.deleted_versions)
      for (const auto& kv : versions) {
        auto j = ParseValue(kv);
        if (!j) return j.error();
        (*j)["deleted"] = true;
        plan_.Put(kv.key, j->dump());
      }
    return {};
  }

  // What a commit found of an aggregate; a recalled one is guarded here (a read one already is).
  const Known& Before(const std::pair<Known, bool>& found, const std::string& key) {
    if (found.second) plan_.compare.push_back(etcd::ModRevisionIs(key, found.first.mod_revision));
    return found.first;
  }

  // Each instance at the version it was read at, with its state index; one instance not yet
  // TERMINATED per reservation.
  Status Instances() {
    for (size_t n = 0; n < ch_.instances.size(); ++n) {
      const auto& i = ch_.instances[n];
      const std::string key = keys_.Instance(i.id);
      const Known& before = Before(reads_.instances[n], key);
      // etcd counts a key's writes since its creation: that is the instance's version.
      if (before.version != i.version) return StaleVersion("instance", i.id.value, i.version);
      json body = wire::ToJson(i);
      body["version"] = i.version + 1;
      plan_.Put(key, body.dump());
      // What a read would give back (times at the stored precision), for the next change.
      auto written = wire::InstanceFromJson(body);
      if (!written) return written.error();
      plan_.instances.push_back(std::make_shared<const LabletInstance>(std::move(written.value())));
      const std::string state(ToString(i.state));
      if (before.state != state) {
        if (!before.state.empty()) plan_.Delete(keys_("instances-by-state/" + before.state + "/" + KeyPart(i.id.value)));
        plan_.Put(keys_("instances-by-state/" + state + "/" + KeyPart(i.id.value)), "");
      }
      if (auto rkey = keys_.Reservation(i)) {
        const KeyValue& holder = reads_.Get(*rkey);
        const bool held_by_other = holder.mod_revision != 0 && holder.value != i.id.value;
        if (i.state == InstanceState::kTerminated) {
          if (holder.mod_revision != 0 && !held_by_other) plan_.Delete(*rkey);
        } else if (held_by_other) {
          return ReservationHeld(*i.reservation_id, holder.value);
        } else {
          plan_.Put(*rkey, i.id.value);
        }
      }
    }
    return {};
  }

  // Each worker at the version it was read at; a port newly given out must be free.
  Status Workers() {
    for (size_t n = 0; n < ch_.workers.size(); ++n) {
      const auto& w = ch_.workers[n];
      const std::string key = keys_.Worker(w.id);
      const Known& before = Before(reads_.workers[n], key);
      if (before.version != w.version) return StaleVersion("worker", w.id.value, w.version);
      json body = wire::ToJson(w);
      body["version"] = w.version + 1;
      plan_.Put(key, body.dump());
      const auto after = PortHolders(w);
      const std::string ports = keys_("ports/" + KeyPart(w.id.value) + "/");
      for (const auto& [port, holder] : before.ports)
        if (!after.count(port)) plan_.Delete(ports + std::to_string(port));
      for (const auto& [port, holder] : after) {
        auto was = before.ports.find(port);
        if (was != before.ports.end() && was->second == holder) continue;
        // Newly given out: its key must not exist.
        if (was == before.ports.end()) plan_.compare.push_back(etcd::ModRevisionIs(ports + std::to_string(port), 0));
        plan_.Put(ports + std::to_string(port), holder);
      }
    }
    return {};
  }

  // The working copy of a record read, made on first use.
  Result<Touched*> Working(const KeyValue& kv) {
    auto it = touched_.find(kv.key);
    if (it == touched_.end()) {
      auto r = ReadRecord(kv);
      if (!r) return r.error();
      const ports::DeliveryState was = r->state;
      it = touched_.emplace(kv.key, Touched{std::move(r.value()), was, false}).first;
    }
    return &it->second;
  }

  // Delivery updates on working copies of the records, then the held rule on the subjects
  // that need it; each record changed is written once, with its index keys when its state
  // moved (so that a delivery costs two operations and a retry one).
  Status Deliveries() {
    std::map<std::string, Timestamp> release_at;  // rule subject -> when released events are due
    for (const auto& d : ch_.deliveries) {
      const KeyValue& kv = reads_.Get(keys_.Record(d.event_id));
      const auto missing = [&] {
        return Error::NotFound("outbox event " + d.event_id + " (seq " + std::to_string(d.seq) + ") not found");
      };
      if (kv.mod_revision == 0) return missing();
      auto t = Working(kv);
      if (!t) return t.error();
      if ((*t)->record.seq != d.seq) return missing();
      ApplyDelivery((*t)->record, d);
      (*t)->dirty = true;
      release_at[(*t)->record.event.subject] = d.at;
    }
    for (const auto& [subject, record_keys] : reads_.rule_subjects)
      if (auto s = HeldRule(subject, record_keys, release_at[subject]); !s) return s;
    for (const auto& [key, t] : touched_) {
      if (!t.dirty) continue;
      plan_.Put(key, RecordToJson(t.record, t.record.seq & ((1 << kSeqIndexBits) - 1)).dump());
      if (t.record.state == t.was) continue;
      const std::string id = KeyPart(t.record.event.id);
      if (auto index = IndexOf(t.was)) plan_.Delete(keys_(*index + id));
      if (auto index = IndexOf(t.record.state)) plan_.Put(keys_(*index + id), "");
    }
    return {};
  }

  // The held rule on one subject's records, and its blocked marker.
  Status HeldRule(const std::string& subject, const std::vector<std::string>& record_keys, Timestamp release_at) {
    std::vector<Touched*> members;
    for (const auto& key : record_keys) {
      const KeyValue& kv = reads_.Get(key);
      if (kv.mod_revision == 0) continue;
      auto t = Working(kv);
      if (!t) return t.error();
      members.push_back(*t);
    }
    std::sort(members.begin(), members.end(), [](const auto* a, const auto* b) { return a->record.seq < b->record.seq; });
    std::vector<ports::OutboxRecord*> records;
    for (Touched* t : members) records.push_back(&t->record);
    if (KeepHeldRule(records, release_at, [&members](size_t n) { members[n]->dirty = true; }))
      blocked_subjects_.insert(subject);
    const KeyValue& marker = reads_.Get(keys_.Blocked(subject));
    if (blocked_subjects_.count(subject) && marker.mod_revision == 0) plan_.Put(marker.key, "");
    if (!blocked_subjects_.count(subject) && marker.mod_revision != 0) plan_.Delete(marker.key);
    return {};
  }

  // An expired key is taken over; a live one means the event was already applied.
  Status ProcessedKeys() {
    for (const auto& k : ch_.processed) {
      const KeyValue& kv = reads_.Get(keys_.Processed(k));
      if (kv.mod_revision != 0) {
        auto j = ParseValue(kv);
        if (!j) return j.error();
        if (j->value("expires_ms", std::int64_t{0}) > ToUnixMillis(k.processed_at))
          return AlreadyProcessed(k.source, k.id);
      }
      json value = {{"processed_ms", ToUnixMillis(k.processed_at)}, {"expires_ms", ToUnixMillis(k.expires_at)}};
      if (!k.value.empty()) value["value"] = k.value;
      plan_.leased.push_back({kv.key, value.dump(), k.expires_at});
    }
    return {};
  }

  // A new event is held when its subject has a dead letter. A first attempt guards that the
  // subject has none (a held subject is rare) and that the event is new; a retry reads both.
  Status NewEvents() {
    for (const auto& subject : reads_.event_subjects) {
      if (reads_.rule_subjects.count(subject)) continue;  // decided by the held rule
      if (optimistic_) plan_.compare.push_back(etcd::ModRevisionIs(keys_.Blocked(subject), 0));
      else if (reads_.Get(keys_.Blocked(subject)).mod_revision != 0) blocked_subjects_.insert(subject);
    }
    for (size_t n = 0; n < ch_.events.size(); ++n) {
      const auto& e = ch_.events[n];
      const std::string key = keys_.Record(e.id);
      if (optimistic_) plan_.compare.push_back(etcd::ModRevisionIs(key, 0));
      else if (reads_.Get(key).mod_revision != 0) return Error::Internal("store: outbox event " + e.id + " exists already");
      ports::OutboxRecord r;
      r.event = e;
      r.state = blocked_subjects_.count(e.subject) ? ports::DeliveryState::kHeld : ports::DeliveryState::kPending;
      plan_.Put(key, RecordToJson(r, static_cast<std::int64_t>(n)).dump());
      plan_.Put(keys_(*IndexOf(r.state) + KeyPart(e.id)), "");
      plan_.Put(keys_.SubjectPrefix(e.subject) + KeyPart(e.id), "");
    }
    return {};
  }

  const CommitKeys keys_;
  const Changes& ch_;
  const CommitReads& reads_;
  const bool optimistic_;
  CommitPlan plan_;
  std::map<std::string, Touched> touched_;   // records read and maybe written back, by key
  std::set<std::string> blocked_subjects_;  // subjects left with a dead letter
};

// One attempt: read every key the commit depends on, decide, write guarded by what was
// read. true: committed; false: a key changed in between (try again); an error: refused.
Result<bool> EtcdStore::TryCommit(const Changes& ch, const std::optional<Fence>& fence, bool optimistic) {
  auto reads = ReadForCommit(ch, optimistic);
  if (!reads) return reads.error();
  if (reads->already_written) return true;
  auto plan = CommitDecision(CommitKeys{*this}, ch, *reads, optimistic).Decide();
  if (!plan) return plan.error();
  return WriteCommit(ch, std::move(plan.value()), fence);
}

// 3. Write, guarded by every revision read (and by the leader's term when fenced).
Result<bool> EtcdStore::WriteCommit(const Changes& ch, CommitPlan plan, const std::optional<Fence>& fence) {
  for (const auto& put : plan.leased) {
    auto lease = LeaseFor(put.expires_at);
    if (!lease) return lease.error();
    plan.writes[put.key] = etcd::PutOp(put.key, put.value, *lease);
  }
  if (plan.writes.empty()) return true;  // only a sweep
  std::vector<etcd::Op> ops;
  ops.reserve(plan.writes.size());
  for (auto& [_, op] : plan.writes) ops.push_back(std::move(op));
  std::vector<etcd::Op> failure;
  if (fence) {
    plan.compare.push_back(etcd::CreateRevisionIs(fence->key, fence->create_revision));
    if (fence->lease != 0) plan.compare.push_back(etcd::LeaseIs(fence->key, fence->lease));
    failure.push_back(etcd::GetOp(fence->key));
  }
  auto t = client_.Txn(std::move(plan.compare), std::move(ops), std::move(failure));
  if (!t) {
    // A dedup lease that expired under us: forget the leases and decide again.
    if (t.error().message.find("lease not found") != std::string::npos) {
      std::lock_guard lock(lease_mu_);
      bucket_leases_.clear();
      return false;
    }
    return t.error();
  }
  if (t->succeeded) {
    // What this commit wrote is what the next one on the same aggregates will find.
    const CommitKeys keys{*this};
    for (size_t n = 0; n < ch.instances.size(); ++n) {
      const auto& i = ch.instances[n];
      Remember(keys.Instance(i.id),
               {t->revision, i.version + 1, std::string(ToString(i.state)), {}, plan.instances[n]});
    }
    for (const auto& w : ch.workers)
      Remember(keys.Worker(w.id), {t->revision, w.version + 1, {}, PortHolders(w), nullptr});
    return true;
  }
  if (fence) {
    const auto& holder = t->ranges.empty() ? etcd::RangeResult{} : t->ranges.front();
    if (holder.kvs.empty() || holder.kvs.front().create_revision != fence->create_revision ||
        (fence->lease != 0 && holder.kvs.front().lease != fence->lease))
      return Error::Unavailable("store: this replica lost the leadership; its commit was refused");
  }
  return false;
}

}  // namespace ccm::store
