#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "runtime/background_loop.h"
#include "store/etcd/etcd_client.h"
#include "store/etcd/etcd_store.h"

namespace ccm::store {

// One leader among the replicas that share an etcd cluster. The leader holds `key`, written
// with a lease of `ttl` that it renews every ttl/3; the others try to create the key every
// ttl/3, so that they take over at most ttl + ttl/3 after the leader stops renewing; they
// also watch the key and try at once when it changes, so that they take over within a round
// trip when a leader resigns (Stop) and its key goes. A
// renewal that fails (etcd electing a leader of its own, say) is tried again at the next
// round; the leader steps down when its lease is gone, or when half the TTL has passed since
// its last renewal. Whatever its thread is doing, the term counts as over two thirds of the
// TTL after the last renewal, before anyone else can hold the key. A term is the key's
// create revision: commits fenced with it fail once the term is over.
// `on_elected` and `on_deposed` run on the election's thread; the term is withdrawn (Fence
// returns nothing) before `on_deposed` runs. Thread-safe.
class LeaderElection {
 public:
  struct Options {
    std::string key;     // e.g. /ccm/controller/leader
    std::string holder;  // what this replica writes there (shown to operators)
    std::chrono::seconds ttl{10};
  };
  LeaderElection(etcd::Client& client, Options options, std::function<void()> on_elected,
                 std::function<void()> on_deposed);
  ~LeaderElection();
  LeaderElection(const LeaderElection&) = delete;
  LeaderElection& operator=(const LeaderElection&) = delete;

  void Start();
  // Stops campaigning; a leader resigns: `on_deposed` runs while its term still holds (the
  // background work ends its current steps and their commits are taken), then the term is
  // withdrawn and the lease revoked, deleting the key, so that another replica takes over at
  // once (it watches the key; at its next try, within ttl/3, at worst) rather than after the
  // TTL. Idempotent; blocks until done.
  // The watch on the key runs until destruction.
  void Stop();

  bool IsLeader() const { return Fence().has_value(); }
  // The current term while leading.
  std::optional<EtcdStore::Fence> Fence() const;
  // Terms won so far (for tests and metrics).
  std::uint64_t terms() const { return terms_.load(); }

 private:
  bool Round();
  void Depose(const std::string& why);

  etcd::Client& client_;
  Options options_;
  std::function<void()> on_elected_;
  std::function<void()> on_deposed_;
  std::mutex mu_;  // serialises rounds with Stop
  std::int64_t lease_ = 0;
  // When the lease was last renewed (steady clock, ns), while leading.
  std::atomic<std::int64_t> renewed_at_{0};
  std::atomic<std::int64_t> term_{0};
  std::atomic<std::int64_t> term_lease_{0};  // the lease the key was written with this term
  std::atomic<std::uint64_t> terms_{0};
  runtime::BackgroundLoop loop_;
  etcd::Watch key_watch_;  // wakes loop_ when the key changes (a resignation deletes it)
};

}  // namespace ccm::store
