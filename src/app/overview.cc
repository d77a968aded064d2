#include "app/overview.h"

#include <algorithm>

namespace ccm::app {

namespace {

// 0: the state has no time-out.
std::chrono::milliseconds TimeoutOf(domain::InstanceState s, const StuckTimeouts& t) {
  using domain::InstanceState;
  switch (s) {
    case InstanceState::kScheduled:
    case InstanceState::kInstantiating:
      return t.instantiation;
    case InstanceState::kCollecting:
      return t.collecting;
    case InstanceState::kGrading:
      return t.grading;
    default:
      return std::chrono::milliseconds(0);
  }
}

// Since when the lablet is waiting on its state's time-out. A SCHEDULED lablet waits for its
// timeslot by design (booked ahead), so it is late only once its timeslot has begun.
Timestamp LateSince(const domain::LabletInstance& i) {
  const Timestamp entered = i.EnteredAt();
  return i.state == domain::InstanceState::kScheduled ? std::max(entered, i.timeslot_start) : entered;
}

}  // namespace

OverviewService::OverviewService(ports::Store& store, ports::Clock& clock, StuckTimeouts timeouts,
                                 std::chrono::milliseconds cache_for)
    : store_(store), clock_(clock), timeouts_(timeouts), cache_for_(cache_for) {}

Result<wire::Overview> OverviewService::Get() {
  // One listing at a time: a burst of consoles waits for it rather than each paging the store.
  std::lock_guard lock(mu_);
  const Timestamp now = clock_.Now();
  if (cached_ && now >= cached_->computed_at && now - cached_->computed_at < cache_for_) return *cached_;
  auto fresh = Compute(now);
  if (!fresh) return fresh.error();
  cached_ = *fresh;
  return fresh;
}

Result<wire::Overview> OverviewService::Compute(Timestamp now) {
  wire::Overview o;
  o.computed_at = now;
  for (const auto s : domain::kAllInstanceStates) o.per_state[s] = 0;
  ports::Page page{.limit = ports::kMaxPageLimit, .after = ""};
  for (;;) {
    auto listed = store_.ListInstances({}, page);
    if (!listed) return listed.error();
    for (const auto& i : listed->items) {
      ++o.total;
      ++o.per_state[i.state];
      if (i.worker_id && i.state != domain::InstanceState::kTerminated) ++o.per_worker[i.worker_id->value];
      const auto limit = TimeoutOf(i.state, timeouts_);
      const Timestamp since = LateSince(i);
      if (limit.count() > 0 && now - since > limit)
        o.stuck.push_back({i.id.value, i.state, since, i.owner_id, i.worker_id ? i.worker_id->value : ""});
    }
    if (listed->next.empty()) break;
    page.after = listed->next;
  }
  o.stuck_total = static_cast<int>(o.stuck.size());
  std::stable_sort(o.stuck.begin(), o.stuck.end(),
                   [](const wire::StuckInstance& a, const wire::StuckInstance& b) { return a.since < b.since; });
  if (o.stuck.size() > static_cast<std::size_t>(wire::kMaxStuckListed)) o.stuck.resize(wire::kMaxStuckListed);
  return o;
}

}  // namespace ccm::app
