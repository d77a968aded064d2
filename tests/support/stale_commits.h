#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ports/store.h"

namespace ccm::testing {

// A store that refuses the next commits it is told to as stale (Error::StaleVersion, writing
// nothing), as the store refuses a commit when another write to the same aggregate landed
// between the read a change was built on and its commit. Everything else goes to the store it
// wraps, which it owns. For the retry a use case or a route makes after losing such a race.
// It also counts the reads of processed keys, which a receiver makes only for what its commit
// cannot decide, and lets a test act before a commit goes on (`before_commit`).
class StaleCommits final : public ports::Store {
 public:
  explicit StaleCommits(std::unique_ptr<ports::Store> inner) : inner_(std::move(inner)) {}
  ~StaleCommits() override {
    for (auto& t : tellers_) t.join();
  }
  StaleCommits(const StaleCommits&) = delete;
  StaleCommits& operator=(const StaleCommits&) = delete;

  // The next `n` commits (Commit or CommitThen) are refused.
  void RefuseNext(int n) { to_refuse_ = n; }
  // How many commits were refused so far.
  int refused() const { return refused_; }
  // How many commits went to the wrapped store (whatever it made of them).
  int passed() const { return passed_; }
  // How many times a processed key was read (ProcessedValue, IsProcessed).
  int key_reads() const { return key_reads_; }
  // Called with every commit (Commit or CommitThen) before it is refused or goes on, on the
  // thread that calls Commit or CommitThen: a test holds a commit back in it. Set it before
  // the commits begin.
  std::function<void(const ports::Changes&)> before_commit;

  Result<domain::LabletDefinition> GetDefinition(const domain::DefinitionId& id,
                                                 const std::optional<std::string>& version) override {
    return inner_->GetDefinition(id, version);
  }
  Result<ports::PageOf<domain::LabletDefinition>> ListDefinitions(const ports::DefinitionFilter& filter,
                                                                  const ports::Page& page) override {
    return inner_->ListDefinitions(filter, page);
  }
  Result<std::vector<domain::LabletDefinition>> ListDefinitionVersions(const domain::DefinitionId& id) override {
    return inner_->ListDefinitionVersions(id);
  }
  Result<std::optional<domain::DefinitionId>> FindDefinitionByName(const std::string& name) override {
    return inner_->FindDefinitionByName(name);
  }
  Result<domain::LabletInstance> GetInstance(const domain::InstanceId& id) override { return inner_->GetInstance(id); }
  Result<domain::LabletInstance> GetInstanceForUpdate(const domain::InstanceId& id) override {
    return inner_->GetInstanceForUpdate(id);
  }
  Result<ports::PageOf<domain::LabletInstance>> ListInstances(const ports::InstanceFilter& filter,
                                                              const ports::Page& page) override {
    return inner_->ListInstances(filter, page);
  }
  Result<std::map<domain::InstanceState, ports::StateCount>> CountInstances() override {
    return inner_->CountInstances();
  }
  Result<domain::Worker> GetWorker(const domain::WorkerId& id) override { return inner_->GetWorker(id); }
  Result<std::string> GetWorkerHostname(const domain::WorkerId& id) override { return inner_->GetWorkerHostname(id); }
  Result<ports::PageOf<domain::Worker>> ListWorkers(const ports::Page& page) override {
    return inner_->ListWorkers(page);
  }
  Status Commit(const ports::Changes& changes) override {
    if (before_commit) before_commit(changes);
    if (auto refusal = Refusal()) return *refusal;
    ++passed_;
    return inner_->Commit(changes);
  }
  void CommitThen(ports::Changes changes, std::function<void(Status)> then) override {
    if (before_commit) before_commit(changes);
    // Told on a thread of its own, as a store that commits off the caller's thread tells it.
    if (auto refusal = Refusal()) {
      std::lock_guard lock(mu_);
      tellers_.emplace_back([then = std::move(then), refusal = *refusal] { then(refusal); });
      return;
    }
    ++passed_;
    inner_->CommitThen(std::move(changes), std::move(then));
  }
  Result<ports::InstanceHead> GetInstanceHead(const domain::InstanceId& id) override {
    return inner_->GetInstanceHead(id);
  }
  Result<std::optional<std::string>> ProcessedValue(const std::string& source, const std::string& id,
                                                    Timestamp now) override {
    ++key_reads_;
    return inner_->ProcessedValue(source, id, now);
  }
  Status Ping() override { return inner_->Ping(); }
  Result<ports::PurgeCounts> Purge(Timestamp terminated_before, Timestamp delivered_before, int limit) override {
    return inner_->Purge(terminated_before, delivered_before, limit);
  }

 private:
  std::optional<Error> Refusal() {
    for (int left = to_refuse_.load(); left > 0;)
      if (to_refuse_.compare_exchange_weak(left, left - 1)) {
        ++refused_;
        return Error::StaleVersion("instance changed since it was read (refused by the test's store)");
      }
    return std::nullopt;
  }

  std::unique_ptr<ports::Store> inner_;
  std::mutex mu_;
  std::vector<std::thread> tellers_;  // under mu_
  std::atomic<int> to_refuse_{0};
  std::atomic<int> refused_{0};
  std::atomic<int> passed_{0};
  std::atomic<int> key_reads_{0};
};

}  // namespace ccm::testing
