#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ports/outbox.h"
#include "ports/page.h"
#include "ports/store.h"

namespace ccm::store {

// The Store in process memory: every rule of the Store contract (versions, dedup keys,
// reservations, definition names, the outbox's seqs and held rule), none of its durability.
// What it holds is gone with the object. For tests and fast runs of the use cases; `ccm
// serve` does not offer it. A commit is decided whole against the current state (nothing is
// written when any part is refused), then applied, under one mutex that reads take too, so
// commits are serialized and seqs follow commit order. Thread-safe.
class MemoryStore final : public ports::Store, public ports::Outbox {
 public:
  struct Options {
    // Called after a commit that wrote outbox events, on the committing thread, with no lock
    // held; must not block. Wakes the dispatcher.
    std::function<void()> on_events_committed;
  };

  explicit MemoryStore(Options options = {});
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  Result<domain::LabletDefinition> GetDefinition(const domain::DefinitionId& id,
                                                 const std::optional<std::string>& version) override;
  Result<ports::PageOf<domain::LabletDefinition>> ListDefinitions(const ports::DefinitionFilter& filter,
                                                                const ports::Page& page) override;
  Result<std::vector<domain::LabletDefinition>> ListDefinitionVersions(const domain::DefinitionId& id) override;
  Result<std::optional<domain::DefinitionId>> FindDefinitionByName(const std::string& name) override;
  Result<domain::LabletInstance> GetInstance(const domain::InstanceId& id) override;
  Result<ports::PageOf<domain::LabletInstance>> ListInstances(const ports::InstanceFilter& filter,
                                                            const ports::Page& page) override;
  Result<std::map<domain::InstanceState, ports::StateCount>> CountInstances() override;
  Result<domain::Worker> GetWorker(const domain::WorkerId& id) override;
  Result<ports::PageOf<domain::Worker>> ListWorkers(const ports::Page& page) override;
  Status Commit(const ports::Changes& changes) override;
  Result<std::optional<std::string>> ProcessedValue(const std::string& source, const std::string& id,
                                                    Timestamp now) override;
  Result<std::vector<ports::OutboxRecord>> DueEvents(Timestamp now, int limit) override;
  Result<ports::PageOf<ports::OutboxRecord>> ListEvents(const ports::EventFilter& filter, const ports::Page& page) override;
  Result<ports::OutboxRecord> GetEvent(const std::string& event_id) override;
  Result<ports::OutboxStats> GetOutboxStats() override;
  Result<std::int64_t> LastSeq() override;
  // Always succeeds: memory can always be read.
  Status Ping() override;
  Result<ports::PurgeCounts> Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) override;

 private:
  using KeyId = std::pair<std::string, std::string>;  // a processed key's (source, id)
  struct Plan;

  // Checks `changes` against the state and stages what it writes in `plan`; writes nothing.
  // Errors: those of Commit.
  Status Decide(const ports::Changes& changes, Plan& plan) const;
  // Writes what Decide staged; cannot fail.
  void Apply(Plan& plan);
  // Files `r` under its state in the indexes (`sign` +1), or takes it out (-1).
  void Index(const ports::OutboxRecord& r, int sign);

  const Options options_;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<domain::LabletDefinition>> definitions_;  // id -> versions, semver order
  std::map<std::string, std::string> definition_names_;                       // name -> id
  std::map<std::string, domain::LabletInstance> instances_;                   // by id
  std::map<std::string, domain::Worker> workers_;                             // by id
  std::map<std::int64_t, ports::OutboxRecord> outbox_;                          // by seq
  std::unordered_map<std::string, std::int64_t> seq_of_event_;                // event id -> seq
  std::map<std::string, std::set<std::int64_t>> subjects_;                    // subject -> its seqs
  std::set<std::int64_t> pending_;                                            // seqs of pending events
  std::int64_t dead_ = 0;
  std::int64_t held_ = 0;
  std::int64_t last_seq_ = 0;  // every event ever written: the published count
  std::map<KeyId, ports::ProcessedKey> processed_;
};

}  // namespace ccm::store
