#include "store/etcd/etcd_store.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
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

void ApplyDelivery(ports::OutboxRecord& r, const ports::DeliveryUpdate& d) {
  r.state = d.state;
  r.attempts = d.attempts;
  if (d.state == ports::DeliveryState::kPending) r.next_attempt_at = d.at;
  if (d.state == ports::DeliveryState::kDelivered) r.delivered_at = d.at;
  r.dead_at = d.state == ports::DeliveryState::kDead ? std::optional<Timestamp>(d.at) : std::nullopt;
  r.last_error = d.error;
}

// A record a commit read and may write back: its state as read, and whether it changed.
struct Touched {
  ports::OutboxRecord record;
  ports::DeliveryState was = ports::DeliveryState::kPending;
  bool dirty = false;
};

// The held rule on one subject's records: an event not delivered is held exactly when an
// earlier one is dead. Released events start afresh, due at `release_at`. Returns whether
// the subject is left with a dead letter.
bool KeepHeldRule(std::vector<Touched*>& members, Timestamp release_at) {
  std::sort(members.begin(), members.end(), [](const auto* a, const auto* b) { return a->record.seq < b->record.seq; });
  bool blocked = false;
  for (Touched* t : members) {
    ports::OutboxRecord& r = t->record;
    if (r.state == ports::DeliveryState::kDead) {
      blocked = true;
    } else if (r.state == ports::DeliveryState::kPending && blocked) {
      r.state = ports::DeliveryState::kHeld;
      t->dirty = true;
    } else if (r.state == ports::DeliveryState::kHeld && !blocked) {
      r.state = ports::DeliveryState::kPending;
      r.attempts = 0;
      r.next_attempt_at = release_at;
      t->dirty = true;
    }
  }
  return blocked;
}

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

Result<std::vector<KeyValue>> EtcdStore::GetMany(const std::vector<std::string>& keys) {
  std::vector<KeyValue> out;
  out.reserve(keys.size());
  for (size_t from = 0; from < keys.size(); from += kOpsPerRead) {
    json ops = json::array();
    for (size_t n = from; n < std::min(keys.size(), from + kOpsPerRead); ++n) ops.push_back(etcd::GetOp(keys[n]));
    auto t = client_.Txn(json::array(), ops);
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
  if (known_.size() >= 100'000) known_.clear();  // a bound, not a policy: misses only cost a read
  known_[key] = std::move(known);
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
  if (i) Remember(kv.key, {kv.mod_revision, kv.version, std::string(ToString(i->state)), {}});
  return i;
}

Result<Worker> EtcdStore::ReadWorker(const KeyValue& kv) {
  auto w = ParseAs<Worker>(kv, wire::WorkerFromJson);
  if (w) Remember(kv.key, {kv.mod_revision, kv.version, {}, PortHolders(*w)});
  return w;
}

Result<LabletInstance> EtcdStore::GetInstance(const InstanceId& id) {
  auto r = client_.Range(Key("instances/" + KeyPart(id.value)));
  if (!r) return r.error();
  if (r->kvs.empty()) return Error::NotFound("instance " + id.value + " not found");
  return ReadInstance(r->kvs.front());
}

Result<ports::PageOf<LabletInstance>> EtcdStore::ListInstances(const ports::InstanceFilter& filter, const ports::Page& page) {
  ports::PageOf<LabletInstance> out;
  bool full = false;
  auto take = [&](const LabletInstance& i) -> bool {
    if (filter.state && i.state != *filter.state) return true;
    if (filter.worker_id && (!i.worker_id || i.worker_id->value != *filter.worker_id)) return true;
    if (filter.owner_id && i.owner_id != *filter.owner_id) return true;
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

Result<Worker> EtcdStore::GetWorker(const WorkerId& id) {
  auto r = client_.Range(Key("workers/" + KeyPart(id.value)));
  if (!r) return r.error();
  if (r->kvs.empty()) return Error::NotFound("worker " + id.value + " not found");
  return ReadWorker(r->kvs.front());
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

Result<ports::PurgeCounts> EtcdStore::PurgeFenced(Timestamp terminated_before, Timestamp delivered_before, int limit,
                                                const std::optional<Fence>& fence) {
  json fenced = json::array();
  if (fence) {
    fenced.push_back(etcd::CreateRevisionIs(fence->key, fence->create_revision));
    if (fence->lease != 0) fenced.push_back(etcd::LeaseIs(fence->key, fence->lease));
  }
  // Deletes each record read (guarded by its mod revision) with its index entry, and `extra`
  // operations under `extra_compare`, in one transaction; false when something changed
  // meanwhile (the next purge looks again).
  using Doomed = std::vector<std::pair<KeyValue, std::string>>;  // record, index key
  auto remove = [&](const Doomed& doomed, const json& extra_compare, const json& extra) -> Result<bool> {
    json compare = fenced;
    json ops = json::array();
    for (const auto& c : extra_compare) compare.push_back(c);
    for (const auto& [kv, index_key] : doomed) {
      compare.push_back(etcd::ModRevisionIs(kv.key, kv.mod_revision));
      ops.push_back(etcd::DeleteOp(kv.key));
      ops.push_back(etcd::DeleteOp(index_key));
    }
    for (const auto& op : extra) ops.push_back(op);
    auto t = client_.Txn(compare, ops);
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
    auto done = remove(part, json::array(), json::array());
    if (!done) return done.error();
    if (!*done) break;
    counts.instances += static_cast<int>(part.size());
    std::lock_guard lock(known_mu_);
    for (const auto& [kv, _] : part) known_.erase(kv.key);
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
    auto done = remove(part, json::array({etcd::ModRevisionIs(purged_key, revision)}),
                       json::array({etcd::PutOp(purged_key, std::to_string(before + static_cast<std::int64_t>(part.size())))}));
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
  const auto touches_subject = [](const ports::DeliveryUpdate& d) {
    return d.state == ports::DeliveryState::kDead || (d.state == ports::DeliveryState::kPending && d.attempts == 0);
  };
  if (deliveries_only && changes.deliveries.size() > 1 &&
      (changes.deliveries.size() > kDeliveriesPerTxn ||
       std::any_of(changes.deliveries.begin(), changes.deliveries.end(), touches_subject))) {
    Changes part;
    const auto flush = [&]() -> Status {
      if (part.deliveries.empty()) return {};
      Status s = CommitFenced(part, fence);
      part.deliveries.clear();
      return s;
    };
    for (const auto& d : changes.deliveries) {
      if (touches_subject(d) || part.deliveries.size() == kDeliveriesPerTxn)
        if (auto s = flush(); !s) return s;
      part.deliveries.push_back(d);
      if (touches_subject(d))
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
    json ops = json::array();
    for (size_t n = from; n < std::min(expired.size(), from + kOpsPerRead); ++n) ops.push_back(etcd::DeleteOp(expired[n]));
    if (auto t = client_.Txn(json::array(), ops); !t) return t.error();
  }
  return {};
}

// One attempt: read every key the commit depends on, decide, write guarded by what was
// read. true: committed; false: a key changed in between (try again); an error: refused.
Result<bool> EtcdStore::TryCommit(const Changes& ch, const std::optional<Fence>& fence, bool optimistic) {
  if (ch.events.size() > kMaxEventsPerCommit)
    return Error::InvalidArgument("store: at most " + std::to_string(kMaxEventsPerCommit) + " events per commit",
                                  "events");
  const auto blocked_key = [this](const std::string& subject) { return Key("outbox/blocked/" + KeyPart(subject)); };
  const auto subject_prefix = [this](const std::string& subject) {
    return Key("outbox/subjects/" + KeyPart(subject) + "/");
  };
  // 1. What the commit depends on, in one read (less what a recent read already told).
  std::vector<std::string> keys;
  for (const auto& d : ch.new_definitions) {
    keys.push_back(Key("definitions/" + KeyPart(d.id.value) + "/" + KeyPart(d.version)));
    keys.push_back(Key("definition-names/" + KeyPart(d.name)));
  }
  std::vector<std::optional<Known>> instances_known, workers_known;
  for (const auto& i : ch.instances) {
    const std::string key = Key("instances/" + KeyPart(i.id.value));
    instances_known.push_back(optimistic ? Recall(key, i.version) : std::nullopt);
    if (!instances_known.back()) keys.push_back(key);
  }
  for (const auto& w : ch.workers) {
    const std::string key = Key("workers/" + KeyPart(w.id.value));
    workers_known.push_back(optimistic ? Recall(key, w.version) : std::nullopt);
    if (!workers_known.back()) keys.push_back(key);
  }
  for (const auto& d : ch.deliveries) {
    if (d.event_id.empty()) return Error::InvalidArgument("store: a delivery update names no event id", "event_id");
    if (d.state == ports::DeliveryState::kHeld)
      return HeldIsNotWritten();
    keys.push_back(Key("outbox/events/" + KeyPart(d.event_id)));
  }
  for (const auto& k : ch.processed) keys.push_back(Key("events/processed/" + KeyPart(k.source) + "/" + KeyPart(k.id)));
  // The reservation a new instance takes, or a terminated one gives up (see Store::Commit).
  const auto reservation_key = [this](const domain::LabletInstance& i) -> std::optional<std::string> {
    if (!i.reservation_id || (i.version != 0 && i.state != InstanceState::kTerminated)) return std::nullopt;
    return Key("reservations/" + KeyPart(*i.reservation_id));
  };
  for (const auto& i : ch.instances)
    if (auto key = reservation_key(i)) keys.push_back(*key);
  std::set<std::string> event_subjects;
  for (const auto& e : ch.events) event_subjects.insert(e.subject);
  if (!optimistic) {
    for (const auto& e : ch.events) keys.push_back(Key("outbox/events/" + KeyPart(e.id)));
    for (const auto& subject : event_subjects) keys.push_back(blocked_key(subject));
  }
  std::vector<KeyValue> read;
  if (!keys.empty()) {
    auto got = GetMany(keys);
    if (!got) return got.error();
    read = std::move(got.value());
  }
  std::unordered_map<std::string, const KeyValue*> by_key;
  for (const auto& kv : read) by_key[kv.key] = &kv;
  const auto get = [&by_key](const std::string& key) -> const KeyValue& { return *by_key.at(key); };
  // An earlier attempt whose answer was lost (a timeout, a member dying mid-request, the
  // client then asking another member) may have been written. Event ids are new to each
  // commit, so finding this commit's first event means all of it is there: done.
  if (!optimistic && !ch.events.empty() && get(Key("outbox/events/" + KeyPart(ch.events.front().id))).mod_revision != 0)
    return true;
  // The subjects where a delivery update dead-letters or replays an event: all their events
  // (through outbox/subjects/), and whether they are blocked. A rare path: a round that only
  // delivers or retries reads nothing more.
  std::map<std::string, std::vector<std::string>> rule_subjects;  // subject -> its record keys
  std::vector<KeyValue> subject_read;
  json subject_guards = json::array();
  for (const auto& d : ch.deliveries) {
    const bool replay = d.state == ports::DeliveryState::kPending && d.attempts == 0;
    if (d.state != ports::DeliveryState::kDead && !replay) continue;
    const KeyValue& kv = get(Key("outbox/events/" + KeyPart(d.event_id)));
    if (kv.mod_revision == 0) continue;  // reported as not found below
    auto r = ReadRecord(kv);
    if (!r) return r.error();
    if (rule_subjects.count(r->event.subject)) continue;
    const std::string prefix = subject_prefix(r->event.subject);
    auto members = client_.Range(prefix, etcd::PrefixEnd(prefix));
    if (!members) return members.error();
    // A new event of the subject written after this read must make this commit decide again.
    subject_guards.push_back(etcd::NothingChangedSince(prefix, members->revision));
    auto& record_keys = rule_subjects[r->event.subject];
    for (const auto& m : members->kvs) record_keys.push_back(Key("outbox/events/" + m.key.substr(prefix.size())));
  }
  if (!rule_subjects.empty()) {
    std::vector<std::string> more;
    for (const auto& [subject, record_keys] : rule_subjects) {
      more.push_back(blocked_key(subject));
      for (const auto& k : record_keys) more.push_back(k);
    }
    std::sort(more.begin(), more.end());
    more.erase(std::unique(more.begin(), more.end()), more.end());
    std::erase_if(more, [&by_key](const std::string& k) { return by_key.count(k) > 0; });
    auto got = GetMany(more);
    if (!got) return got.error();
    subject_read = std::move(got.value());
    for (const auto& kv : subject_read) by_key[kv.key] = &kv;
  }
  std::vector<std::vector<KeyValue>> deleted_versions;
  for (const auto& id : ch.deleted_definitions) {
    const std::string prefix = Key("definitions/" + KeyPart(id.value) + "/");
    auto r = client_.Range(prefix, etcd::PrefixEnd(prefix));
    if (!r) return r.error();
    if (r->kvs.empty()) return Error::NotFound("definition " + id.value + " not found");
    deleted_versions.push_back(std::move(r->kvs));
  }

  // 2. Decide, and write down the guards and the operations.
  json compare = json::array();
  // One operation per key (etcd refuses a transaction that names a key twice): a later write
  // of the same key, such as one name for several versions, replaces the earlier.
  std::map<std::string, json> writes;
  const auto put = [&writes](const std::string& key, const std::string& value, std::int64_t lease = 0) {
    writes[key] = etcd::PutOp(key, value, lease);
  };
  const auto del = [&writes](const std::string& key) { writes[key] = etcd::DeleteOp(key); };
  for (const auto& kv : read) compare.push_back(etcd::ModRevisionIs(kv.key, kv.mod_revision));
  for (const auto& kv : subject_read) compare.push_back(etcd::ModRevisionIs(kv.key, kv.mod_revision));
  for (auto& guard : subject_guards) compare.push_back(std::move(guard));

  for (const auto& d : ch.new_definitions) {
    const KeyValue& version = get(Key("definitions/" + KeyPart(d.id.value) + "/" + KeyPart(d.version)));
    const KeyValue& name = get(Key("definition-names/" + KeyPart(d.name)));
    if (version.mod_revision != 0)
      return DefinitionVersionTaken(d.name, d.version);
    if (name.mod_revision != 0 && name.value != d.id.value)
      return NameTaken(d.name, name.value);
    put(version.key, wire::ToJson(d, wire::Secrets::kShown).dump());
    put(name.key, d.id.value);
  }
  for (const auto& versions : deleted_versions)
    for (const auto& kv : versions) {
      auto j = ParseValue(kv);
      if (!j) return j.error();
      (*j)["deleted"] = true;
      compare.push_back(etcd::ModRevisionIs(kv.key, kv.mod_revision));
      put(kv.key, j->dump());
    }
  // What a commit found of an aggregate: recalled (and guarded here), or read (and guarded above).
  const auto known_or_read = [&](std::optional<Known>& known, const std::string& key, auto describe) -> Result<Known> {
    if (known) {
      compare.push_back(etcd::ModRevisionIs(key, known->mod_revision));
      return *known;
    }
    const KeyValue& kv = get(key);
    Known k{kv.mod_revision, kv.version, {}, {}};
    if (kv.mod_revision != 0) {
      if (auto s = describe(kv, k); !s) return s.error();
      Remember(key, k);
    }
    return k;
  };
  for (size_t n = 0; n < ch.instances.size(); ++n) {
    const auto& i = ch.instances[n];
    const std::string key = Key("instances/" + KeyPart(i.id.value));
    auto before = known_or_read(instances_known[n], key, [](const KeyValue& kv, Known& k) -> Status {
      auto old = ParseValue(kv);
      if (!old) return old.error();
      k.state = old->value("state", "");
      return {};
    });
    if (!before) return before.error();
    // etcd counts a key's writes since its creation: that is the instance's version.
    if (before->version != i.version) return StaleVersion("instance", i.id.value, i.version);
    json body = wire::ToJson(i);
    body["version"] = i.version + 1;
    put(key, body.dump());
    const std::string state(ToString(i.state));
    if (before->state != state) {
      if (!before->state.empty()) del(Key("instances-by-state/" + before->state + "/" + KeyPart(i.id.value)));
      put(Key("instances-by-state/" + state + "/" + KeyPart(i.id.value)), "");
    }
    if (auto rkey = reservation_key(i)) {
      const KeyValue& holder = get(*rkey);
      const bool held_by_other = holder.mod_revision != 0 && holder.value != i.id.value;
      if (i.state == InstanceState::kTerminated) {
        if (holder.mod_revision != 0 && !held_by_other) del(*rkey);
      } else if (held_by_other) {
        return ReservationHeld(*i.reservation_id, holder.value);
      } else {
        put(*rkey, i.id.value);
      }
    }
  }
  for (size_t n = 0; n < ch.workers.size(); ++n) {
    const auto& w = ch.workers[n];
    const std::string key = Key("workers/" + KeyPart(w.id.value));
    auto before = known_or_read(workers_known[n], key, [](const KeyValue& kv, Known& k) -> Status {
      auto old = ParseAs<Worker>(kv, wire::WorkerFromJson);
      if (!old) return old.error();
      k.ports = PortHolders(*old);
      return {};
    });
    if (!before) return before.error();
    if (before->version != w.version) return StaleVersion("worker", w.id.value, w.version);
    json body = wire::ToJson(w);
    body["version"] = w.version + 1;
    put(key, body.dump());
    const auto after = PortHolders(w);
    const std::string ports = Key("ports/" + KeyPart(w.id.value) + "/");
    for (const auto& [port, holder] : before->ports)
      if (!after.count(port)) del(ports + std::to_string(port));
    for (const auto& [port, holder] : after) {
      auto was = before->ports.find(port);
      if (was != before->ports.end() && was->second == holder) continue;
      // A port newly given out must be free: its key must not exist.
      if (was == before->ports.end()) compare.push_back(etcd::ModRevisionIs(ports + std::to_string(port), 0));
      put(ports + std::to_string(port), holder);
    }
  }
  // Delivery updates on working copies of the records, then the held rule on the subjects
  // that need it; each record changed is written once, with its index keys when its state
  // moved (so that a delivery costs two operations and a retry one).
  std::map<std::string, Touched> touched;  // by record key
  const auto working = [&](const KeyValue& kv) -> Result<Touched*> {
    auto it = touched.find(kv.key);
    if (it == touched.end()) {
      auto r = ReadRecord(kv);
      if (!r) return r.error();
      const ports::DeliveryState was = r->state;
      it = touched.emplace(kv.key, Touched{std::move(r.value()), was, false}).first;
    }
    return &it->second;
  };
  std::map<std::string, Timestamp> release_at;  // rule subject -> when released events are due
  for (const auto& d : ch.deliveries) {
    const KeyValue& kv = get(Key("outbox/events/" + KeyPart(d.event_id)));
    const auto missing = [&] {
      return Error::NotFound("outbox event " + d.event_id + " (seq " + std::to_string(d.seq) + ") not found");
    };
    if (kv.mod_revision == 0) return missing();
    auto t = working(kv);
    if (!t) return t.error();
    if ((*t)->record.seq != d.seq) return missing();
    ApplyDelivery((*t)->record, d);
    (*t)->dirty = true;
    release_at[(*t)->record.event.subject] = d.at;
  }
  std::set<std::string> blocked_subjects;  // subjects left with a dead letter
  for (const auto& [subject, record_keys] : rule_subjects) {
    std::vector<Touched*> members;
    for (const auto& key : record_keys) {
      const KeyValue& kv = get(key);
      if (kv.mod_revision == 0) continue;
      auto t = working(kv);
      if (!t) return t.error();
      members.push_back(*t);
    }
    if (KeepHeldRule(members, release_at[subject])) blocked_subjects.insert(subject);
    const KeyValue& marker = get(blocked_key(subject));
    if (blocked_subjects.count(subject) && marker.mod_revision == 0) put(marker.key, "");
    if (!blocked_subjects.count(subject) && marker.mod_revision != 0) del(marker.key);
  }
  for (const auto& [key, t] : touched) {
    if (!t.dirty) continue;
    put(key, RecordToJson(t.record, t.record.seq & ((1 << kSeqIndexBits) - 1)).dump());
    if (t.record.state == t.was) continue;
    const std::string id = KeyPart(t.record.event.id);
    if (auto index = IndexOf(t.was)) del(Key(*index + id));
    if (auto index = IndexOf(t.record.state)) put(Key(*index + id), "");
  }
  for (const auto& k : ch.processed) {
    const KeyValue& kv = get(Key("events/processed/" + KeyPart(k.source) + "/" + KeyPart(k.id)));
    if (kv.mod_revision != 0) {
      auto j = ParseValue(kv);
      if (!j) return j.error();
      // An expired key is taken over; a live one means the event was already applied.
      if (j->value("expires_ms", std::int64_t{0}) > ToUnixMillis(k.processed_at))
        return AlreadyProcessed(k.source, k.id);
    }
    auto lease = LeaseFor(k.expires_at);
    if (!lease) return lease.error();
    json value = {{"processed_ms", ToUnixMillis(k.processed_at)}, {"expires_ms", ToUnixMillis(k.expires_at)}};
    if (!k.value.empty()) value["value"] = k.value;
    put(kv.key, value.dump(), *lease);
  }
  // A new event is held when its subject has a dead letter. A first attempt guards that the
  // subject has none (a held subject is rare); a retry reads the marker.
  for (const auto& subject : event_subjects) {
    if (rule_subjects.count(subject)) continue;  // decided above
    if (optimistic) compare.push_back(etcd::ModRevisionIs(blocked_key(subject), 0));
    else if (get(blocked_key(subject)).mod_revision != 0) blocked_subjects.insert(subject);
  }
  for (size_t n = 0; n < ch.events.size(); ++n) {
    const auto& e = ch.events[n];
    const std::string key = Key("outbox/events/" + KeyPart(e.id));
    if (optimistic) compare.push_back(etcd::ModRevisionIs(key, 0));  // ids are unique; checked on a retry
    else if (get(key).mod_revision != 0) return Error::Internal("store: outbox event " + e.id + " exists already");
    ports::OutboxRecord r;
    r.event = e;
    r.state = blocked_subjects.count(e.subject) ? ports::DeliveryState::kHeld : ports::DeliveryState::kPending;
    put(key, RecordToJson(r, static_cast<std::int64_t>(n)).dump());
    put(Key(*IndexOf(r.state) + KeyPart(e.id)), "");
    put(subject_prefix(e.subject) + KeyPart(e.id), "");
  }
  if (writes.empty()) return true;  // only a sweep
  json ops = json::array();
  for (auto& [_, op] : writes) ops.push_back(std::move(op));

  // 3. Write, guarded by every revision read (and by the leader's term when fenced).
  json failure = json::array();
  if (fence) {
    compare.push_back(etcd::CreateRevisionIs(fence->key, fence->create_revision));
    if (fence->lease != 0) compare.push_back(etcd::LeaseIs(fence->key, fence->lease));
    failure.push_back(etcd::GetOp(fence->key));
  }
  auto t = client_.Txn(compare, ops, failure);
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
    for (const auto& i : ch.instances)
      Remember(Key("instances/" + KeyPart(i.id.value)), {t->revision, i.version + 1, std::string(ToString(i.state)), {}});
    for (const auto& w : ch.workers)
      Remember(Key("workers/" + KeyPart(w.id.value)), {t->revision, w.version + 1, {}, PortHolders(w)});
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
