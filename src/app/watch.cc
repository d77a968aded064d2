#include "app/watch.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "ports/page.h"

namespace ccm::app {

namespace {

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Pages the hub reads per round before it looks at its watchers again.
constexpr int kPagesPerRound = 8;

}  // namespace

// What a filter looks at in a record, read once per record.
struct WatchHub::Facts {
  bool instance = false;
  bool worker = false;
  std::string state;      // data.new_state, upper case; empty when none
  std::string worker_id;  // data.worker_id; empty when none

  explicit Facts(const ports::OutboxRecord& r)
      : instance(r.event.type.rfind("ccm.lablet.instance.", 0) == 0), worker(r.event.type.rfind("ccm.worker.", 0) == 0) {
    const auto event = nlohmann::json::parse(r.event.json, nullptr, false);
    if (!event.is_object()) return;
    const auto data = event.find("data");
    if (data == event.end() || !data->is_object()) return;
    if (auto s = data->find("new_state"); s != data->end() && s->is_string()) state = Upper(s->get<std::string>());
    if (auto w = data->find("worker_id"); w != data->end() && w->is_string()) worker_id = w->get<std::string>();
  }

  bool Match(const WatchFilter& f, const std::string& subject) const {
    const bool any_kind = f.instances || f.workers || f.events;
    if (any_kind && !f.events && !(f.instances && instance) && !(f.workers && worker)) return false;
    if (f.state && Upper(*f.state) != state) return false;
    if (f.worker && subject != *f.worker && worker_id != *f.worker) return false;
    if (f.lablet && subject != *f.lablet) return false;
    return true;
  }
};

Watcher::Watcher(WatchHub& hub, WatchFilter filter, std::int64_t after)
    : hub_(hub), filter_(std::move(filter)), last_taken_(std::max<std::int64_t>(after, 0)), cursor_(after),
      last_queued_(std::chrono::steady_clock::now()) {}

Watcher::~Watcher() { Close(); }

void Watcher::OnReady(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  if (closed_) return;
  wake_ = std::move(wake);
  if (!queue_.empty()) wake_();
}

void Watcher::Take(std::vector<WatchItem>& out, std::size_t max_bytes) {
  bool room_made = false;
  {
    std::lock_guard lock(mu_);
    std::size_t bytes = 0;
    while (!queue_.empty() && bytes < max_bytes) {
      WatchItem& item = queue_.front();
      if (item.kind == WatchItem::Kind::kRecord) {
        bytes += item.text->size();
        last_taken_ = item.seq;
        --queued_records_;
      }
      out.push_back(std::move(item));
      queue_.pop_front();
    }
    if (room_wanted_ > 0 && queued_records_ + room_wanted_ <= hub_.options_.buffer_events) {
      room_wanted_ = 0;
      room_made = true;
    }
  }
  if (room_made) hub_.Wake();  // outside this watcher's lock: the hub takes it under its own
}

std::int64_t Watcher::last_taken() const {
  std::lock_guard lock(mu_);
  return last_taken_;
}

void Watcher::Close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    wake_ = nullptr;
    queue_.clear();
  }
  hub_.Remove(this);
}

WatchHub::WatchHub(ports::Outbox& outbox, WatchOptions options) : outbox_(outbox), options_(std::move(options)) {
  thread_ = std::thread([this] { Run(); });
}

WatchHub::~WatchHub() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<Watcher> WatchHub::Open(const WatchFilter& filter, std::optional<std::int64_t> after) {
  std::lock_guard lock(mu_);
  if (watchers_.size() >= options_.max_watchers) {
    ++refused_;
    return nullptr;
  }
  // -1: from wherever the hub is when it first looks at this watcher.
  auto w = std::make_shared<Watcher>(*this, filter, after.value_or(-1));
  watchers_.emplace_back(w.get(), w);
  cv_.notify_all();
  return w;
}

void WatchHub::Remove(Watcher* w) {
  std::lock_guard lock(mu_);
  std::erase_if(watchers_, [w](const auto& entry) { return entry.first == w; });
}

void WatchHub::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

WatchCounts WatchHub::counts() const {
  std::lock_guard lock(mu_);
  return {watchers_.size(), cut_, refused_};
}

void WatchHub::Run() {
  bool more = false;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (!more) cv_.wait_for(lock, options_.poll, [this] { return stopping_ || woken_; });
      if (watchers_.empty() && !stopping_) {
        // Nobody watches: the hub stops following, and finds the outbox's end again when
        // someone does (a new watcher starts from there, not from where the hub stopped).
        synced_ = false;
        cv_.wait(lock, [this] { return stopping_ || !watchers_.empty(); });
      }
      if (stopping_) return;
      woken_ = false;
    }
    more = Round();
  }
}

bool WatchHub::Round() {
  // The watchers of this round, held: one whose connection lets go meanwhile is freed when the
  // round ends (a closed one ignores what it is given).
  std::vector<std::shared_ptr<Watcher>> ws;
  {
    std::lock_guard lock(mu_);
    for (auto& [_, weak] : watchers_)
      if (auto w = weak.lock()) ws.push_back(std::move(w));
  }
  const ports::EventFilter every;
  if (!synced_) {
    // Where the outbox ends now: a watcher without a cursor starts there.
    auto last = outbox_.LastSeq();
    if (!last) {
      spdlog::warn("watch: cannot read the outbox: {}", last.error().message);
      return false;
    }
    head_ = std::max(head_, *last);
    synced_ = true;
  }
  for (auto& w : ws)
    if (w->cursor_ < 0) {
      w->cursor_ = head_;
      std::lock_guard lock(w->mu_);
      w->last_taken_ = head_;
    }

  // The live feed: every new record, to each watcher that had seen everything before it.
  const std::int64_t before = head_;
  std::vector<Watcher*> live;
  for (auto& w : ws)
    if (w->cursor_ >= before) live.push_back(w.get());
  bool more = false;
  for (int i = 0; i < kPagesPerRound; ++i) {
    auto page = outbox_.ListEvents(every, {ports::kMaxPageLimit, std::to_string(head_)});
    if (!page) {
      spdlog::warn("watch: cannot read the outbox: {}", page.error().message);
      break;
    }
    for (const auto& record : page->items) {
      const Facts facts(record);
      std::shared_ptr<const std::string> text;
      for (Watcher* w : live)
        if (record.seq > w->cursor_) Deliver(record, facts, text, *w, true);
      head_ = record.seq;
    }
    if (page->next.empty()) break;
    more = i + 1 == kPagesPerRound;
  }
  for (Watcher* w : live) w->cursor_ = std::max(w->cursor_, head_);

  // The catch-ups: a page for each watcher behind, as far as its queue has room.
  for (auto& w : ws) {
    if (w->cursor_ >= head_) continue;
    std::size_t room = 0;
    {
      std::lock_guard lock(w->mu_);
      if (w->closed_ || w->cut_) continue;
      room = options_.buffer_events > w->queued_records_ ? options_.buffer_events - w->queued_records_ : 0;
      if (const std::size_t wanted = std::max<std::size_t>(1, options_.buffer_events / 4); room < wanted) {
        w->room_wanted_ = wanted;  // Take wakes the hub once the connection has taken some
        continue;
      }
    }
    const int limit = static_cast<int>(std::min<std::size_t>(room, ports::kMaxPageLimit));
    auto page = outbox_.ListEvents(every, {limit, std::to_string(w->cursor_)});
    if (!page) {
      spdlog::warn("watch: cannot read the outbox: {}", page.error().message);
      break;
    }
    for (const auto& record : page->items) {
      if (record.seq > head_) break;
      const Facts facts(record);
      std::shared_ptr<const std::string> text;
      Deliver(record, facts, text, *w, false);
      w->cursor_ = record.seq;
    }
    if (page->next.empty() || page->items.empty() || page->items.back().seq >= head_) w->cursor_ = head_;
    more |= w->cursor_ < head_;
  }

  // The heartbeats, to watchers that were sent nothing for a while.
  const auto now = std::chrono::steady_clock::now();
  for (auto& w : ws) {
    std::lock_guard lock(w->mu_);
    if (w->closed_ || w->cut_ || now - w->last_queued_ < options_.heartbeat) continue;
    w->queue_.push_back({.kind = WatchItem::Kind::kHeartbeat});
    w->last_queued_ = now;
    if (w->wake_) w->wake_();
  }
  return more;
}

void WatchHub::Deliver(const ports::OutboxRecord& record, const Facts& facts, std::shared_ptr<const std::string>& text,
                       Watcher& w, bool live) {
  if (!facts.Match(w.filter_, record.event.subject)) return;
  std::lock_guard lock(w.mu_);
  if (w.closed_ || w.cut_) return;
  if (live && w.queued_records_ >= options_.buffer_events) {
    // Behind by a whole buffer: cut off. What it was not given yet is dropped; it resumes
    // after the last record it took.
    w.queue_.clear();
    w.queued_records_ = 0;
    w.queue_.push_back({.kind = WatchItem::Kind::kCut,
                        .reason = "the client fell more than " + std::to_string(options_.buffer_events) +
                                  " events behind (CCM_WATCH_BUFFER_EVENTS)"});
    w.cut_ = true;
    ++cut_;
  } else {
    if (!text) text = std::make_shared<const std::string>(options_.render ? options_.render(record) : record.event.json);
    w.queue_.push_back({.kind = WatchItem::Kind::kRecord, .seq = record.seq, .text = text});
    ++w.queued_records_;
  }
  w.last_queued_ = std::chrono::steady_clock::now();
  if (w.wake_) w.wake_();
}

}  // namespace ccm::app
