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

namespace ccm {
namespace {

using namespace ccm::domain;
using ports::Changes;
using testing::MakeEvent;
using testing::MakeInstance;

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
  ASSERT_EQ(sqlite3_exec(db, (std::string(kUndoSweepTimes) + "PRAGMA user_version=3;").c_str(), nullptr, nullptr, nullptr),
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
                         (std::string(kUndoSweepTimes) +
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
