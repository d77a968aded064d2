#include "store/etcd/leader_election.h"

#include <spdlog/spdlog.h>

namespace ccm::store {

using nlohmann::json;

LeaderElection::LeaderElection(etcd::Client& client, Options options, std::function<void()> on_elected,
                               std::function<void()> on_deposed)
    : client_(client),
      options_(std::move(options)),
      on_elected_(std::move(on_elected)),
      on_deposed_(std::move(on_deposed)),
      loop_([this] { return Round(); },
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.ttl) / 3) {}

LeaderElection::~LeaderElection() { Stop(); }

void LeaderElection::Start() { loop_.Start(); }

void LeaderElection::Stop() {
  loop_.Stop();
  std::lock_guard lock(mu_);
  if (IsLeader()) Depose("stopping");
  if (lease_ != 0) (void)client_.Revoke(lease_);
  lease_ = 0;
}

std::optional<EtcdStore::Fence> LeaderElection::Fence() const {
  const std::int64_t term = term_.load();
  if (term == 0) return std::nullopt;
  return EtcdStore::Fence{options_.key, term};
}

void LeaderElection::Depose(const std::string& why) {
  // The term goes first: from here on, fenced commits are refused by this process as well
  // as by etcd.
  term_ = 0;
  spdlog::warn("leadership lost ({}): background work stops", why);
  on_deposed_();
}

bool LeaderElection::Round() {
  std::lock_guard lock(mu_);
  if (IsLeader()) {
    auto ttl = client_.KeepAlive(lease_);
    if (!ttl) {
      Depose("cannot renew the lease: " + ttl.error().message);
    } else if (*ttl <= 0) {
      Depose("the lease expired");
      lease_ = 0;
    }
    return false;
  }
  // Campaign: a lease of our own (kept across tries), then create the key if nobody has it.
  if (lease_ != 0) {
    auto ttl = client_.KeepAlive(lease_);
    if (!ttl || *ttl <= 0) lease_ = 0;
  }
  if (lease_ == 0) {
    auto lease = client_.GrantLease(options_.ttl);
    if (!lease) {
      spdlog::debug("leader election: {}", lease.error().message);
      return false;
    }
    lease_ = *lease;
  }
  auto t = client_.Txn(json::array({etcd::CreateRevisionIs(options_.key, 0)}),
                       json::array({etcd::PutOp(options_.key, options_.holder, lease_), etcd::GetOp(options_.key)}),
                       json::array({etcd::GetOp(options_.key)}));
  if (!t) {
    spdlog::debug("leader election: {}", t.error().message);
    return false;
  }
  if (!t->succeeded || t->ranges.size() < 2 || t->ranges[1].kvs.empty()) return false;
  term_ = t->ranges[1].kvs.front().create_revision;
  ++terms_;
  spdlog::info("elected leader ({} = {}, term {})", options_.key, options_.holder, term_.load());
  on_elected_();
  return false;
}

}  // namespace ccm::store
