// What only the SQLite store promises: group commit, migrations, file modes, kill -9, dedup
// keys kept in the file. The Store contract it shares with the others is in
// store_contract_test.cc.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <sstream>
#include <thread>

#include "app/receiver.h"
#include "os/clock.h"
#include "ports/outbox.h"
#include "ports/page.h"
#include "ports/store.h"
#include "store/sqlite/sqlite_store.h"
#include "support/db_snapshot.h"
#include "support/fake_clock.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"
#include "wire/aggregates.h"

namespace ccm {
namespace {

using namespace ccm::domain;
using ports::Changes;
using testing::MakeEvent;
using testing::MakeInstance;

// A store's file, opened beside it to look at (and, for the migration tests, rewrite) its rows.
class Db {
 public:
  explicit Db(const std::string& path) { sqlite3_open(path.c_str(), &db_); }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Every row `sql` gives, with `params` bound to ?1, ?2, ...: its columns as text ("NULL"
  // for null) joined by '|'. Empty, with the error recorded, when `sql` fails.
  std::vector<std::string> Rows(const std::string& sql, const std::vector<std::string>& params = {}) {
    sqlite3_stmt* s = nullptr;
    std::vector<std::string> rows;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return rows;
    }
    for (size_t n = 0; n < params.size(); ++n)
      sqlite3_bind_text(s, static_cast<int>(n + 1), params[n].c_str(), -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      std::string row;
      for (int c = 0; c < sqlite3_column_count(s); ++c) {
        const auto* t = sqlite3_column_text(s, c);
        row += (c ? "|" : "") + std::string(t ? reinterpret_cast<const char*>(t) : "NULL");
      }
      rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
    sqlite3_finalize(s);
    return rows;
  }
  std::string Scalar(const std::string& sql, const std::vector<std::string>& params = {}) {
    auto rows = Rows(sql, params);
    return rows.empty() ? std::string() : rows[0];
  }
  // Runs statements that return no rows. Errors: SQLite's message.
  ::testing::AssertionResult Exec(const std::string& sql) {
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << sqlite3_errmsg(db_);
  }

 private:
  sqlite3* db_ = nullptr;
};

// Moves `i` to `to`, as the domain would, without its rules: the store keeps what it is given.
void Move(LabletInstance& i, InstanceState to, std::int64_t at_ms, std::string reason = "r") {
  i.state_history.push_back({i.state, to, FromUnixMillis(at_ms), std::move(reason), "t"});
  i.state = to;
}

using testing::CommitInstance;

// Lablet "i1" moved to SCHEDULED, then INSTANTIATING: a history of two entries.
LabletInstance MovedTwice() {
  LabletInstance i = MakeInstance("i1");
  Move(i, InstanceState::kScheduled, 2000);
  Move(i, InstanceState::kInstantiating, 3000);
  return i;
}

// Each entry of `i`'s history as its row in instance_history holds it: "n|entry", the entry
// as the instance's JSON shape writes it.
std::vector<std::string> HistoryRows(const LabletInstance& i) {
  std::vector<std::string> rows;
  const auto history = wire::ToJson(i).at("state_history");
  for (size_t n = 0; n < history.size(); ++n) rows.push_back(std::to_string(n) + "|" + history[n].dump());
  return rows;
}

constexpr const char* kHistoryOf = "SELECT n, entry FROM instance_history WHERE instance_id = ?1 ORDER BY n";

TEST(SqliteStore, ConcurrentCommitsShareTransactions) {
  testing::TempDir dir;
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_TRUE(store);
  constexpr int kThreads = 16, kEach = 40;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int n = 0; n < kEach; ++n) {
        Changes c;
        c.instances = {MakeInstance("i-" + std::to_string(t) + "-" + std::to_string(n))};
        c.events = {MakeEvent("e-" + std::to_string(t) + "-" + std::to_string(n), "s")};
        ASSERT_TRUE((*store)->Commit(c));
      }
    });
  for (auto& t : threads) t.join();
  const auto stats = (*store)->Stats();
  EXPECT_EQ(stats.commits, static_cast<std::uint64_t>(kThreads * kEach));
  // Group commit: 16 writers at once must share fsyncs, not take one each.
  EXPECT_LT(stats.transactions, stats.commits);
  EXPECT_EQ((*store)->ListInstances({}, {ports::kMaxPageLimit, ""})->items.size(), static_cast<size_t>(ports::kMaxPageLimit));
}

TEST(SqliteStore, FailedCommitInABatchDoesNotUndoItsNeighbours) {
  testing::TempDir dir;
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_TRUE(store);
  Changes dup;
  dup.instances = {MakeInstance("taken")};
  ASSERT_TRUE((*store)->Commit(dup));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, refused{0};
  for (int t = 0; t < 16; ++t)
    threads.emplace_back([&, t] {
      Changes c;
      c.instances = {MakeInstance(t % 4 == 0 ? "taken" : "fresh-" + std::to_string(t))};
      ((*store)->Commit(c) ? ok : refused)++;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 12);
  EXPECT_EQ(refused.load(), 4);
  EXPECT_EQ((*store)->ListInstances({}, {})->items.size(), 13u);
}

// SQLite lets one commit write an instance twice (its insert, then a move). The reservation
// its insert took still counts against a third instance of the same commit.
TEST(SqliteStore, AnInstanceWrittenTwiceInOneCommitKeepsItsReservation) {
  testing::TempDir dir;
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_TRUE(store);
  auto first = MakeInstance("first");
  first.reservation_id = "r-1";
  auto moved = first;
  moved.version = 1;
  auto second = MakeInstance("second");
  second.reservation_id = "r-1";
  Changes c;
  c.instances = {first, moved, second};
  auto refused = (*store)->Commit(c);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_EQ(refused.error().field, "reservation_id");
  EXPECT_EQ((*store)->GetInstance({"first"}).error().code, ErrorCode::kNotFound);  // nothing of it written
}

TEST(SqliteStore, WritesWalWithFullSyncAndRecordsTheSchemaVersion) {
  testing::TempDir dir;
  ASSERT_TRUE(store::SqliteStore::Open({dir.File("ccm.db")}));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("ccm.db").c_str(), &db), SQLITE_OK);
  auto scalar = [&](const char* sql) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
    sqlite3_step(s);
    std::string v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return v;
  };
  EXPECT_EQ(scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(scalar("PRAGMA user_version"), std::to_string(store::SqliteStore::SchemaVersion()));
  EXPECT_EQ(scalar("SELECT count(*) FROM sqlite_master WHERE name IN ('outbox', 'processed_events')"), "2");
  sqlite3_close(db);
}

// What migration 5 did (the history out of the rows), undone: the schema before it, with each
// instance's history back in its body.
constexpr const char* kUndoHistoryRows =
    "UPDATE instances SET body = json_set(body, '$.state_history', (SELECT json_group_array(json(entry)) FROM "
    "(SELECT entry FROM instance_history WHERE instance_id = instances.id ORDER BY n))); "
    "DROP TABLE instance_history; ALTER TABLE instances DROP COLUMN history_len;";

// What migration 4 added (the sweeps' times and their indexes), undone: the schema before it.
constexpr const char* kUndoSweepTimes =
    "DROP INDEX instances_by_start; DROP INDEX instances_by_end; DROP INDEX instances_by_pod_due; "
    "DROP INDEX instances_by_entered; ALTER TABLE instances DROP COLUMN timeslot_start_ms; "
    "ALTER TABLE instances DROP COLUMN timeslot_end_ms; ALTER TABLE instances DROP COLUMN pod_due_ms; "
    "ALTER TABLE instances DROP COLUMN entered_ms;";

// A database written before the sweeps' times had columns: the migration reads them from the
// stored instances, so that the sweeps' bounds and the counts see those instances too.
TEST(SqliteStore, TheSweepTimesMigrationCoversInstancesWrittenBeforeIt) {
  testing::TempDir dir;
  {
    auto store = store::SqliteStore::Open({dir.File("ccm.db")});
    ASSERT_TRUE(store);
    LabletInstance old = MakeInstance("i-old");
    old.state = InstanceState::kRunning;
    old.timeslot_end = FromUnixMillis(2'000'123);
    old.pod_due_at = FromUnixMillis(1'500'007);
    old.state_history.push_back({InstanceState::kInstantiating, InstanceState::kRunning, FromUnixMillis(1'200'999), "r", "t"});
    Changes c;
    c.instances = {old};
    ASSERT_TRUE((*store)->Commit(c));
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("ccm.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, (std::string(kUndoHistoryRows) + kUndoSweepTimes + "PRAGMA user_version=3;").c_str(),
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_TRUE(store);
  auto count = [&](ports::InstanceFilter f) { return (*store)->ListInstances(f, {})->items.size(); };
  ports::InstanceFilter f;
  f.state = InstanceState::kRunning;
  f.ends_by = FromUnixMillis(2'000'123);  // to the millisecond
  EXPECT_EQ(count(f), 1u);
  f.ends_by = FromUnixMillis(2'000'122);
  EXPECT_EQ(count(f), 0u);
  f.ends_by.reset();
  f.pod_due_by = FromUnixMillis(1'500'007);
  EXPECT_EQ(count(f), 1u);
  f.pod_due_by = FromUnixMillis(1'500'006);
  EXPECT_EQ(count(f), 0u);
  f.pod_due_by.reset();
  f.starts_by = MakeInstance("x").timeslot_start;
  EXPECT_EQ(count(f), 1u);
  auto counts = (*store)->CountInstances();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->at(InstanceState::kRunning).count, 1);
  EXPECT_EQ(counts->at(InstanceState::kRunning).oldest_entered_at, FromUnixMillis(1'200'999));
}

// A database written before reservations were indexed: the migration finds the
// reservations in the stored instances, so that the rule holds for them too.
TEST(SqliteStore, TheReservationMigrationCoversInstancesWrittenBeforeIt) {
  testing::TempDir dir;
  {
    auto store = store::SqliteStore::Open({dir.File("ccm.db")});
    ASSERT_TRUE(store);
    LabletInstance held = MakeInstance("i-old");
    held.reservation_id = "r-old";
    Changes c;
    c.instances = {held};
    ASSERT_TRUE((*store)->Commit(c));
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("ccm.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         (std::string(kUndoHistoryRows) + kUndoSweepTimes +
                          "DROP INDEX instances_by_reservation; ALTER TABLE instances DROP COLUMN reservation_id; "
                          "ALTER TABLE processed_events DROP COLUMN value; PRAGMA user_version=2;")
                             .c_str(),
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_TRUE(store);
  LabletInstance fresh = MakeInstance("i-new");
  fresh.reservation_id = "r-old";
  Changes c;
  c.instances = {fresh};
  auto refused = (*store)->Commit(c);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field, "reservation_id");
}

// A database written before the history had rows of its own: the migration moves each
// instance's entries out of its body, in order and as they were, and a later move appends
// after them.
TEST(SqliteStore, TheHistoryMigrationMovesEveryEntryOutOfTheRowsWrittenBeforeIt) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  ASSERT_TRUE(store::SqliteStore::Open({path}));  // a new file, closed again
  LabletInstance a = MakeInstance("a"), none = MakeInstance("none"), one = MakeInstance("one");
  Move(a, InstanceState::kScheduled, 2000);
  Move(a, InstanceState::kInstantiating, 3000, "lab \"l-1\" imported ü\n\\");
  Move(a, InstanceState::kRunning, 4000);
  Move(one, InstanceState::kTerminated, 2500, "deleted");
  {
    Db db(path);
    ASSERT_TRUE(db.Exec(std::string(kUndoHistoryRows) + "PRAGMA user_version=4;"));
    // Each row as a build of schema 4 wrote it: the whole instance in its body.
    for (LabletInstance* i : {&a, &none, &one}) {
      i->version = 1;
      db.Rows("INSERT INTO instances (id, state, owner_id, version, body) VALUES (?1, ?2, ?3, 1, ?4)",
              {i->id.value, std::string(ToString(i->state)), i->owner_id, wire::ToJson(*i).dump()});
    }
    ASSERT_EQ(db.Scalar("SELECT count(*) FROM instances WHERE json_type(body, '$.state_history') = 'array'"), "3");
  }
  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store) << store.error().message;
  Db db(path);
  for (const LabletInstance* i : {&a, &none, &one}) {
    EXPECT_EQ(db.Rows(kHistoryOf, {i->id.value}), HistoryRows(*i)) << i->id.value;
    EXPECT_EQ(db.Scalar("SELECT history_len FROM instances WHERE id = ?1", {i->id.value}),
              std::to_string(i->state_history.size()));
    EXPECT_EQ(db.Scalar("SELECT json_type(body, '$.state_history') IS NULL FROM instances WHERE id = ?1", {i->id.value}), "1");
    auto back = (*store)->GetInstance(i->id);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(wire::ToJson(*back), wire::ToJson(*i));
  }
  ASSERT_EQ(HistoryRows(a).size(), 3u);

  Move(a, InstanceState::kStopping, 5000);
  ASSERT_TRUE(CommitInstance(**store, a));
  EXPECT_EQ(db.Rows(kHistoryOf, {"a"}), HistoryRows(a));
  EXPECT_EQ(db.Scalar("SELECT n FROM instance_history WHERE instance_id = 'a' ORDER BY n DESC LIMIT 1"), "3");
  EXPECT_EQ(wire::ToJson(*(*store)->GetInstance({"a"})), wire::ToJson(a));
}

// The timeslot indexes hold only the lablets of the states their sweeps read (migration 6),
// those of a file written before it included, and a move out of those states leaves them.
TEST(SqliteStore, TheTimeslotIndexesHoldOnlyTheStatesTheirSweepsRead) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  {
    auto store = store::SqliteStore::Open({path});
    ASSERT_TRUE(store);
    Changes c;
    for (auto [id, state] : {std::pair{"p", InstanceState::kPending}, std::pair{"s", InstanceState::kScheduled},
                             std::pair{"r", InstanceState::kRunning}, std::pair{"r2", InstanceState::kRunning},
                             std::pair{"x", InstanceState::kStopping}, std::pair{"t", InstanceState::kTerminated}}) {
      LabletInstance i = MakeInstance(id);
      i.state = state;
      c.instances.push_back(i);
    }
    ASSERT_TRUE((*store)->Commit(c));
  }
  {
    Db db(path);  // back to schema 5: both indexes over every lablet
    ASSERT_TRUE(db.Exec("DROP INDEX instances_by_start; DROP INDEX instances_by_end; "
                        "CREATE INDEX instances_by_start ON instances (state, timeslot_start_ms); "
                        "CREATE INDEX instances_by_end ON instances (state, timeslot_end_ms); PRAGMA user_version=5;"));
  }
  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store) << store.error().message;
  Db db(path);
  // The first figure of an index's statistics is how many entries it holds.
  const auto entries = [&db](const std::string& index) {
    EXPECT_TRUE(db.Exec("ANALYZE"));
    const std::string stat = db.Scalar("SELECT stat FROM sqlite_stat1 WHERE idx = ?1", {index});
    return stat.substr(0, stat.find(' '));
  };
  EXPECT_EQ(entries("instances_by_start"), "2");
  EXPECT_EQ(entries("instances_by_end"), "2");
  EXPECT_EQ(entries("instances_by_state"), "6");

  LabletInstance r = *(*store)->GetInstance({"r"});
  Move(r, InstanceState::kStopping, 5000);
  ASSERT_TRUE(CommitInstance(**store, r));
  EXPECT_EQ(entries("instances_by_end"), "1");
  ports::InstanceFilter ended;
  ended.state = InstanceState::kRunning;
  ended.ends_by = r.timeslot_end;
  auto listed = (*store)->ListInstances(ended, {});
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_EQ(listed->items.size(), 1u);
  EXPECT_EQ(listed->items[0].id.value, "r2");
}

// The point of keeping the history in rows of its own: a move adds one row and rewrites none.
TEST(SqliteStore, AMoveWritesOneHistoryRowAndTheBodyHoldsNoHistory) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store);
  LabletInstance i = MovedTwice();
  ASSERT_TRUE(CommitInstance(**store, i));
  Db db(path);
  const auto before = db.Rows(kHistoryOf, {"i1"});
  ASSERT_EQ(before, HistoryRows(i));
  ASSERT_EQ(before.size(), 2u);

  Move(i, InstanceState::kRunning, 4000);
  ASSERT_TRUE(CommitInstance(**store, i));
  const auto after = db.Rows(kHistoryOf, {"i1"});
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(after.begin(), after.begin() + 2), before);  // untouched
  EXPECT_EQ(after, HistoryRows(i));
  EXPECT_EQ(db.Scalar("SELECT history_len, version, json_type(body, '$.state_history') IS NULL, "
                      "instr(body, 'state_history') FROM instances WHERE id = 'i1'"),
            "3|2|1|0");
}

// One commit may write an instance twice (its insert, then a move): its history is
// written once, each entry at its place.
TEST(SqliteStore, AnInstanceWrittenTwiceInOneCommitWritesEachEntryOnce) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store);
  LabletInstance created = MakeInstance("i1");
  Move(created, InstanceState::kScheduled, 2000);
  LabletInstance moved = created;
  moved.version = 1;
  Move(moved, InstanceState::kInstantiating, 3000);
  Changes c;
  c.instances = {created, moved};
  ASSERT_TRUE((*store)->Commit(c));
  moved.version = 2;
  EXPECT_EQ(Db(path).Rows(kHistoryOf, {"i1"}), HistoryRows(moved));
  EXPECT_EQ(wire::ToJson(*(*store)->GetInstance({"i1"})), wire::ToJson(moved));
}

// A move leaves worker_id (and its index) alone unless the worker changes; the stored worker
// is always the last one written, also when one commit writes an instance twice.
TEST(SqliteStore, AnInstancesWorkerIsTheLastOneWrittenWhetherOrNotAMoveChangesIt) {
  testing::TempDir dir;
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_TRUE(store);
  const auto on = [&](const std::string& worker) {
    ports::InstanceFilter f;
    f.worker_id = worker;
    auto page = (*store)->ListInstances(f, {});
    std::vector<std::string> ids;
    if (page)
      for (const auto& i : page->items) ids.push_back(i.id.value);
    return ids;
  };
  LabletInstance i = MakeInstance("i1");
  ASSERT_TRUE(CommitInstance(**store, i));
  i.worker_id = WorkerId{"w1"};
  Move(i, InstanceState::kScheduled, 2000);
  ASSERT_TRUE(CommitInstance(**store, i));
  Move(i, InstanceState::kInstantiating, 3000);  // the worker unchanged
  ASSERT_TRUE(CommitInstance(**store, i));
  EXPECT_EQ(on("w1"), std::vector<std::string>{"i1"});
  EXPECT_EQ((*store)->GetInstance({"i1"})->worker_id, WorkerId{"w1"});

  // One commit: to w2, then back to w1 (against the row before the commit, the second write
  // would look unchanged).
  LabletInstance away = i, back = i;
  away.worker_id = WorkerId{"w2"};
  back.worker_id = WorkerId{"w1"};
  back.version = i.version + 1;
  Changes c;
  c.instances = {away, back};
  ASSERT_TRUE((*store)->Commit(c));
  EXPECT_EQ(on("w1"), std::vector<std::string>{"i1"});
  EXPECT_TRUE(on("w2").empty());
  EXPECT_EQ((*store)->GetInstance({"i1"})->worker_id, WorkerId{"w1"});
}

// A history only grows: a commit that would drop stored entries is a bug, refused whole.
TEST(SqliteStore, ACommitCarryingFewerHistoryEntriesThanStoredIsRefusedAndChangesNothing) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store);
  LabletInstance i = MovedTwice();
  ASSERT_TRUE(CommitInstance(**store, i));
  const std::string before = testing::DbSnapshot(path);

  LabletInstance shorter = i;
  shorter.state_history.pop_back();
  shorter.state = InstanceState::kScheduled;
  Changes c;
  c.instances = {shorter};
  c.events = {MakeEvent("e1", "i1")};
  auto refused = (*store)->Commit(c);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInternal);
  EXPECT_NE(refused.error().message.find("history"), std::string::npos) << refused.error().message;
  EXPECT_EQ(testing::DbSnapshot(path), before);
  EXPECT_EQ(wire::ToJson(*(*store)->GetInstance({"i1"})), wire::ToJson(i));
  // The same length is no shrink: a write that adds no entry (a field changed) goes through.
  i.owner_id = "owner-2";
  EXPECT_TRUE(CommitInstance(**store, i));
}

// Retention removes an instance's history with it, and leaves the others'.
TEST(SqliteStore, PurgeLeavesNoHistoryRowsBehind) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store);
  LabletInstance gone = MakeInstance("gone"), kept = MakeInstance("kept");
  Move(gone, InstanceState::kScheduled, 2000);
  Move(gone, InstanceState::kTerminated, 3000);
  gone.terminated_at = FromUnixMillis(3000);
  Move(kept, InstanceState::kScheduled, 2000);
  Changes c;
  c.instances = {gone, kept};
  ASSERT_TRUE((*store)->Commit(c));
  Db db(path);
  ASSERT_EQ(db.Scalar("SELECT count(*) FROM instance_history"), "3");
  auto purged = (*store)->Purge(FromUnixMillis(10'000), FromUnixMillis(0), 100);
  ASSERT_TRUE(purged) << purged.error().message;
  EXPECT_EQ(purged->instances, 1);
  EXPECT_EQ(db.Scalar("SELECT count(*) FROM instance_history WHERE instance_id = 'gone'"), "0");
  EXPECT_EQ(db.Rows(kHistoryOf, {"kept"}), HistoryRows(kept));
}

// A change builds on the lablet as this store last committed it, without reading the file:
// the row rewritten behind its back (as only another process could, which the lock forbids)
// is not what a change reads, but what GetInstance reads.
TEST(SqliteStore, AChangeBuildsOnWhatThisStoreLastCommittedWithoutReadingTheFile) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store);
  LabletInstance i = MovedTwice();
  ASSERT_TRUE(CommitInstance(**store, i));
  Move(i, InstanceState::kRunning, 4000);
  ASSERT_TRUE(CommitInstance(**store, i));
  auto read = (*store)->GetInstance({"i1"});
  ASSERT_TRUE(read);
  ASSERT_EQ(read->version, 2);

  Db db(path);
  ASSERT_TRUE(db.Exec("UPDATE instances SET body = json_set(body, '$.owner_id', 'behind') WHERE id = 'i1'"));
  EXPECT_EQ((*store)->GetInstance({"i1"})->owner_id, "behind");
  auto kept = (*store)->GetInstanceForUpdate({"i1"});
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(wire::ToJson(*kept), wire::ToJson(*read));  // the committed lablet, as a read gives it back
  EXPECT_EQ((*store)->GetInstanceForUpdate({"nope"}).error().code, ErrorCode::kNotFound);
}

// Should the row change behind the store's back, the commit built on what it kept is refused
// as stale, and the next change reads the file.
TEST(SqliteStore, ACommitRefusedAsStaleSendsTheNextChangeToTheFile) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store);
  LabletInstance i = MovedTwice();
  ASSERT_TRUE(CommitInstance(**store, i));
  Db db(path);
  ASSERT_TRUE(db.Exec("UPDATE instances SET version = 2, body = json_set(body, '$.version', 2, '$.owner_id', 'behind') "
                      "WHERE id = 'i1'"));
  auto kept = (*store)->GetInstanceForUpdate({"i1"});
  ASSERT_TRUE(kept);
  ASSERT_EQ(kept->version, 1);
  Move(*kept, InstanceState::kRunning, 4000);
  auto refused = CommitInstance(**store, *kept);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::kStaleVersion);
  auto fresh = (*store)->GetInstanceForUpdate({"i1"});
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->version, 2);
  EXPECT_EQ(fresh->owner_id, "behind");
  EXPECT_EQ(fresh->state, InstanceState::kInstantiating);
}

// What a commit writes last of a lablet is what a change begins with; a commit refused for
// another reason than staleness keeps nothing of what it carried.
TEST(SqliteStore, AChangeBeginsWithTheLastWriteOfACommitAndNothingOfARefusedOne) {
  testing::TempDir dir;
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_TRUE(store);
  LabletInstance first = MakeInstance("i1");
  LabletInstance moved = first;
  moved.version = 1;
  Move(moved, InstanceState::kScheduled, 2000);
  Changes twice;
  twice.instances = {first, moved};
  ASSERT_TRUE((*store)->Commit(twice));
  auto kept = (*store)->GetInstanceForUpdate({"i1"});
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->version, 2);
  EXPECT_EQ(kept->state, InstanceState::kScheduled);

  // A lablet on a reservation another one holds: a conflict, with i1's move in the same commit.
  LabletInstance holder = MakeInstance("i0");
  holder.reservation_id = "r-1";
  ASSERT_TRUE(CommitInstance(**store, holder));
  LabletInstance other = MakeInstance("i2");
  other.reservation_id = "r-1";
  LabletInstance i1 = *kept;
  Move(i1, InstanceState::kInstantiating, 3000);
  Changes refused;
  refused.instances = {i1, other};
  auto outcome = (*store)->Commit(refused);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, ErrorCode::kConflict);
  auto after = (*store)->GetInstanceForUpdate({"i1"});
  ASSERT_TRUE(after);
  EXPECT_EQ(after->version, 2);
  EXPECT_EQ(after->state, InstanceState::kScheduled);
  EXPECT_EQ((*store)->GetInstanceForUpdate({"i2"}).error().code, ErrorCode::kNotFound);
}

// A purged lablet is not found by a change, though the store committed it.
TEST(SqliteStore, APurgedLabletIsNotFoundByAChange) {
  testing::TempDir dir;
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_TRUE(store);
  LabletInstance gone = MakeInstance("gone");
  Move(gone, InstanceState::kScheduled, 2000);
  Move(gone, InstanceState::kTerminated, 3000);
  gone.terminated_at = FromUnixMillis(3000);
  ASSERT_TRUE(CommitInstance(**store, gone));
  ASSERT_TRUE((*store)->GetInstanceForUpdate({"gone"}));
  auto purged = (*store)->Purge(FromUnixMillis(10'000), FromUnixMillis(0), 100);
  ASSERT_TRUE(purged) << purged.error().message;
  ASSERT_EQ(purged->instances, 1);
  EXPECT_EQ((*store)->GetInstanceForUpdate({"gone"}).error().code, ErrorCode::kNotFound);
}

// Counts the temporary files SQLite opens (statement and savepoint journals, temporary
// databases) for the connections opened while it lives: it stands as the default VFS in front
// of the one that was, and puts that one back when it goes.
class TemporaryFileCount {
 public:
  TemporaryFileCount() {
    base_ = sqlite3_vfs_find(nullptr);
    counting_ = *base_;
    counting_.zName = "ccm-test-temporary-file-count";
    counting_.xOpen = &Open;
    count_ = 0;
    sqlite3_vfs_register(&counting_, 1);
  }
  ~TemporaryFileCount() {
    sqlite3_vfs_unregister(&counting_);
    sqlite3_vfs_register(base_, 1);
  }
  TemporaryFileCount(const TemporaryFileCount&) = delete;
  TemporaryFileCount& operator=(const TemporaryFileCount&) = delete;

  int opened() const { return count_; }

 private:
  static int Open(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags, int* out) {
    if (flags & (SQLITE_OPEN_SUBJOURNAL | SQLITE_OPEN_TEMP_JOURNAL | SQLITE_OPEN_TEMP_DB)) ++count_;
    return base_->xOpen(base_, name, file, flags, out);
  }
  static inline sqlite3_vfs* base_ = nullptr;
  static inline std::atomic<int> count_{0};
  sqlite3_vfs counting_{};
};

// Each commit of a group runs in a savepoint, whose journal holds the pages it changes as they
// were. Kept in memory, however many pages that is, it costs the committing thread no write.
TEST(SqliteStore, ASavepointsJournalStaysInMemoryHoweverManyPagesACommitChanges) {
  testing::TempDir dir;
  TemporaryFileCount temporary;  // outlives the store's connections
  constexpr int kLablets = 400;  // a few hundred pages of rows and index entries, well past 64 KiB
  {
    auto store = store::SqliteStore::Open({dir.File("ccm.db")});
    ASSERT_TRUE(store);
    std::vector<LabletInstance> lablets;
    for (int n = 0; n < kLablets; ++n) lablets.push_back(MakeInstance("i-" + std::to_string(n)));
    Changes create;
    create.instances = lablets;
    ASSERT_TRUE((*store)->Commit(create));
    Changes move;
    for (auto& i : lablets) {
      ++i.version;
      Move(i, InstanceState::kScheduled, 2000);
      move.instances.push_back(i);
      move.events.push_back(MakeEvent("moved-" + i.id.value, i.id.value));
    }
    ASSERT_TRUE((*store)->Commit(move));
    EXPECT_EQ(Db(dir.File("ccm.db")).Scalar("SELECT count(*) FROM instances WHERE state = 'SCHEDULED'"),
              std::to_string(kLablets));
  }
  EXPECT_EQ(temporary.opened(), 0);

  // The same change of as many pages in a savepoint, on a connection left with SQLite's default
  // temporary store, spills its journal to a file: the count sees such a file when there is one.
  {
    Db plain(dir.File("plain.db"));  // closed before the count goes, whatever fails
    ASSERT_TRUE(plain.Exec(
        "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);"
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 400) "
        "INSERT INTO t SELECT x, printf('%.1000c', 'a') FROM n;"
        "BEGIN IMMEDIATE; SAVEPOINT one; UPDATE t SET body = printf('%.1000c', 'b'); RELEASE one; COMMIT;"));
  }
  EXPECT_GT(temporary.opened(), 0);
}

TEST(SqliteStore, ANewDatabaseAndItsFilesAreReadableByTheirOwnerAlone) {
  testing::TempDir dir;
  const mode_t was = umask(022);  // the usual umask, which would leave them world-readable
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  umask(was);
  ASSERT_TRUE(store);
  Changes c;
  c.instances = {MakeInstance("i1")};
  ASSERT_TRUE((*store)->Commit(c));
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
    struct stat st {};
    ASSERT_EQ(stat(dir.File(std::string("ccm.db") + suffix).c_str(), &st), 0) << suffix;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "ccm.db" << suffix;
  }
}

TEST(SqliteStore, RefusesADatabaseFromANewerBuild) {
  testing::TempDir dir;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("ccm.db").c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "PRAGMA user_version=999", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto store = store::SqliteStore::Open({dir.File("ccm.db")});
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("newer"), std::string::npos);
}

TEST(SqliteStore, UnwritablePathIsUnavailable) {
  auto store = store::SqliteStore::Open({"/nonexistent-dir/ccm.db"});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace ccm

namespace ccm {
namespace {

// A process that commits and is killed with SIGKILL loses nothing it was told was committed.
TEST(SqliteStoreCrash, EveryAcknowledgedCommitSurvivesKillNine) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    auto store = store::SqliteStore::Open({path});
    if (!store) _exit(2);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int n = 0;; ++n) {
          Changes c;
          const std::string id = "i-" + std::to_string(t) + "-" + std::to_string(n);
          c.instances = {MakeInstance(id)};
          c.events = {MakeEvent("e-" + id, id)};
          if (!(*store)->Commit(c)) _exit(3);
          const std::string line = id + "\n";
          // One write per line; lines are short, so each write is atomic on a pipe.
          if (write(pipe_fds[1], line.data(), line.size()) < 0) _exit(4);
        }
      });
    for (auto& t : threads) t.join();
    _exit(0);
  }
  close(pipe_fds[1]);
  // Let it commit for a while, then kill it without warning.
  std::string acknowledged;
  char buf[4096];
  while (acknowledged.size() < 60000) {
    const ssize_t got = read(pipe_fds[0], buf, sizeof buf);
    ASSERT_GT(got, 0) << "the committing process died on its own";
    acknowledged.append(buf, static_cast<size_t>(got));
  }
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  // What was written to the pipe before the kill may still be unread: read it all.
  for (ssize_t got; (got = read(pipe_fds[0], buf, sizeof buf)) > 0;) acknowledged.append(buf, static_cast<size_t>(got));
  close(pipe_fds[0]);

  auto store = store::SqliteStore::Open({path});
  ASSERT_TRUE(store) << store.error().message;
  size_t checked = 0;
  std::istringstream lines(acknowledged);
  for (std::string id; std::getline(lines, id);) {
    if (id.empty() || lines.eof()) break;  // the last line may be cut short
    ASSERT_TRUE((*store)->GetInstance({id})) << id << " was acknowledged but is gone";
    ++checked;
  }
  EXPECT_GT(checked, 1000u);
}

}  // namespace
}  // namespace ccm

namespace ccm {
namespace {

TEST(DedupKeys, ExpiredKeysAreSweptAndLiveOnesKept) {
  testing::TempDir dir;
  auto store = std::move(store::SqliteStore::Open({dir.File("ccm.db")}).value());
  ports::Changes c;
  c.processed = {{"p", "old", FromUnixMillis(0), FromUnixMillis(1000)},
                 {"p", "new", FromUnixMillis(0), FromUnixMillis(5000)}};
  ASSERT_TRUE(store->Commit(c));
  testing::FakeClock clock(FromUnixMillis(2000));
  app::KeySweeper sweeper(*store, clock, std::chrono::hours(1));
  ASSERT_TRUE(sweeper.SweepOnce());
  EXPECT_EQ(testing::DbSnapshot(dir.File("ccm.db")).find("p|old|"), std::string::npos);
  EXPECT_NE(testing::DbSnapshot(dir.File("ccm.db")).find("p|new|"), std::string::npos);
  EXPECT_TRUE(*store->IsProcessed("p", "new", clock.Now()));
}

// A duplicate is refused after a restart: the keys are in the file, not in memory.
TEST(DedupKeys, ADuplicateAfterARestartChangesNothing) {
  testing::TempDir dir;
  const std::string path = dir.File("ccm.db");
  testing::FakeClock clock(FromUnixMillis(1'800'000'000'000));
  os::UuidV7Generator ids;
  app::EventFactory events(ids, "ccm");
  app::ReceiveMetrics metrics;
  cloudevents::CloudEvent e;
  e.id = "evt-1";
  e.source = "assessment";
  e.type = "assessment.collection.completed";
  {
    auto store = std::move(store::SqliteStore::Open({path}).value());
    domain::LabletInstance i = MakeInstance("i1");
    i.state = domain::InstanceState::kCollecting;
    ports::Changes create;
    create.instances = {i};
    ASSERT_TRUE(store->Commit(create));
    app::EventReceiver receiver({*store, clock, ids, events}, {}, metrics);
    e.data = nlohmann::json{{"instance_id", "i1"}, {"collection_id", "c"}, {"artifacts_uri", "s3://x"}};
    EXPECT_EQ(*receiver.Receive(e), app::EventReceiver::Outcome::kApplied);
  }
  auto store = std::move(store::SqliteStore::Open({path}).value());
  const std::string before = testing::DbSnapshot(path);
  app::EventReceiver receiver({*store, clock, ids, events}, {}, metrics);
  EXPECT_EQ(*receiver.Receive(e), app::EventReceiver::Outcome::kDuplicate);
  EXPECT_EQ(testing::DbSnapshot(path), before);
  // Once the key has expired, the same id is new again.
  clock.Advance(std::chrono::hours(25));
  EXPECT_EQ(*receiver.Receive(e), app::EventReceiver::Outcome::kStale);
}

}  // namespace
}  // namespace ccm
