#include "store/etcd/leader_election.h"

#include <spdlog/spdlog.h>

namespace ccm::store {


namespace {
std::int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

LeaderElection::LeaderElection(etcd::Client& client, Options options, std::function<void()> on_elected,
                               std::function<void()> on_deposed)
    : client_(client),
      options_(std::move(options)),
      on_elected_(std::move(on_elected)),
      on_deposed_(std::move(on_deposed)),
      loop_([this] { return Round(); },
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.ttl) / 3),
      key_watch_(client.options(), options_.key, [this] { loop_.Wake(); }) {}

LeaderElection::~LeaderElection() {
  Stop();
  key_watch_.Stop();
}

void LeaderElection::Start() {
  loop_.Start();
  key_watch_.Start();
}

void LeaderElection::Stop() {
  loop_.Stop();
  std::lock_guard lock(mu_);
  if (term_.load() != 0) {
    // A graceful resignation: the work stops while the term still holds, so that what its
    // last steps and deliveries commit is taken; only then is the term withdrawn and the key
    // released. (Should the work take longer than the fence allows, its commits are refused
    // as after any lost term: safe, and done again by the next leader.)
    spdlog::info("resigning leadership ({}): background work ends its current steps", options_.key);
    const auto started = std::chrono::steady_clock::now();
    on_deposed_();
    term_ = 0;
    const auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    if (lease_ != 0) {
      if (auto revoked = client_.Revoke(lease_); revoked)
        spdlog::info("leadership resigned after {} ms: lease revoked, {} released for another replica", took.count(),
                     options_.key);
      else
        spdlog::warn("leadership resigned after {} ms; the lease could not be revoked ({}): another replica takes "
                     "over when it expires",
                     took.count(), revoked.error().message);
    }
  } else if (lease_ != 0) {
    (void)client_.Revoke(lease_);
  }
  lease_ = 0;
  // The key watch is left to the destructor: the resignation is done (a wake of the stopped
  // loop does nothing).
}

std::optional<EtcdStore::Fence> LeaderElection::Fence() const {
  const std::int64_t term = term_.load();
  if (term == 0) return std::nullopt;
  const auto unrenewed = std::chrono::nanoseconds(SteadyNanos() - renewed_at_.load());
  if (unrenewed > std::chrono::milliseconds(options_.ttl) * 2 / 3) return std::nullopt;
  return EtcdStore::Fence{options_.key, term, term_lease_.load()};
}

void LeaderElection::Depose(const std::string& why) {
  // The term goes first: from here on, fenced commits are refused by this process as well
  // as by etcd.
  term_ = 0;
  spdlog::warn("leadership lost ({}): background work stops", why);
  on_deposed_();
  // The key goes with the lease, now if etcd answers, or when the lease runs out: a lease
  // kept alive by this replica's next campaign would otherwise hold the key for ever.
  if (lease_ != 0) (void)client_.Revoke(lease_);
  lease_ = 0;
}

bool LeaderElection::Round() {
  std::lock_guard lock(mu_);
  const std::int64_t round_start = SteadyNanos();
  if (term_.load() != 0) {
    auto ttl = client_.KeepAlive(lease_);
    if (ttl && *ttl > 0) {
      renewed_at_ = round_start;
    } else if (ttl) {
      Depose("the lease expired");
    } else if (std::chrono::nanoseconds(SteadyNanos() - renewed_at_.load()) > std::chrono::milliseconds(options_.ttl) / 2) {
      Depose("cannot renew the lease: " + ttl.error().message);
    } else {
      spdlog::warn("leader lease not renewed, trying again: {}", ttl.error().message);
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
  auto t = client_.Txn({etcd::CreateRevisionIs(options_.key, 0)},
                       {etcd::PutOp(options_.key, options_.holder, lease_), etcd::GetOp(options_.key)},
                       {etcd::GetOp(options_.key)});
  if (!t) {
    spdlog::debug("leader election: {}", t.error().message);
    return false;
  }
  // The key as it stands after the transaction, written or found by it. Ours either way when
  // it carries this replica's name and lease: a campaign whose answer was lost (written by a
  // member that then failed, or answered too late) and that was sent again finds its own key,
  // which its lease, renewed by every round, would otherwise hold for ever.
  const size_t at = t->succeeded ? 1 : 0;
  if (t->ranges.size() <= at || t->ranges[at].kvs.empty()) return false;
  const etcd::KeyValue& held = t->ranges[at].kvs.front();
  if (held.value != options_.holder || held.lease != lease_) return false;
  renewed_at_ = round_start;  // the lease was renewed or granted during this round
  term_lease_ = lease_;
  term_ = held.create_revision;
  ++terms_;
  spdlog::info("elected leader ({} = {}, term {})", options_.key, options_.holder, term_.load());
  on_elected_();
  return false;
}

}  // namespace ccm::store
