#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ports/outbox.h"
#include "ports/page.h"
#include "ports/store.h"
#include "runtime/background_loop.h"

struct sqlite3;

namespace ccm::store {

// The embedded Store: one SQLite file in WAL mode, synchronous=FULL, so that a commit that
// returned survives a crash or power cut. Concurrent commits share one transaction and one
// fsync (group commit: the first waiting writer commits for all queued behind it, or a thread
// of the store's own when the first is a CommitThen's, which nobody waits for). Reads use a
// pool of connections and never wait for a writer. The WAL is checkpointed by a background
// thread, not by the committing writer. One process at a time: the store holds an
// exclusive lock (flock) on `<path>.lock`, next to the database, for its whole life. Thread-safe.
class SqliteStore final : public ports::Store, public ports::Outbox {
 public:
  struct Options {
    Options(std::string p = {}) : path(std::move(p)) {}  // NOLINT: Open({path}) reads well
    std::string path;       // the database file; created with its schema when absent
    int read_connections = 4;
    int max_batch = 256;    // most commits folded into one transaction
    int checkpoint_pages = 1000;  // WAL size (pages) that wakes the checkpointer
    // Called after a transaction that wrote outbox events has committed (on the committing
    // thread, after its waiters are released); must not block. Wakes the dispatcher.
    std::function<void()> on_events_committed;
  };

  // Locks and opens (and migrates) the database. Errors: failed_precondition when another
  // process (or another SqliteStore) has the same file open, naming its pid; unavailable
  // when the file cannot be opened; internal when its schema is newer than this build knows.
  static Result<std::unique_ptr<SqliteStore>> Open(const Options& options);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // The schema version this build writes.
  static int SchemaVersion();

  // A consistent copy of the database at `path` into a new file `to` (mode 0600), made with
  // SQLite's online backup API while a ccm process may be serving from it: the copy is the
  // database as of one committed transaction, WAL included, and the serving process is never
  // blocked (a reader in WAL mode). The copy is checked (`PRAGMA integrity_check`) before it
  // is reported. Errors: invalid_argument when `to` exists (nothing is overwritten);
  // not_found when `path` does not exist; failed_precondition when its schema is newer than
  // this build's; unavailable when either file cannot be read or written (a partial copy is
  // removed).
  struct BackupInfo {
    int schema_version = 0;
    std::int64_t bytes = 0;
  };
  static Result<BackupInfo> Backup(const std::string& path, const std::string& to);

  Result<domain::LabletDefinition> GetDefinition(const domain::DefinitionId& id,
                                                 const std::optional<std::string>& version) override;
  Result<ports::PageOf<domain::LabletDefinition>> ListDefinitions(const ports::DefinitionFilter& filter,
                                                                const ports::Page& page) override;
  Result<std::vector<domain::LabletDefinition>> ListDefinitionVersions(const domain::DefinitionId& id) override;
  Result<std::optional<domain::DefinitionId>> FindDefinitionByName(const std::string& name) override;
  Result<domain::LabletInstance> GetInstance(const domain::InstanceId& id) override;
  // The instance as this store last committed it, kept in memory (up to kInstancesKept of
  // them): no other process writes the file (the lock above), so it is the stored one, and a
  // move of a lablet this process moved before does not read its row. Else GetInstance.
  Result<domain::LabletInstance> GetInstanceForUpdate(const domain::InstanceId& id) override;
  static constexpr size_t kInstancesKept = 8192;
  Result<ports::PageOf<domain::LabletInstance>> ListInstances(const ports::InstanceFilter& filter,
                                                            const ports::Page& page) override;
  Result<std::map<domain::InstanceState, ports::StateCount>> CountInstances() override;
  Result<domain::Worker> GetWorker(const domain::WorkerId& id) override;
  Result<std::string> GetWorkerHostname(const domain::WorkerId& id) override;
  Result<ports::PageOf<domain::Worker>> ListWorkers(const ports::Page& page) override;
  Status Commit(const ports::Changes& changes) override;
  // Queued with the callers of Commit, and committed in their batches; while no caller of
  // Commit leads, a thread of the store's own does (started by the first CommitThen).
  void CommitThen(ports::Changes changes, std::function<void(Status)> then) override;
  Result<ports::InstanceHead> GetInstanceHead(const domain::InstanceId& id) override;
  Result<std::optional<std::string>> ProcessedValue(const std::string& source, const std::string& id,
                                                    Timestamp now) override;
  Result<std::vector<ports::OutboxRecord>> DueEvents(Timestamp now, int limit) override;
  Result<ports::PageOf<ports::OutboxRecord>> ListEvents(const ports::EventFilter& filter, const ports::Page& page) override;
  Result<ports::OutboxRecord> GetEvent(const std::string& event_id) override;
  Result<ports::OutboxStats> GetOutboxStats() override;
  Result<std::int64_t> LastSeq() override;
  // Succeeds when the store can be read and its latest write did not fail for lack of disk
  // space (SQLITE_FULL, ENOSPC, EDQUOT). While one has, at most once a second a tiny write is
  // tried, and the first write that succeeds, that one or a commit, clears the failure.
  // Errors: unavailable.
  Status Ping() override;
  Result<ports::PurgeCounts> Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) override;

  // How many transactions (fsyncs) have carried how many commits: for tests and metrics.
  struct CommitStats {
    std::uint64_t transactions = 0;
    std::uint64_t commits = 0;
  };
  CommitStats Stats();

  class Connection;  // a sqlite3 handle with its cached statements

 private:
  struct EncodedInstance;
  struct Encoded;
  struct Writer;
  class ReadLease;

  explicit SqliteStore(Options options);
  Status Lock();
  Status Init();
  Status ProbeWrite();
  static Encoded Encode(const ports::Changes& changes);
  void LeadBatch(std::unique_lock<std::mutex>& lock, Writer* self);
  void RunCommitter();
  void ApplyBatch(const std::vector<Writer*>& batch);
  // One commit, in three steps (sqlite_store.cc): read the rows it depends on, decide (no
  // I/O) its refusal or what it writes, write that.
  struct CommitReads;
  struct CommitPlan;
  class CommitDecision;
  Status ApplyOne(const ports::Changes& changes, const Encoded& encoded);
  Result<CommitReads> ReadForCommit(const ports::Changes& changes);
  Status ReadDeliveredRecords(const ports::Changes& changes, CommitReads& reads);
  Status WriteCommit(const ports::Changes& changes, const Encoded& encoded, const CommitPlan& plan);
  // `stored_history`: how many of its history entries are stored already; `worker_changed`:
  // whether its worker_id differs from the stored one.
  Status WriteInstance(const domain::LabletInstance& instance, const EncodedInstance& encoded,
                       std::size_t stored_history, bool worker_changed);
  Status WriteOutbox(const ports::Changes& changes, const CommitPlan& plan);
  bool Checkpoint();
  // Keeps what `batch` committed for GetInstanceForUpdate, and drops what a commit refused as
  // stale built on. Before the writers are told.
  void KeepCommitted(const std::vector<Writer*>& batch);
  static int OnWalCommit(void* self, sqlite3* db, const char* name, int pages);
  ReadLease Lease();

  // The descriptor that holds the flock on <path>.lock. Declared first, so closed (and the
  // lock released) after every connection.
  struct LockFile {
    int fd = -1;
    ~LockFile();
  };

  Options options_;
  LockFile lock_;
  std::unique_ptr<Connection> writer_conn_;

  // Set when a write fails for lack of disk space, cleared when one succeeds (Ping).
  std::atomic<bool> out_of_space_{false};
  std::mutex probe_mu_;
  std::chrono::steady_clock::time_point last_probe_;

  std::mutex write_mu_;
  std::deque<Writer*> writers_;
  bool leading_ = false;  // a batch is being committed
  CommitStats stats_;
  // Leads for CommitThen's writers; under write_mu_: its wake-up and the store's end.
  std::thread committer_;
  std::condition_variable committer_cv_;
  bool stopping_ = false;

  // The instances as last committed, by id (KeepCommitted; Purge forgets the TERMINATED ones).
  std::mutex kept_mu_;
  std::unordered_map<std::string, std::shared_ptr<const domain::LabletInstance>> kept_;

  std::mutex read_mu_;
  std::condition_variable read_cv_;
  std::vector<std::unique_ptr<Connection>> readers_;
  std::vector<Connection*> idle_readers_;

  std::unique_ptr<Connection> checkpoint_conn_;
  std::atomic<bool> checkpoint_wanted_{false};
  std::unique_ptr<runtime::BackgroundLoop> checkpointer_;
};

}  // namespace ccm::store
