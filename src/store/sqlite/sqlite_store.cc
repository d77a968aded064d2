#include "store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "store/shared.h"
#include "wire/aggregates.h"

namespace ccm::store {

using namespace ccm::domain;
using ports::Changes;
using nlohmann::json;

namespace {

// Schema migrations, applied in order; PRAGMA user_version records how many have run.
// Never edit one that has shipped: add the next. Tables with large JSON bodies keep rowids:
// WITHOUT ROWID suits only small rows (SQLite's advice: under about 1/20 of a page).
const std::vector<const char*>& Migrations() {
  static const std::vector<const char*> kMigrations = {
      R"sql(
      CREATE TABLE definitions (
        id TEXT NOT NULL,
        version TEXT NOT NULL,
        name TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        body TEXT NOT NULL,
        PRIMARY KEY (id, version)
      );
      CREATE INDEX definitions_by_name ON definitions (name, id);
      CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        worker_id TEXT,
        owner_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL
      );
      CREATE INDEX instances_by_state ON instances (state, id);
      CREATE INDEX instances_by_worker ON instances (worker_id, id);
      CREATE INDEX instances_by_owner ON instances (owner_id, id);
      CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        body TEXT NOT NULL
      );
      CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        type TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        event TEXT NOT NULL
      );
      CREATE INDEX outbox_by_subject ON outbox (subject, seq);
      CREATE TABLE processed_events (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        processed_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (source, id)
      ) WITHOUT ROWID;
      CREATE INDEX processed_events_by_expiry ON processed_events (expires_ms);
      )sql",
      // 2: delivery bookkeeping of the outbox.
      R"sql(
      ALTER TABLE outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
      ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE outbox ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE outbox ADD COLUMN delivered_ms INTEGER;
      ALTER TABLE outbox ADD COLUMN dead_ms INTEGER;
      ALTER TABLE outbox ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
      CREATE INDEX outbox_by_state ON outbox (state, seq);
      CREATE INDEX outbox_by_time ON outbox (time_ms, seq);
      )sql",
      // 3: the reservation an instance holds, to keep one live instance per reservation; the
      // value kept with a processed key (an idempotent request's first answer).
      R"sql(
      ALTER TABLE instances ADD COLUMN reservation_id TEXT;
      UPDATE instances SET reservation_id = json_extract(body, '$.reservation_id');
      CREATE INDEX instances_by_reservation ON instances (reservation_id, state) WHERE reservation_id IS NOT NULL;
      ALTER TABLE processed_events ADD COLUMN value TEXT NOT NULL DEFAULT '';
      )sql",
      // 4: the times the reconcilers' sweeps select by (Unix milliseconds), so that a sweep
      // reads only the instances it can act on: the timeslot's start and end, when the pod
      // assignment is due, and when the instance entered its state (for the gauges).
      R"sql(
      ALTER TABLE instances ADD COLUMN timeslot_start_ms INTEGER;
      ALTER TABLE instances ADD COLUMN timeslot_end_ms INTEGER;
      ALTER TABLE instances ADD COLUMN pod_due_ms INTEGER;
      ALTER TABLE instances ADD COLUMN entered_ms INTEGER;
      UPDATE instances SET
        timeslot_start_ms = CAST(ROUND((julianday(json_extract(body, '$.timeslot_start')) - 2440587.5) * 86400000.0) AS INTEGER),
        timeslot_end_ms = CAST(ROUND((julianday(json_extract(body, '$.timeslot_end')) - 2440587.5) * 86400000.0) AS INTEGER),
        pod_due_ms = CAST(ROUND((julianday(json_extract(body, '$.pod_due_at')) - 2440587.5) * 86400000.0) AS INTEGER),
        entered_ms = CAST(ROUND((julianday(COALESCE(json_extract(body, '$.state_history[#-1].at'),
                                                    json_extract(body, '$.created_at'))) - 2440587.5) * 86400000.0) AS INTEGER);
      CREATE INDEX instances_by_start ON instances (state, timeslot_start_ms);
      CREATE INDEX instances_by_end ON instances (state, timeslot_end_ms);
      CREATE INDEX instances_by_pod_due ON instances (state, pod_due_ms) WHERE pod_due_ms IS NOT NULL;
      CREATE INDEX instances_by_entered ON instances (state, entered_ms);
      )sql",
      // 5: an instance's state history out of its row, one row per entry (n counts from 0),
      // so that a move appends an entry instead of rewriting the whole history with the body;
      // history_len is how many entries the instance has. An entry is small (about 150
      // bytes), well under the size where WITHOUT ROWID stops paying: an instance's entries
      // lie side by side in the key's order, with no rowid b-tree beside them.
      R"sql(
      CREATE TABLE instance_history (
        instance_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (instance_id, n)
      ) WITHOUT ROWID;
      ALTER TABLE instances ADD COLUMN history_len INTEGER NOT NULL DEFAULT 0;
      INSERT INTO instance_history (instance_id, n, entry)
        SELECT instances.id, h.key, h.value FROM instances, json_each(instances.body, '$.state_history') AS h;
      UPDATE instances SET
        history_len = COALESCE(json_array_length(body, '$.state_history'), 0),
        body = json_remove(body, '$.state_history');
      )sql",
      // 6: the timeslot indexes hold only the states their sweeps read (the start: PENDING and
      // SCHEDULED; the end: RUNNING), so that a move between other states leaves them alone
      // (an UPDATE rewrites the entry of every index whose columns it names, and each move
      // names the state). An OR, not an IN: the planner finds `state = 'PENDING'` implies it.
      R"sql(
      DROP INDEX instances_by_start;
      DROP INDEX instances_by_end;
      CREATE INDEX instances_by_start ON instances (state, timeslot_start_ms) WHERE state = 'PENDING' OR state = 'SCHEDULED';
      CREATE INDEX instances_by_end ON instances (timeslot_end_ms) WHERE state = 'RUNNING';
      )sql",
  };
  return kMigrations;
}

// The key of an instance's history in wire::ToJson's shape: kept in instance_history, not in
// the body (migration 5).
constexpr const char* kHistoryKey = "state_history";

Error SqlError(sqlite3* db, std::string_view what) {
  const int code = sqlite3_extended_errcode(db);
  std::string msg = std::string(what) + ": " + sqlite3_errmsg(db);
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return Error::Unavailable("store: " + msg);
    default:
      return Error::Internal("store: " + msg);
  }
}

// Whether the latest failure on `db` was for lack of disk space: SQLite reports ENOSPC on a
// write as SQLITE_FULL; other errnos of a failed write or fsync come as SQLITE_IOERR_*.
bool OutOfSpace(sqlite3* db) {
  const int code = sqlite3_extended_errcode(db);
  if ((code & 0xff) == SQLITE_FULL) return true;
  if ((code & 0xff) != SQLITE_IOERR) return false;
  const int err = sqlite3_system_errno(db);
  return err == ENOSPC || err == EDQUOT;
}

}  // namespace

// A statement borrowed from a connection's cache; reset and unbound when it goes out of scope.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(s_); }
  std::string_view Text(int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(s_, col))) : std::string_view{};
  }
  std::int64_t Int(int col) { return sqlite3_column_int64(s_, col); }
  bool IsNull(int col) { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  sqlite3* db() const { return db_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_;
};

class SqliteStore::Connection {
 public:
  explicit Connection(sqlite3* db) : db_(db) {}
  ~Connection() {
    for (auto& [_, s] : cache_) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }
  sqlite3* db() const { return db_; }

  // A cached prepared statement for `sql`. Errors: internal for SQL that does not prepare.
  Result<std::unique_ptr<Stmt>> Prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
        return SqlError(db_, "prepare");
      it = cache_.emplace(sql, s).first;
    }
    return std::make_unique<Stmt>(db_, it->second);
  }

  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      Error e = SqlError(db_, sql);
      sqlite3_free(err);
      return e;
    }
    return {};
  }

 private:
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

// An instance as stored: its body without `state_history`, and each entry of that history
// (as the body would have held it), of which a commit writes those not yet stored; and the
// instance as a read would give it back (times at the stored precision), kept once committed.
// A change only appends to a history (the domain never rewrites an entry), so the stored
// entries are those of `stored`.
struct SqliteStore::EncodedInstance {
  // wire::ToJson's storage shape at `version`, split: the history goes to rows of its own.
  static EncodedInstance Encode(const LabletInstance& i, std::int64_t version) {
    json j = wire::ToJson(i);
    j["version"] = version;
    EncodedInstance out;
    if (auto read = wire::InstanceFromJson(j)) out.stored = std::make_shared<const LabletInstance>(std::move(read.value()));
    if (auto h = j.find(kHistoryKey); h != j.end()) {
      out.history.reserve(h->size());
      for (const auto& entry : *h) out.history.push_back(entry.dump());
      j.erase(h);
    }
    out.body = j.dump();
    return out;
  }

  std::string body;
  std::vector<std::string> history;
  std::shared_ptr<const LabletInstance> stored;  // null if it does not read back (never kept)
};

// The JSON bodies of a commit's aggregates, encoded by the committing thread before it
// queues, so that the one thread that writes for a whole batch does no encoding.
struct SqliteStore::Encoded {
  std::vector<std::string> definitions;
  std::vector<EncodedInstance> instances;
  std::vector<std::string> workers;
};

// A commit in the queue. A caller of Commit waits on `cv` (or leads); one of CommitThen owns
// what it commits (`owned`) and is told by `then`, on the committer thread.
struct SqliteStore::Writer {
  const Changes* changes;
  const Encoded* encoded;
  Status status;
  bool done = false;
  std::condition_variable cv;
  std::function<void(Status)> then = nullptr;
  struct Owned {
    Changes changes;
    Encoded encoded;
  };
  std::unique_ptr<Owned> owned = nullptr;
};

// A reader connection held for the length of one read.
class SqliteStore::ReadLease {
 public:
  ReadLease(SqliteStore& store, Connection* conn) : store_(store), conn_(conn) {}
  ~ReadLease() {
    {
      std::lock_guard lock(store_.read_mu_);
      store_.idle_readers_.push_back(conn_);
    }
    store_.read_cv_.notify_one();
  }
  ReadLease(const ReadLease&) = delete;
  ReadLease& operator=(const ReadLease&) = delete;
  Connection* operator->() const { return conn_; }

 private:
  SqliteStore& store_;
  Connection* conn_;
};

namespace {

Result<std::unique_ptr<SqliteStore::Connection>> OpenConnection(const std::string& path, bool writer) {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
  // The file holds device secrets and who booked what: readable by ccm's user alone. A new
  // database starts as an empty file made here with that mode, which SQLite gives its WAL
  // and shared-memory files too; an existing one keeps the mode its owner chose.
  if (writer && path != ":memory:") {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
  }
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    Error e = Error::Unavailable("store: cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close_v2(db);
    return e;
  }
  auto conn = std::make_unique<SqliteStore::Connection>(db);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_extended_result_codes(db, 1);
  // FULL: the WAL is synced at every commit, so a returned commit survives a power cut.
  // temp_store=MEMORY: each commit of a group runs in a savepoint of its own, whose journal
  // (the pages it changes, as they were) goes to a temporary file once it passes 64 KiB;
  // in memory it costs no write, where on file it cost a fifth of the committing thread.
  const char* pragmas = writer ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
                                 "PRAGMA temp_store=MEMORY;"
                               : "PRAGMA query_only=ON;";
  if (auto s = conn->Exec(pragmas); !s) return s.error();
  return conn;
}

template <typename T, typename Parse>
Result<T> ReadBody(Stmt& stmt, int col, Parse parse) {
  json j = json::parse(stmt.Text(col), nullptr, false);
  if (j.is_discarded()) return Error::Internal("store: a stored body is not JSON");
  return parse(j);
}

std::string WorkerBody(const Worker& w, std::int64_t version) {
  json j = wire::ToJson(w);
  j["version"] = version;
  return j.dump();
}

}  // namespace

SqliteStore::SqliteStore(Options options) : options_(std::move(options)) {}
SqliteStore::~SqliteStore() {
  // Every CommitThen queued is committed and told before the connections go.
  if (committer_.joinable()) {
    {
      std::lock_guard lock(write_mu_);
      stopping_ = true;
    }
    committer_cv_.notify_one();
    committer_.join();
  }
  if (writer_conn_) sqlite3_wal_hook(writer_conn_->db(), nullptr, nullptr);
  if (checkpointer_) checkpointer_->Stop();
}

int SqliteStore::OnWalCommit(void* self, sqlite3*, const char*, int pages) {
  auto* store = static_cast<SqliteStore*>(self);
  if (pages >= store->options_.checkpoint_pages && !store->checkpoint_wanted_.exchange(true))
    store->checkpointer_->Wake();
  return SQLITE_OK;
}

bool SqliteStore::Checkpoint() {
  if (checkpoint_wanted_.exchange(false)) {
    // PASSIVE copies what it can without blocking the writer or any reader; frames still
    // in use wait for the next round.
    sqlite3_wal_checkpoint_v2(checkpoint_conn_->db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  }
  return false;
}

int SqliteStore::SchemaVersion() { return static_cast<int>(Migrations().size()); }

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const Options& options) {
  std::unique_ptr<SqliteStore> store(new SqliteStore(options));
  if (auto s = store->Lock(); !s) return s.error();
  if (auto s = store->Init(); !s) return s.error();
  return store;
}

SqliteStore::LockFile::~LockFile() {
  if (fd >= 0) close(fd);
}

// SQLite's own locks guard transactions, not ownership: two processes on one file would both
// run the background work and deliver every event twice. A separate lock file, so that the
// flock never meets SQLite's fcntl locks on the database (they are one kind on NFS).
Status SqliteStore::Lock() {
  if (options_.path == ":memory:") return {};
  const std::string path = options_.path + ".lock";
  lock_.fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_.fd < 0) return Error::Unavailable("store: cannot open " + path + ": " + std::strerror(errno));
  if (flock(lock_.fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK)
      return Error::Unavailable("store: cannot lock " + path + ": " + std::strerror(err));
    char holder[32] = {};
    const ssize_t n = pread(lock_.fd, holder, sizeof holder - 1, 0);
    std::string pid(holder, n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return Error::FailedPrecondition("store: " + options_.path + " is in use by another process" +
                                     (pid.empty() ? std::string() : " (pid " + pid + ")") + ", which holds " + path +
                                     "; one SQLite file serves one ccm process: stop the other one, or give this one "
                                     "its own CCM_STORE (several replicas need etcd)");
  }
  // Who holds it, for the message above: failing to write it loses only the pid there.
  const std::string pid = std::to_string(getpid()) + "\n";
  const bool noted = ftruncate(lock_.fd, 0) == 0 && pwrite(lock_.fd, pid.data(), pid.size(), 0) > 0;
  (void)noted;
  return {};
}

Status SqliteStore::Init() {
  auto w = OpenConnection(options_.path, true);
  if (!w) return w.error();
  writer_conn_ = std::move(w.value());

  auto version_stmt = writer_conn_->Prepare("PRAGMA user_version");
  if (!version_stmt) return version_stmt.error();
  int current = 0;
  if ((*version_stmt)->Step() == SQLITE_ROW) current = static_cast<int>((*version_stmt)->Int(0));
  version_stmt->reset();
  const auto& migrations = Migrations();
  if (current > static_cast<int>(migrations.size()))
    return Error::Internal("store: " + options_.path + " has schema version " + std::to_string(current) +
                           ", newer than this build's " + std::to_string(migrations.size()));
  for (int v = current; v < static_cast<int>(migrations.size()); ++v) {
    const std::string sql = std::string("BEGIN IMMEDIATE;") + migrations[v] + "PRAGMA user_version=" +
                            std::to_string(v + 1) + ";COMMIT;";
    if (auto s = writer_conn_->Exec(sql.c_str()); !s) {
      (void)writer_conn_->Exec("ROLLBACK");
      return s.error();
    }
  }

  // Checkpoints move off the commit path: the writer never checkpoints by itself, and its
  // commits wake a background thread once the WAL is large enough.
  auto checkpoint = OpenConnection(options_.path, true);
  if (!checkpoint) return checkpoint.error();
  checkpoint_conn_ = std::move(checkpoint.value());
  sqlite3_wal_autocheckpoint(checkpoint_conn_->db(), 0);
  checkpointer_ = std::make_unique<runtime::BackgroundLoop>([this] { return Checkpoint(); }, std::chrono::seconds(1));
  checkpointer_->Start();
  sqlite3_wal_hook(writer_conn_->db(), &SqliteStore::OnWalCommit, this);

  for (int i = 0; i < std::max(1, options_.read_connections); ++i) {
    auto r = OpenConnection(options_.path, false);
    if (!r) return r.error();
    idle_readers_.push_back(r->get());
    readers_.push_back(std::move(r.value()));
  }
  return {};
}

SqliteStore::ReadLease SqliteStore::Lease() {
  std::unique_lock lock(read_mu_);
  read_cv_.wait(lock, [&] { return !idle_readers_.empty(); });
  Connection* c = idle_readers_.back();
  idle_readers_.pop_back();
  return ReadLease(*this, c);
}

// ---- reads ---------------------------------------------------------------------------------

namespace {

Result<std::vector<LabletDefinition>> ReadVersions(SqliteStore::Connection& c, const std::string& id) {
  auto stmt = c.Prepare("SELECT body, deleted FROM definitions WHERE id = ?1");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, id);
  std::vector<LabletDefinition> out;
  int rc;
  while ((rc = (*stmt)->Step()) == SQLITE_ROW) {
    auto d = ReadBody<LabletDefinition>(**stmt, 0, wire::DefinitionFromJson);
    if (!d) return d.error();
    d->deleted = (*stmt)->Int(1) != 0;
    out.push_back(std::move(d.value()));
  }
  if (rc != SQLITE_DONE) return SqlError(c.db(), "read definitions");
  SortBySemVer(out);
  return out;
}

// The columns ReadInstance reads, in its order.
constexpr const char* kInstanceColumns = "body, history_len, id";

// An instance from its row (kInstanceColumns) and its history's rows. Called while the row's
// statement is still stepping, so that both come from the same read transaction.
Result<LabletInstance> ReadInstance(SqliteStore::Connection& c, Stmt& row) {
  json j = json::parse(row.Text(0), nullptr, false);
  if (j.is_discarded()) return Error::Internal("store: a stored body is not JSON");
  auto stmt = c.Prepare("SELECT entry FROM instance_history WHERE instance_id = ?1 ORDER BY n");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, row.Text(2));
  json& history = j[kHistoryKey] = json::array();
  int rc;
  while ((rc = (*stmt)->Step()) == SQLITE_ROW) {
    json entry = json::parse((*stmt)->Text(0), nullptr, false);
    if (entry.is_discarded()) return Error::Internal("store: a stored history entry is not JSON");
    history.push_back(std::move(entry));
  }
  if (rc != SQLITE_DONE) return SqlError(c.db(), "read instance history");
  if (static_cast<std::int64_t>(history.size()) != row.Int(1))
    return Error::Internal("store: instance " + std::string(row.Text(2)) + " has " + std::to_string(history.size()) +
                           " history entries stored, not the " + std::to_string(row.Int(1)) + " its row counts");
  return wire::InstanceFromJson(j);
}

}  // namespace

Result<LabletDefinition> SqliteStore::GetDefinition(const DefinitionId& id, const std::optional<std::string>& version) {
  auto c = Lease();
  auto versions = ReadVersions(*c.operator->(), id.value);
  if (!versions) return versions.error();
  return PickVersion(std::move(versions.value()), id, version);
}

Result<std::vector<LabletDefinition>> SqliteStore::ListDefinitionVersions(const DefinitionId& id) {
  auto c = Lease();
  auto versions = ReadVersions(*c.operator->(), id.value);
  if (versions && versions->empty()) return Error::NotFound("definition " + id.value + " not found");
  return versions;
}

Result<std::optional<DefinitionId>> SqliteStore::FindDefinitionByName(const std::string& name) {
  auto c = Lease();
  auto stmt = c->Prepare("SELECT id FROM definitions WHERE name = ?1 LIMIT 1");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, name);
  const int rc = (*stmt)->Step();
  if (rc == SQLITE_ROW) return std::optional<DefinitionId>(DefinitionId{std::string((*stmt)->Text(0))});
  if (rc != SQLITE_DONE) return SqlError(c->db(), "find definition");
  return std::optional<DefinitionId>{};
}

Result<ports::PageOf<LabletDefinition>> SqliteStore::ListDefinitions(const ports::DefinitionFilter& filter,
                                                                   const ports::Page& page) {
  auto c = Lease();
  std::string sql = "SELECT DISTINCT id FROM definitions WHERE id > ?1";
  if (filter.name) sql += " AND name = ?2";
  if (!filter.include_deleted) sql += " AND deleted = 0";
  sql += " ORDER BY id LIMIT ?3";
  auto stmt = c->Prepare(sql);
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, page.after).Bind(3, static_cast<std::int64_t>(page.limit) + 1);
  if (filter.name) (*stmt)->Bind(2, *filter.name);
  std::vector<std::string> ids;
  int rc;
  while ((rc = (*stmt)->Step()) == SQLITE_ROW) ids.emplace_back((*stmt)->Text(0));
  if (rc != SQLITE_DONE) return SqlError(c->db(), "list definitions");
  stmt->reset();
  ports::PageOf<LabletDefinition> out;
  for (size_t i = 0; i < ids.size() && static_cast<int>(i) < page.limit; ++i) {
    auto versions = ReadVersions(*c.operator->(), ids[i]);
    if (!versions) return versions.error();
    if (!versions->empty()) out.items.push_back(std::move(versions->back()));
  }
  if (static_cast<int>(ids.size()) > page.limit) out.next = out.items.back().id.value;
  return out;
}

Result<LabletInstance> SqliteStore::GetInstance(const InstanceId& id) {
  auto c = Lease();
  auto stmt = c->Prepare(std::string("SELECT ") + kInstanceColumns + " FROM instances WHERE id = ?1");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, id.value);
  const int rc = (*stmt)->Step();
  if (rc == SQLITE_ROW) return ReadInstance(*c.operator->(), **stmt);
  if (rc != SQLITE_DONE) return SqlError(c->db(), "read instance");
  return Error::NotFound("instance " + id.value + " not found");
}

Result<LabletInstance> SqliteStore::GetInstanceForUpdate(const InstanceId& id) {
  std::shared_ptr<const LabletInstance> kept;
  {
    std::lock_guard lock(kept_mu_);
    if (auto it = kept_.find(id.value); it != kept_.end()) kept = it->second;
  }
  if (kept) return *kept;  // copied outside the lock every commit takes
  return GetInstance(id);
}

void SqliteStore::KeepCommitted(const std::vector<Writer*>& batch) {
  std::lock_guard lock(kept_mu_);
  for (Writer* w : batch) {
    if (!w->status) {
      // Refused as stale: it lost a race with another change of this process (whose commit
      // kept a newer copy, left in place), or the file changed behind the store. A copy no
      // newer than what it built on is dropped, so that the change is decided on the file.
      if (w->status.error().Is(ErrorKind::kStaleVersion))
        for (const auto& i : w->changes->instances)
          if (auto it = kept_.find(i.id.value); it != kept_.end() && it->second->version <= i.version) kept_.erase(it);
      continue;
    }
    // An instance may be written more than once in a commit: the last write is what is stored.
    for (std::size_t n = 0; n < w->encoded->instances.size(); ++n) {
      const auto& stored = w->encoded->instances[n].stored;
      const std::string& id = w->changes->instances[n].id.value;
      if (!stored) {
        kept_.erase(id);
        continue;
      }
      if (auto it = kept_.find(id); it != kept_.end()) {
        it->second = stored;
        continue;
      }
      if (kept_.size() >= kInstancesKept) kept_.clear();  // a bound, not a policy: a miss only costs a read
      kept_.emplace(id, stored);
    }
  }
}

Result<ports::InstanceHead> SqliteStore::GetInstanceHead(const InstanceId& id) {
  auto c = Lease();
  auto stmt = c->Prepare("SELECT state, version FROM instances WHERE id = ?1");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, id.value);
  const int rc = (*stmt)->Step();
  if (rc == SQLITE_ROW) {
    auto state = ParseInstanceState((*stmt)->Text(0));
    if (!state)
      return Error::Internal("store: instance " + id.value + " has the unknown state " +
                             std::string((*stmt)->Text(0)));
    return ports::InstanceHead{*state, (*stmt)->Int(1)};
  }
  if (rc != SQLITE_DONE) return SqlError(c->db(), "read instance state");
  return Error::NotFound("instance " + id.value + " not found");
}

Result<ports::PageOf<LabletInstance>> SqliteStore::ListInstances(const ports::InstanceFilter& filter,
                                                               const ports::Page& page) {
  auto c = Lease();
  std::string sql = std::string("SELECT ") + kInstanceColumns + " FROM instances";
  // A time bound names its index: it selects the few due instances of a state that may hold
  // thousands, which the planner, without statistics, cannot know to prefer to (state, id).
  // The timeslot indexes hold some states only (migration 6): the state is then written in
  // the statement, as the planner uses such an index only for a query that names one of them.
  const auto state = filter.state;
  const bool by_end = state == InstanceState::kRunning && filter.ends_by;
  const bool by_start =
      (state == InstanceState::kPending || state == InstanceState::kScheduled) && filter.starts_by;
  if (by_end) sql += " INDEXED BY instances_by_end";
  else if (state && filter.pod_due_by) sql += " INDEXED BY instances_by_pod_due";
  else if (by_start) sql += " INDEXED BY instances_by_start";
  sql += " WHERE id > ?1";
  if (by_end || by_start) sql += " AND state = '" + std::string(ToString(*state)) + "'";
  else if (state) sql += " AND state = ?2";
  if (filter.worker_id) sql += " AND worker_id = ?3";
  if (filter.owner_id) sql += " AND owner_id = ?4";
  if (filter.starts_by) sql += " AND timeslot_start_ms <= ?6";
  if (filter.ends_by) sql += " AND timeslot_end_ms <= ?7";
  if (filter.pod_due_by) sql += " AND pod_due_ms IS NOT NULL AND pod_due_ms <= ?8";
  sql += " ORDER BY id LIMIT ?5";
  auto stmt = c->Prepare(sql);
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, page.after).Bind(5, static_cast<std::int64_t>(page.limit) + 1);
  if (state && !by_end && !by_start) (*stmt)->Bind(2, ToString(*state));
  if (filter.worker_id) (*stmt)->Bind(3, *filter.worker_id);
  if (filter.owner_id) (*stmt)->Bind(4, *filter.owner_id);
  if (filter.starts_by) (*stmt)->Bind(6, ToUnixMillis(*filter.starts_by));
  if (filter.ends_by) (*stmt)->Bind(7, ToUnixMillis(*filter.ends_by));
  if (filter.pod_due_by) (*stmt)->Bind(8, ToUnixMillis(*filter.pod_due_by));
  ports::PageOf<LabletInstance> out;
  int rc;
  while ((rc = (*stmt)->Step()) == SQLITE_ROW) {
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = out.items.back().id.value;
      break;
    }
    auto i = ReadInstance(*c.operator->(), **stmt);
    if (!i) return i.error();
    out.items.push_back(std::move(i.value()));
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqlError(c->db(), "list instances");
  return out;
}

Result<std::map<InstanceState, ports::StateCount>> SqliteStore::CountInstances() {
  auto c = Lease();
  // Each state's count and oldest entry come from the (state, entered_ms) index alone. The
  // states are named (not `state <> 'TERMINATED'`, which scans the whole index) so that the
  // TERMINATED lablets kept until retention are never read.
  auto stmt = c->Prepare(
      "SELECT state, COUNT(*), MIN(entered_ms) FROM instances WHERE state IN ('PENDING', 'SCHEDULED', "
      "'INSTANTIATING', 'RUNNING', 'COLLECTING', 'GRADING', 'STOPPING', 'STOPPED', 'ARCHIVED') GROUP BY state");
  if (!stmt) return stmt.error();
  std::map<InstanceState, ports::StateCount> out;
  int rc;
  while ((rc = (*stmt)->Step()) == SQLITE_ROW) {
    auto state = ParseInstanceState((*stmt)->Text(0));
    if (!state) return Error::Internal("store: an instance has the unknown state " + std::string((*stmt)->Text(0)));
    out[*state] = {(*stmt)->Int(1), FromUnixMillis((*stmt)->Int(2))};
  }
  if (rc != SQLITE_DONE) return SqlError(c->db(), "count instances");
  return out;
}

Result<Worker> SqliteStore::GetWorker(const WorkerId& id) {
  auto c = Lease();
  auto stmt = c->Prepare("SELECT body FROM workers WHERE id = ?1");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, id.value);
  const int rc = (*stmt)->Step();
  if (rc == SQLITE_ROW) return ReadBody<Worker>(**stmt, 0, wire::WorkerFromJson);
  if (rc != SQLITE_DONE) return SqlError(c->db(), "read worker");
  return Error::NotFound("worker " + id.value + " not found");
}

Result<std::string> SqliteStore::GetWorkerHostname(const WorkerId& id) {
  auto c = Lease();
  auto stmt = c->Prepare("SELECT json_extract(body, '$.hostname') FROM workers WHERE id = ?1");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, id.value);
  const int rc = (*stmt)->Step();
  if (rc == SQLITE_ROW) {
    if ((*stmt)->IsNull(0)) return Error::Internal("store: worker " + id.value + " has no hostname");
    return std::string((*stmt)->Text(0));
  }
  if (rc != SQLITE_DONE) return SqlError(c->db(), "read worker hostname");
  return Error::NotFound("worker " + id.value + " not found");
}

Result<ports::PageOf<Worker>> SqliteStore::ListWorkers(const ports::Page& page) {
  auto c = Lease();
  auto stmt = c->Prepare("SELECT body FROM workers WHERE id > ?1 ORDER BY id LIMIT ?2");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, page.after).Bind(2, static_cast<std::int64_t>(page.limit) + 1);
  ports::PageOf<Worker> out;
  int rc;
  while ((rc = (*stmt)->Step()) == SQLITE_ROW) {
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = out.items.back().id.value;
      break;
    }
    auto w = ReadBody<Worker>(**stmt, 0, wire::WorkerFromJson);
    if (!w) return w.error();
    out.items.push_back(std::move(w.value()));
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqlError(c->db(), "list workers");
  return out;
}

Result<std::optional<std::string>> SqliteStore::ProcessedValue(const std::string& source, const std::string& id,
                                                               Timestamp now) {
  auto c = Lease();
  auto stmt = c->Prepare("SELECT value FROM processed_events WHERE source = ?1 AND id = ?2 AND expires_ms > ?3");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, source).Bind(2, id).Bind(3, ToUnixMillis(now));
  const int rc = (*stmt)->Step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(std::string((*stmt)->Text(0)));
  if (rc != SQLITE_DONE) return SqlError(c->db(), "read processed events");
  return std::optional<std::string>();
}

namespace {

constexpr const char* kOutboxColumns =
    "seq, id, subject, type, time_ms, event, state, attempts, next_attempt_ms, delivered_ms, dead_ms, last_error";

ports::OutboxRecord ReadRecord(Stmt& s) {
  ports::OutboxRecord r;
  r.seq = s.Int(0);
  r.event = {std::string(s.Text(1)), std::string(s.Text(2)), std::string(s.Text(3)), FromUnixMillis(s.Int(4)),
             std::string(s.Text(5))};
  r.state = ports::ParseDeliveryState(s.Text(6)).value_or(ports::DeliveryState::kPending);
  r.attempts = static_cast<int>(s.Int(7));
  r.next_attempt_at = FromUnixMillis(s.Int(8));
  if (!s.Text(9).empty()) r.delivered_at = FromUnixMillis(s.Int(9));
  if (!s.Text(10).empty()) r.dead_at = FromUnixMillis(s.Int(10));
  r.last_error = std::string(s.Text(11));
  return r;
}

}  // namespace

Result<std::vector<ports::OutboxRecord>> SqliteStore::DueEvents(Timestamp now, int limit) {
  auto c = Lease();
  // Scan pending events in order; a subject whose oldest pending event is still backing off
  // is blocked for the rest of the scan. The scan is bounded so that a long backlog of
  // blocked subjects cannot make one round unbounded.
  auto stmt = c->Prepare(std::string("SELECT ") + kOutboxColumns +
                         " FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?1");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, static_cast<std::int64_t>(limit) * 4 + 64);
  std::vector<ports::OutboxRecord> out;
  std::set<std::string> blocked;
  int rc;
  while (static_cast<int>(out.size()) < limit && (rc = (*stmt)->Step()) == SQLITE_ROW) {
    const std::string subject((*stmt)->Text(2));
    if (blocked.count(subject)) continue;
    if ((*stmt)->Int(8) > ToUnixMillis(now)) {
      blocked.insert(subject);
      continue;
    }
    out.push_back(ReadRecord(**stmt));
  }
  return out;
}

Result<ports::PageOf<ports::OutboxRecord>> SqliteStore::ListEvents(const ports::EventFilter& f, const ports::Page& page) {
  auto c = Lease();
  auto cursor = ParseSeqCursor(page.after);
  if (!cursor) return cursor.error();
  std::int64_t after = *cursor;
  std::string sql = std::string("SELECT ") + kOutboxColumns + " FROM outbox WHERE seq > ?1";
  if (f.subject) sql += " AND subject = ?2";
  if (f.type) sql += " AND type = ?3";
  if (f.since) sql += " AND time_ms >= ?4";
  if (f.until) sql += " AND time_ms < ?5";
  if (f.state) sql += " AND state = ?6";
  sql += " ORDER BY seq LIMIT ?7";
  auto stmt = c->Prepare(sql);
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, after).Bind(7, static_cast<std::int64_t>(page.limit) + 1);
  if (f.subject) (*stmt)->Bind(2, *f.subject);
  if (f.type) (*stmt)->Bind(3, *f.type);
  if (f.since) (*stmt)->Bind(4, ToUnixMillis(*f.since));
  if (f.until) (*stmt)->Bind(5, ToUnixMillis(*f.until));
  if (f.state) (*stmt)->Bind(6, ports::ToString(*f.state));
  ports::PageOf<ports::OutboxRecord> out;
  int rc;
  while ((rc = (*stmt)->Step()) == SQLITE_ROW) {
    if (static_cast<int>(out.items.size()) == page.limit) {
      out.next = std::to_string(out.items.back().seq);
      break;
    }
    out.items.push_back(ReadRecord(**stmt));
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqlError(c->db(), "list events");
  return out;
}

Result<ports::OutboxRecord> SqliteStore::GetEvent(const std::string& event_id) {
  auto c = Lease();
  auto stmt = c->Prepare(std::string("SELECT ") + kOutboxColumns + " FROM outbox WHERE id = ?1");
  if (!stmt) return stmt.error();
  (*stmt)->Bind(1, event_id);
  const int rc = (*stmt)->Step();
  if (rc == SQLITE_ROW) return ReadRecord(**stmt);
  if (rc != SQLITE_DONE) return SqlError(c->db(), "read event");
  return Error::NotFound("event " + event_id + " not found");
}

Result<ports::OutboxStats> SqliteStore::GetOutboxStats() {
  auto c = Lease();
  auto stmt = c->Prepare(
      // The AUTOINCREMENT high-water mark counts every event ever written, purged ones too.
      "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0), "
      "(SELECT count(*) FROM outbox WHERE state = 'pending'), (SELECT count(*) FROM outbox WHERE state = 'dead'), "
      "(SELECT count(*) FROM outbox WHERE state = 'held')");
  if (!stmt) return stmt.error();
  if ((*stmt)->Step() != SQLITE_ROW) return SqlError(c->db(), "outbox stats");
  return ports::OutboxStats{(*stmt)->Int(0), (*stmt)->Int(1), (*stmt)->Int(2), (*stmt)->Int(3)};
}

Result<std::int64_t> SqliteStore::LastSeq() {
  auto c = Lease();
  // seq is the rowid: its maximum is the last row of the table's b-tree, one page read.
  auto stmt = c->Prepare("SELECT coalesce(max(seq), 0) FROM outbox");
  if (!stmt) return stmt.error();
  if ((*stmt)->Step() != SQLITE_ROW) return SqlError(c->db(), "last seq");
  return (*stmt)->Int(0);
}

Result<ports::PurgeCounts> SqliteStore::Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) {
  // A connection of its own: the group committer's belongs to the committing thread, and a
  // purge is rare and bounded, so it may wait its turn for the write lock.
  auto conn = OpenConnection(options_.path, true);
  if (!conn) return conn.error();
  Connection& c = **conn;
  if (auto s = c.Exec("BEGIN IMMEDIATE"); !s) return s.error();
  ports::PurgeCounts counts;
  auto run = [&](const std::string& sql, auto bind, int& removed) -> Status {
    auto stmt = c.Prepare(sql);
    if (!stmt) return stmt.error();
    bind(**stmt);
    if ((*stmt)->Step() != SQLITE_DONE) return SqlError(c.db(), "purge");
    removed = sqlite3_changes(c.db());
    return {};
  };
  // The time an instance terminated is in its body; the state index finds the candidates.
  // Their history first, then the instances: both pick the same ones, being in one write
  // transaction.
  const std::string purged =
      "SELECT id FROM instances WHERE state = 'TERMINATED' AND json_extract(body, '$.terminated_at') < ?1 "
      "ORDER BY id LIMIT ?2";
  const auto bind_purged = [&](Stmt& st) { st.Bind(1, FormatRfc3339(terminated_before)).Bind(2, std::int64_t{limit}); };
  int history_rows = 0;
  Status s = run("DELETE FROM instance_history WHERE instance_id IN (" + purged + ")", bind_purged, history_rows);
  if (s) s = run("DELETE FROM instances WHERE id IN (" + purged + ")", bind_purged, counts.instances);
  if (s)
    s = run("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE state = 'delivered' "
            "AND delivered_ms < ?1 ORDER BY seq LIMIT ?2)",
            [&](Stmt& st) { st.Bind(1, ToUnixMillis(delivered_before)).Bind(2, std::int64_t{limit}); }, counts.events);
  if (s) s = c.Exec("COMMIT");
  if (!s) {
    (void)c.Exec("ROLLBACK");
    return s.error();
  }
  if (counts.instances > 0) {
    // Those purged were TERMINATED, and a TERMINATED lablet kept here may be one of them.
    std::lock_guard lock(kept_mu_);
    std::erase_if(kept_, [](const auto& kept) { return kept.second->state == InstanceState::kTerminated; });
  }
  return counts;
}

Status SqliteStore::Ping() {
  {
    auto c = Lease();
    auto stmt = c->Prepare("SELECT count(*) FROM workers WHERE 0");
    if (!stmt) return stmt.error();
    if ((*stmt)->Step() != SQLITE_ROW) return SqlError(c->db(), "ping");
  }
  if (!out_of_space_.load()) return {};
  // Without a write, nothing would clear the failure: an instance taken out of service by
  // its readiness gets no requests, hence no commits.
  // Readiness is probed often: it never waits for a probe another one runs.
  if (std::unique_lock lock(probe_mu_, std::try_to_lock); lock.owns_lock()) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_probe_ >= std::chrono::seconds(1)) {
      last_probe_ = now;
      if (ProbeWrite() && out_of_space_.exchange(false))
        spdlog::info("store: writes to {} succeed again", options_.path);
    }
  }
  if (!out_of_space_.load())
    return {};
  return Error::Unavailable("store: writes to " + options_.path + " fail for lack of disk space");
}

// One tiny transaction on a connection of its own (the writer's belongs to the committing
// thread): it rewrites the schema version with the same value, which appends a page to the
// WAL and so needs free space as any commit does.
Status SqliteStore::ProbeWrite() {
  auto conn = OpenConnection(options_.path, true);
  if (!conn) return conn.error();
  // Busy with the writer: try at the next probe rather than hold a readiness check.
  sqlite3_busy_timeout((*conn)->db(), 50);
  const std::string sql =
      "BEGIN IMMEDIATE; PRAGMA user_version=" + std::to_string(SchemaVersion()) + "; COMMIT;";
  if (auto s = (*conn)->Exec(sql.c_str()); !s) {
    (void)(*conn)->Exec("ROLLBACK");
    return s;
  }
  return {};
}

SqliteStore::CommitStats SqliteStore::Stats() {
  std::lock_guard lock(write_mu_);
  return stats_;
}

// ---- writes --------------------------------------------------------------------------------

Status SqliteStore::Commit(const Changes& changes) {
  if (changes.empty()) return {};
  const Encoded encoded = Encode(changes);
  Writer w;
  w.changes = &changes;
  w.encoded = &encoded;
  std::unique_lock lock(write_mu_);
  writers_.push_back(&w);
  w.cv.wait(lock, [&] { return w.done || (!leading_ && writers_.front() == &w); });
  if (w.done) return w.status;
  // This writer leads: it commits its own changes and those of every writer queued behind
  // it, in one transaction and one fsync.
  LeadBatch(lock, &w);
  return w.status;
}

void SqliteStore::CommitThen(Changes changes, std::function<void(Status)> then) {
  // Never empty: an empty `then` would mark a writer that some thread waits for.
  if (!then) then = [](Status) {};
  if (changes.empty()) {
    then({});
    return;
  }
  auto w = std::make_unique<Writer>();
  w->owned = std::make_unique<Writer::Owned>();
  w->owned->encoded = Encode(changes);
  w->owned->changes = std::move(changes);
  w->changes = &w->owned->changes;
  w->encoded = &w->owned->encoded;
  w->then = std::move(then);
  std::lock_guard lock(write_mu_);
  if (!committer_.joinable()) committer_ = std::thread([this] { RunCommitter(); });
  writers_.push_back(w.release());
  if (!leading_ && writers_.front()->then) committer_cv_.notify_one();
}

SqliteStore::Encoded SqliteStore::Encode(const Changes& changes) {
  Encoded encoded;
  encoded.definitions.reserve(changes.new_definitions.size());
  for (const auto& d : changes.new_definitions) encoded.definitions.push_back(wire::ToJson(d, wire::Secrets::kShown).dump());
  encoded.instances.reserve(changes.instances.size());
  for (const auto& i : changes.instances) encoded.instances.push_back(EncodedInstance::Encode(i, i.version + 1));
  encoded.workers.reserve(changes.workers.size());
  for (const auto& w : changes.workers) encoded.workers.push_back(WorkerBody(w, w.version + 1));
  return encoded;
}

// The thread that leads for CommitThen's writers: a batch whenever one of them is at the front
// of the queue and nobody leads. Started by the first CommitThen; once the store is being
// destroyed, it commits what is queued and ends.
void SqliteStore::RunCommitter() {
  std::unique_lock lock(write_mu_);
  const auto ready = [&] { return !leading_ && !writers_.empty() && writers_.front()->then; };
  for (;;) {
    committer_cv_.wait(lock, [&] { return ready() || (stopping_ && writers_.empty()); });
    if (!ready()) return;
    LeadBatch(lock, nullptr);
  }
}

// Commits the batch at the front of the queue (up to max_batch writers) in one transaction,
// then hands the lead to the next writer: a waiting caller of Commit, or the committer thread
// for one of CommitThen. `lock` holds write_mu_ on entry and on return; `self` is the caller's
// own writer, which the batch includes (null for the committer thread).
void SqliteStore::LeadBatch(std::unique_lock<std::mutex>& lock, Writer* self) {
  leading_ = true;
  std::vector<Writer*> batch;
  for (Writer* q : writers_) {
    if (static_cast<int>(batch.size()) == options_.max_batch) break;
    batch.push_back(q);
  }
  lock.unlock();
  // Whatever happens, every writer of the batch is told and the lead passes on: a writer
  // left behind would hold the queue for good.
  const auto failed = [&](const std::string& what) {
    spdlog::error("store: a commit failed unexpectedly: {}", what);
    // Nothing of the batch stays, and the next one begins outside any transaction.
    if (!sqlite3_get_autocommit(writer_conn_->db()))
      if (auto s = writer_conn_->Exec("ROLLBACK"); !s)
        spdlog::error("store: the failed commit could not be rolled back: {}", s.error().message);
    for (Writer* q : batch) q->status = Error::Internal("store: the commit failed: " + what);
  };
  try {
    ApplyBatch(batch);
  } catch (const std::exception& e) {
    failed(e.what());
  } catch (...) {
    failed("an unknown exception");
  }
  try {
    KeepCommitted(batch);
  } catch (...) {
    // Committed all the same: only what is kept is lost, and nothing kept may be stale.
    std::lock_guard kept_lock(kept_mu_);
    kept_.clear();
  }
  // Read before the followers are released: their changes die with them.
  bool wrote_events = false;
  for (Writer* q : batch) wrote_events |= q->status.has_value() && !q->changes->events.empty();
  lock.lock();
  ++stats_.transactions;
  stats_.commits += batch.size();
  std::vector<Writer*> told;  // CommitThen's, told once the lock is released
  for (Writer* q : batch) {
    writers_.pop_front();
    q->done = true;
    if (q->then)
      told.push_back(q);
    else if (q != self)
      q->cv.notify_one();
  }
  leading_ = false;
  if (!writers_.empty()) {
    if (writers_.front()->then)
      committer_cv_.notify_one();
    else
      writers_.front()->cv.notify_one();
  }
  lock.unlock();
  for (Writer* q : told) {
    const std::unique_ptr<Writer> owned(q);
    // A callback that throws must not end the thread that commits for everyone.
    try {
      owned->then(owned->status);
    } catch (const std::exception& e) {
      spdlog::error("store: a commit's callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("store: a commit's callback threw");
    }
  }
  if (wrote_events && options_.on_events_committed) options_.on_events_committed();
  lock.lock();
}

void SqliteStore::ApplyBatch(const std::vector<Writer*>& batch) {
  Connection& c = *writer_conn_;
  bool out_of_space = false;
  auto run = [&c, &out_of_space](const char* sql) -> Status {
    auto stmt = c.Prepare(sql);
    if (!stmt) return stmt.error();
    if ((*stmt)->Step() != SQLITE_DONE) {
      out_of_space = out_of_space || OutOfSpace(c.db());
      return SqlError(c.db(), sql);
    }
    return {};
  };
  // Readiness follows the outcome: failed for lack of space, or committed.
  auto report = [this, &out_of_space](bool committed) {
    if (out_of_space && !out_of_space_.exchange(true))
      spdlog::error("store: writes to {} fail for lack of disk space; not ready until one succeeds", options_.path);
    if (committed && out_of_space_.exchange(false)) spdlog::info("store: writes to {} succeed again", options_.path);
  };
  if (auto s = run("BEGIN IMMEDIATE"); !s) {
    for (Writer* w : batch) w->status = s.error();
    report(false);
    return;
  }
  for (Writer* w : batch) {
    // Each commit in its own savepoint: one that fails is undone alone.
    if (auto s = run("SAVEPOINT one"); !s) {
      w->status = s.error();
      continue;
    }
    w->status = ApplyOne(*w->changes, *w->encoded);
    if (!w->status) {
      out_of_space = out_of_space || OutOfSpace(c.db());
      (void)run("ROLLBACK TO one");
    }
    (void)run("RELEASE one");
  }
  if (auto s = run("COMMIT"); !s) {
    (void)run("ROLLBACK");
    for (Writer* w : batch)
      if (w->status) w->status = s.error();
    report(false);
    return;
  }
  report(!out_of_space);
}

// ---- one commit: read, decide, write ---------------------------------------------------------

// What a commit depends on, as its writer finds it inside the transaction (it is alone there,
// so nothing changes between this read and the write).
struct SqliteStore::CommitReads {
  std::vector<std::optional<std::string>> name_owners;  // per new definition: another id with its name
  std::vector<bool> versions_taken;                     // per new definition
  std::vector<bool> definitions_found;                  // per deleted definition
  std::vector<std::int64_t> instance_versions;          // per instance: its stored version, 0 when absent
  std::vector<std::int64_t> history_lens;               // per instance: its stored history entries, 0 when absent
  std::vector<std::optional<std::string>> instance_workers;  // per instance: its stored worker_id
  // Per instance that takes a reservation: the other instances, not yet TERMINATED, holding it.
  std::vector<std::vector<std::string>> reservation_holders;
  std::vector<std::int64_t> worker_versions;  // per worker: 0 when absent
  std::set<std::string> dead_subjects;        // the new events' subjects that have a dead letter
  // The deliveries' records, and every record of a subject where one dead-letters or replays
  // an event (the held rule's subjects, with their seqs in order).
  std::map<std::int64_t, ports::OutboxRecord> records;
  std::map<std::string, std::vector<std::int64_t>> rule_subjects;
  std::vector<std::optional<std::int64_t>> processed_expiries;  // per processed key: expires_ms
};

// What a commit writes beyond its changes as given: each new event's delivery state, and the
// records whose bookkeeping changes (by deliveries and the held rule), as they end.
struct SqliteStore::CommitPlan {
  std::vector<std::size_t> stored_history;      // per instance: its history entries stored before it
  // Per instance: whether its worker_id differs from the one stored before it. An UPDATE that
  // names worker_id rewrites its index entry even when the value is the same: a page per move.
  std::vector<bool> worker_changed;
  std::vector<ports::OutboxRecord> new_events;  // per new event: state and next attempt
  std::map<std::int64_t, ports::OutboxRecord> records;  // working copies of stored records, by seq
  std::set<std::int64_t> changed;                     // the seqs among them to write back
};

namespace {

// Runs `stmt` (bound by `bind`) and hands each row to `row`. Errors: those of SQLite.
template <typename Bind, typename Row>
Status Query(SqliteStore::Connection& c, const std::string& sql, Bind bind, Row row) {
  auto stmt = c.Prepare(sql);
  if (!stmt) return stmt.error();
  bind(**stmt);
  int rc;
  while ((rc = (*stmt)->Step()) == SQLITE_ROW) row(**stmt);
  if (rc != SQLITE_DONE) return SqlError(c.db(), "read for commit");
  return {};
}

// Runs `sql` (bound by `bind`), which returns no rows. Errors: those of SQLite, naming `what`.
template <typename Bind>
Status Execute(SqliteStore::Connection& c, const std::string& sql, std::string_view what, Bind bind) {
  auto stmt = c.Prepare(sql);
  if (!stmt) return stmt.error();
  bind(**stmt);
  if ((*stmt)->Step() != SQLITE_DONE) return SqlError(c.db(), what);
  return {};
}

}  // namespace

// 1. Read: every row the commit depends on.
Result<SqliteStore::CommitReads> SqliteStore::ReadForCommit(const Changes& ch) {
  Connection& c = *writer_conn_;
  CommitReads r;
  const auto flag = [](bool& out) { return [&out](Stmt&) { out = true; }; };
  for (const auto& d : ch.new_definitions) {
    auto& owner = r.name_owners.emplace_back();
    bool taken = false;
    auto s = Query(c, "SELECT id FROM definitions WHERE name = ?1 AND id <> ?2 LIMIT 1",
                   [&](Stmt& st) { st.Bind(1, d.name).Bind(2, d.id.value); },
                   [&](Stmt& st) { owner = std::string(st.Text(0)); });
    if (s) s = Query(c, "SELECT 1 FROM definitions WHERE id = ?1 AND version = ?2",
                     [&](Stmt& st) { st.Bind(1, d.id.value).Bind(2, d.version); }, flag(taken));
    if (!s) return s.error();
    r.versions_taken.push_back(taken);
  }
  for (const auto& id : ch.deleted_definitions) {
    bool found = false;
    auto s = Query(c, "SELECT 1 FROM definitions WHERE id = ?1 LIMIT 1", [&](Stmt& st) { st.Bind(1, id.value); },
                   flag(found));
    if (!s) return s.error();
    r.definitions_found.push_back(found);
  }
  for (const auto& i : ch.instances) {
    auto& version = r.instance_versions.emplace_back(0);
    auto& history_len = r.history_lens.emplace_back(0);
    auto& worker = r.instance_workers.emplace_back();
    auto& holders = r.reservation_holders.emplace_back();
    auto s = Query(c, "SELECT version, history_len, worker_id FROM instances WHERE id = ?1",
                   [&](Stmt& st) { st.Bind(1, i.id.value); },
                   [&](Stmt& st) {
                     version = st.Int(0);
                     history_len = st.Int(1);
                     if (!st.IsNull(2)) worker = std::string(st.Text(2));
                   });
    if (s && i.version == 0 && i.reservation_id && i.state != InstanceState::kTerminated)
      s = Query(c, "SELECT id FROM instances WHERE reservation_id = ?1 AND state <> 'TERMINATED' AND id <> ?2",
                [&](Stmt& st) { st.Bind(1, *i.reservation_id).Bind(2, i.id.value); },
                [&](Stmt& st) { holders.emplace_back(st.Text(0)); });
    if (!s) return s.error();
  }
  for (const auto& w : ch.workers) {
    auto& version = r.worker_versions.emplace_back(0);
    auto s = Query(c, "SELECT version FROM workers WHERE id = ?1", [&](Stmt& st) { st.Bind(1, w.id.value); },
                   [&](Stmt& st) { version = st.Int(0); });
    if (!s) return s.error();
  }
  for (const auto& e : ch.events) {
    if (r.dead_subjects.count(e.subject)) continue;
    auto s = Query(c, "SELECT 1 FROM outbox WHERE subject = ?1 AND state = 'dead' LIMIT 1",
                   [&](Stmt& st) { st.Bind(1, e.subject); }, [&](Stmt&) { r.dead_subjects.insert(e.subject); });
    if (!s) return s.error();
  }
  if (auto s = ReadDeliveredRecords(ch, r); !s) return s.error();
  for (const auto& k : ch.processed) {
    auto& expiry = r.processed_expiries.emplace_back();
    auto s = Query(c, "SELECT expires_ms FROM processed_events WHERE source = ?1 AND id = ?2",
                   [&](Stmt& st) { st.Bind(1, k.source).Bind(2, k.id); }, [&](Stmt& st) { expiry = st.Int(0); });
    if (!s) return s.error();
  }
  return r;
}

// The records the deliveries name, then every record of the subjects where one dead-letters
// or replays an event. The common update (delivered, retried) reads its own record alone.
Status SqliteStore::ReadDeliveredRecords(const Changes& ch, CommitReads& r) {
  Connection& c = *writer_conn_;
  const auto keep = [&r](Stmt& st) {
    ports::OutboxRecord record = ReadRecord(st);
    r.records.emplace(record.seq, std::move(record));
  };
  std::set<std::string> subjects;
  for (const auto& d : ch.deliveries) {
    auto s = Query(c, std::string("SELECT ") + kOutboxColumns + " FROM outbox WHERE seq = ?1",
                   [&](Stmt& st) { st.Bind(1, d.seq); }, keep);
    if (!s) return s;
    if (auto it = r.records.find(d.seq); it != r.records.end() && TouchesSubject(d)) subjects.insert(it->second.event.subject);
  }
  for (const auto& subject : subjects) {
    auto& seqs = r.rule_subjects[subject];
    auto s = Query(c, std::string("SELECT ") + kOutboxColumns + " FROM outbox WHERE subject = ?1 ORDER BY seq",
                   [&](Stmt& st) { st.Bind(1, subject); },
                   [&](Stmt& st) {
                     seqs.push_back(st.Int(0));
                     keep(st);
                   });
    if (!s) return s;
  }
  return {};
}

// 2. Decide: from what was read, the commit's refusal or what it writes. No I/O. Each part of
// a commit sees what the earlier parts wrote, as it would inside the transaction.
class SqliteStore::CommitDecision {
 public:
  CommitDecision(const Changes& ch, const CommitReads& reads) : ch_(ch), reads_(reads) {}

  Result<CommitPlan> Decide() {
    for (auto step : {&CommitDecision::Definitions, &CommitDecision::Instances, &CommitDecision::Workers,
                      &CommitDecision::Deliveries, &CommitDecision::ProcessedKeys})
      if (auto s = (this->*step)(); !s) return s.error();
    return std::move(plan_);
  }

 private:
  // A version exists once, a name belongs to one id; a deleted definition exists.
  Status Definitions() {
    std::map<std::string, std::string> names;           // staged name -> id
    std::set<std::pair<std::string, std::string>> ids;  // staged (id, version)
    for (size_t n = 0; n < ch_.new_definitions.size(); ++n) {
      const auto& d = ch_.new_definitions[n];
      if (reads_.name_owners[n]) return NameTaken(d.name, *reads_.name_owners[n]);
      if (auto staged = names.find(d.name); staged != names.end() && staged->second != d.id.value)
        return NameTaken(d.name, staged->second);
      if (reads_.versions_taken[n] || ids.count({d.id.value, d.version})) return DefinitionVersionTaken(d.name, d.version);
      names.emplace(d.name, d.id.value);
      ids.insert({d.id.value, d.version});
    }
    for (size_t n = 0; n < ch_.deleted_definitions.size(); ++n) {
      const auto& id = ch_.deleted_definitions[n];
      const bool staged = std::any_of(ids.begin(), ids.end(), [&id](const auto& v) { return v.first == id.value; });
      if (!reads_.definitions_found[n] && !staged) return Error::NotFound("definition " + id.value + " not found");
    }
    return {};
  }

  // Each written at the version it was read at, with at least the history entries stored
  // (history only grows: the store appends, never rewrites); one instance not yet
  // TERMINATED per reservation, counting those this commit writes.
  Status Instances() {
    struct Staged {
      std::int64_t version;
      std::size_t history_len;
      std::optional<std::string> worker;
      InstanceState state;
      std::optional<std::string> reservation;  // taken by an instance this commit inserts
    };
    std::map<std::string, Staged> staged;
    for (size_t n = 0; n < ch_.instances.size(); ++n) {
      const auto& i = ch_.instances[n];
      auto before = staged.find(i.id.value);
      if ((before != staged.end() ? before->second.version : reads_.instance_versions[n]) != i.version)
        return StaleVersion("instance", i.id.value, i.version);
      const std::size_t stored =
          before != staged.end() ? before->second.history_len : static_cast<std::size_t>(reads_.history_lens[n]);
      if (i.state_history.size() < stored)
        return Error::Internal("store: instance " + i.id.value + " is written with " +
                               std::to_string(i.state_history.size()) + " history entries, fewer than the " +
                               std::to_string(stored) + " stored; a history only grows");
      plan_.stored_history.push_back(stored);
      std::optional<std::string> worker;
      if (i.worker_id) worker = i.worker_id->value;
      plan_.worker_changed.push_back(
          worker != (before != staged.end() ? before->second.worker : reads_.instance_workers[n]));
      for (const auto& holder : reads_.reservation_holders[n]) {
        auto s = staged.find(holder);
        if (s == staged.end() || s->second.state != InstanceState::kTerminated) return ReservationHeld(*i.reservation_id, holder);
      }
      if (i.version == 0 && i.reservation_id && i.state != InstanceState::kTerminated)
        for (const auto& [id, s] : staged)
          if (id != i.id.value && s.reservation == i.reservation_id && s.state != InstanceState::kTerminated)
            return ReservationHeld(*i.reservation_id, id);
      // An instance written twice in one commit keeps the reservation its insert took.
      const std::optional<std::string> taken =
          i.version == 0 ? i.reservation_id : before != staged.end() ? before->second.reservation : std::nullopt;
      staged[i.id.value] = {i.version + 1, i.state_history.size(), std::move(worker), i.state, taken};
    }
    return {};
  }

  Status Workers() {
    std::map<std::string, std::int64_t> staged;  // id -> version
    for (size_t n = 0; n < ch_.workers.size(); ++n) {
      const auto& w = ch_.workers[n];
      auto before = staged.find(w.id.value);
      if ((before != staged.end() ? before->second : reads_.worker_versions[n]) != w.version)
        return StaleVersion("worker", w.id.value, w.version);
      staged[w.id.value] = w.version + 1;
    }
    return {};
  }

  // New events, held behind a dead letter of their subject; delivery updates; then the held
  // rule in each subject where one dead-lettered or replayed an event.
  Status Deliveries() {
    for (const auto& e : ch_.events) {
      ports::OutboxRecord& r = plan_.new_events.emplace_back();
      r.event.subject = e.subject;
      r.state = reads_.dead_subjects.count(e.subject) ? ports::DeliveryState::kHeld : ports::DeliveryState::kPending;
    }
    std::map<std::string, Timestamp> release_at;  // rule subject -> when its released events are due
    for (const auto& d : ch_.deliveries) {
      if (d.state == ports::DeliveryState::kHeld) return HeldIsNotWritten();
      ports::OutboxRecord* r = Record(d.seq);
      if (!r) return Error::NotFound("outbox event " + std::to_string(d.seq) + " not found");
      ApplyDelivery(*r, d);
      plan_.changed.insert(d.seq);
      if (TouchesSubject(d)) release_at[r->event.subject] = d.at;
    }
    for (const auto& [subject, seqs] : reads_.rule_subjects) {
      std::vector<ports::OutboxRecord*> members;  // in seq order: the stored ones, then the new ones
      for (std::int64_t seq : seqs) members.push_back(Record(seq));
      for (auto& r : plan_.new_events)
        if (r.event.subject == subject) members.push_back(&r);
      KeepHeldRule(members, release_at.at(subject), [&](size_t n) {
        if (n < seqs.size()) plan_.changed.insert(seqs[n]);
      });
    }
    return {};
  }

  // The working copy of a stored record, made on first use; null when there is none.
  ports::OutboxRecord* Record(std::int64_t seq) {
    if (auto it = plan_.records.find(seq); it != plan_.records.end()) return &it->second;
    auto stored = reads_.records.find(seq);
    if (stored == reads_.records.end()) return nullptr;
    return &plan_.records.emplace(seq, stored->second).first->second;
  }

  // The sweep first, then each key, refused while a live one exists (an expired one is taken over).
  Status ProcessedKeys() {
    std::map<std::pair<std::string, std::string>, std::int64_t> staged;  // key -> expires_ms
    for (size_t n = 0; n < ch_.processed.size(); ++n) {
      const auto& k = ch_.processed[n];
      constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::min();
      std::int64_t expires_ms = reads_.processed_expiries[n].value_or(kNone);
      if (ch_.sweep_keys_expired_by && expires_ms <= ToUnixMillis(*ch_.sweep_keys_expired_by)) expires_ms = kNone;
      if (auto s = staged.find({k.source, k.id}); s != staged.end()) expires_ms = s->second;
      if (expires_ms > ToUnixMillis(k.processed_at)) return AlreadyProcessed(k.source, k.id);
      staged[{k.source, k.id}] = ToUnixMillis(k.expires_at);
    }
    return {};
  }

  const Changes& ch_;
  const CommitReads& reads_;
  CommitPlan plan_;
};

Status SqliteStore::ApplyOne(const Changes& ch, const Encoded& encoded) {
  auto reads = ReadForCommit(ch);
  if (!reads) return reads.error();
  auto plan = CommitDecision(ch, *reads).Decide();
  if (!plan) return plan.error();
  return WriteCommit(ch, encoded, *plan);
}

// 3. Write what was decided. The version guards only catch a decide gone wrong.
Status SqliteStore::WriteCommit(const Changes& ch, const Encoded& encoded, const CommitPlan& plan) {
  Connection& c = *writer_conn_;
  const auto run = [&c](const std::string& sql, std::string_view what, auto bind) { return Execute(c, sql, what, bind); };
  const auto one_row = [&c](std::string_view what) -> Status {
    if (sqlite3_changes(c.db()) == 1) return {};
    return Error::Internal("store: " + std::string(what) + " decided on a stale read");
  };
  Status s;
  for (size_t n = 0; s && n < ch.new_definitions.size(); ++n) {
    const auto& d = ch.new_definitions[n];
    s = run("INSERT INTO definitions (id, version, name, deleted, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            "insert definition", [&](Stmt& st) {
              st.Bind(1, d.id.value).Bind(2, d.version).Bind(3, d.name).Bind(4, std::int64_t{d.deleted}).Bind(
                  5, encoded.definitions[n]);
            });
  }
  for (size_t n = 0; s && n < ch.deleted_definitions.size(); ++n)
    s = run("UPDATE definitions SET deleted = 1 WHERE id = ?1", "delete definition",
            [&](Stmt& st) { st.Bind(1, ch.deleted_definitions[n].value); });
  for (size_t n = 0; s && n < ch.instances.size(); ++n)
    s = WriteInstance(ch.instances[n], encoded.instances[n], plan.stored_history[n], plan.worker_changed[n]);
  for (size_t n = 0; s && n < ch.workers.size(); ++n) {
    const auto& w = ch.workers[n];
    if (w.version == 0)
      s = run("INSERT INTO workers (id, version, body) VALUES (?1, 1, ?2)", "insert worker",
              [&](Stmt& st) { st.Bind(1, w.id.value).Bind(2, encoded.workers[n]); });
    else
      s = run("UPDATE workers SET version = ?3, body = ?4 WHERE id = ?1 AND version = ?2", "update worker",
              [&](Stmt& st) { st.Bind(1, w.id.value).Bind(2, w.version).Bind(3, w.version + 1).Bind(4, encoded.workers[n]); });
    if (s) s = one_row("worker " + w.id.value);
  }
  if (s) s = WriteOutbox(ch, plan);
  if (s && ch.sweep_keys_expired_by)
    s = run("DELETE FROM processed_events WHERE expires_ms <= ?1", "sweep processed events",
            [&](Stmt& st) { st.Bind(1, ToUnixMillis(*ch.sweep_keys_expired_by)); });
  for (size_t n = 0; s && n < ch.processed.size(); ++n) {
    const auto& k = ch.processed[n];
    s = run("INSERT INTO processed_events (source, id, processed_ms, expires_ms, value) VALUES (?1, ?2, ?3, ?4, ?5) "
            "ON CONFLICT (source, id) DO UPDATE SET processed_ms = excluded.processed_ms, "
            "expires_ms = excluded.expires_ms, value = excluded.value",
            "insert processed event", [&](Stmt& st) {
              st.Bind(1, k.source).Bind(2, k.id).Bind(3, ToUnixMillis(k.processed_at)).Bind(4, ToUnixMillis(k.expires_at));
              st.Bind(5, k.value);
            });
  }
  return s;
}

// The new events with the state decided for them, then the bookkeeping of the records that
// changed.
Status SqliteStore::WriteOutbox(const Changes& ch, const CommitPlan& plan) {
  Connection& c = *writer_conn_;
  const auto run = [&c](const std::string& sql, std::string_view what, auto bind) { return Execute(c, sql, what, bind); };
  Status s;
  for (size_t n = 0; s && n < ch.events.size(); ++n) {
    const auto& e = ch.events[n];
    const auto& r = plan.new_events[n];
    s = run("INSERT INTO outbox (id, subject, type, time_ms, event, state, next_attempt_ms) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            "insert outbox event", [&](Stmt& st) {
              st.Bind(1, e.id).Bind(2, e.subject).Bind(3, e.type).Bind(4, ToUnixMillis(e.time)).Bind(5, e.json);
              st.Bind(6, ports::ToString(r.state)).Bind(7, ToUnixMillis(r.next_attempt_at));
            });
  }
  for (auto seq = plan.changed.begin(); s && seq != plan.changed.end(); ++seq) {
    const ports::OutboxRecord& r = plan.records.at(*seq);
    s = run("UPDATE outbox SET state = ?2, attempts = ?3, next_attempt_ms = ?4, delivered_ms = ?5, dead_ms = ?6, "
            "last_error = ?7 WHERE seq = ?1",
            "update delivery", [&](Stmt& st) {
              st.Bind(1, r.seq).Bind(2, ports::ToString(r.state)).Bind(3, std::int64_t{r.attempts});
              st.Bind(4, ToUnixMillis(r.next_attempt_at)).Bind(7, r.last_error);
              if (r.delivered_at) st.Bind(5, ToUnixMillis(*r.delivered_at)); else st.BindNull(5);
              if (r.dead_at) st.Bind(6, ToUnixMillis(*r.dead_at)); else st.BindNull(6);
            });
  }
  return s;
}

// One instance, inserted when new (with the reservation it takes) or updated at its version,
// and the entries of its history after the `stored` ones.
Status SqliteStore::WriteInstance(const LabletInstance& i, const EncodedInstance& encoded, std::size_t stored,
                                  bool worker_changed) {
  Connection& c = *writer_conn_;
  const char* sql = nullptr;
  if (i.version == 0)
    sql = "INSERT INTO instances (id, state, worker_id, owner_id, version, body, reservation_id, "
          "timeslot_start_ms, timeslot_end_ms, pod_due_ms, entered_ms, history_len) "
          "VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?9, ?10, ?11, ?12, ?13)";
  else if (worker_changed)
    sql = "UPDATE instances SET state = ?2, worker_id = ?3, version = ?7, body = ?5, "
          "timeslot_start_ms = ?9, timeslot_end_ms = ?10, pod_due_ms = ?11, entered_ms = ?12, "
          "history_len = ?13 WHERE id = ?1 AND version = ?8";
  else  // the same, but worker_id and so its index left alone
    sql = "UPDATE instances SET state = ?2, version = ?7, body = ?5, "
          "timeslot_start_ms = ?9, timeslot_end_ms = ?10, pod_due_ms = ?11, entered_ms = ?12, "
          "history_len = ?13 WHERE id = ?1 AND version = ?8";
  auto stmt = c.Prepare(sql);
  if (!stmt) return stmt.error();
  Stmt& st = **stmt;
  st.Bind(1, i.id.value).Bind(2, ToString(i.state)).Bind(5, encoded.body);
  st.Bind(13, static_cast<std::int64_t>(encoded.history.size()));
  if (i.version == 0 || worker_changed) {
    if (i.worker_id) st.Bind(3, i.worker_id->value); else st.BindNull(3);
  }
  st.Bind(9, ToUnixMillis(i.timeslot_start)).Bind(10, ToUnixMillis(i.timeslot_end)).Bind(12, ToUnixMillis(i.EnteredAt()));
  if (i.pod_due_at) st.Bind(11, ToUnixMillis(*i.pod_due_at)); else st.BindNull(11);
  if (i.version == 0) {
    st.Bind(4, i.owner_id);
    if (i.reservation_id) st.Bind(6, *i.reservation_id); else st.BindNull(6);
  } else {
    st.Bind(7, i.version + 1).Bind(8, i.version);
  }
  if (st.Step() != SQLITE_DONE) return SqlError(c.db(), i.version == 0 ? "insert instance" : "update instance");
  if (sqlite3_changes(c.db()) != 1) return Error::Internal("store: instance " + i.id.value + " decided on a stale read");
  for (std::size_t n = stored; n < encoded.history.size(); ++n) {
    auto s = Execute(c, "INSERT INTO instance_history (instance_id, n, entry) VALUES (?1, ?2, ?3)",
                     "insert instance history", [&](Stmt& h) {
                       h.Bind(1, i.id.value).Bind(2, static_cast<std::int64_t>(n)).Bind(3, encoded.history[n]);
                     });
    if (!s) return s;
  }
  return {};
}

// ---- backup --------------------------------------------------------------------------------

namespace {

Result<std::int64_t> PragmaInt(SqliteStore::Connection& c, const char* pragma) {
  auto stmt = c.Prepare(pragma);
  if (!stmt) return stmt.error();
  if ((*stmt)->Step() != SQLITE_ROW) return SqlError(c.db(), pragma);
  return (*stmt)->Int(0);
}

}  // namespace

Result<SqliteStore::BackupInfo> SqliteStore::Backup(const std::string& path, const std::string& to) {
  if (access(path.c_str(), F_OK) != 0) return Error::NotFound("store: " + path + " does not exist");
  // Opened like a reader of the serving process: read-write without create (WAL readers write
  // the shared-memory index), queries only.
  auto src = OpenConnection(path, false);
  if (!src) return src.error();
  auto version = PragmaInt(**src, "PRAGMA user_version");
  if (!version) return version.error();
  if (*version > SchemaVersion())
    return Error::FailedPrecondition("store: " + path + " has schema version " + std::to_string(*version) +
                                     ", newer than this build's " + std::to_string(SchemaVersion()) +
                                     ": back it up with the ccm that serves it",
                                     "store");
  const int fd = open(to.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return Error::InvalidArgument("backup: " + to + " exists; nothing is overwritten", "to");
    return Error::Unavailable("backup: cannot create " + to + ": " + std::strerror(errno));
  }
  close(fd);
  auto fail = [&to](Error e) {
    unlink(to.c_str());
    return e;
  };
  sqlite3* raw = nullptr;
  if (sqlite3_open_v2(to.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    Error e = Error::Unavailable("backup: cannot open " + to + ": " + (raw ? sqlite3_errmsg(raw) : "out of memory"));
    sqlite3_close_v2(raw);
    return fail(std::move(e));
  }
  Connection dest(raw);
  sqlite3_busy_timeout(dest.db(), 5000);
  sqlite3_backup* copy = sqlite3_backup_init(dest.db(), "main", (*src)->db(), "main");
  if (!copy) return fail(Error::Unavailable(std::string("backup: ") + sqlite3_errmsg(dest.db())));
  // All pages in one step: one read transaction, so one consistent state. The source is
  // busy only while a checkpoint resets the WAL; retry then.
  int rc;
  while ((rc = sqlite3_backup_step(copy, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(20);
  const int finished = sqlite3_backup_finish(copy);
  if (rc != SQLITE_DONE || finished != SQLITE_OK)
    return fail(Error::Unavailable(std::string("backup: copy failed: ") + sqlite3_errstr(rc != SQLITE_DONE ? rc : finished)));
  auto check = dest.Prepare("PRAGMA integrity_check");
  if (!check) return fail(check.error());
  if ((*check)->Step() != SQLITE_ROW || (*check)->Text(0) != "ok")
    return fail(Error::Internal("backup: the copy " + to + " fails its integrity check"));
  auto pages = PragmaInt(dest, "PRAGMA page_count");
  auto page_size = PragmaInt(dest, "PRAGMA page_size");
  if (!pages || !page_size) return fail(Error::Unavailable("backup: cannot read the copy's size"));
  return BackupInfo{static_cast<int>(*version), *pages * *page_size};
}

}  // namespace ccm::store
