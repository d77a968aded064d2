#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ports/outbox.h"

namespace ccm::app {

// Which outbox records a watcher gets. Every part is optional; a record is sent when it
// matches all of them.
struct WatchFilter {
  // Kinds, any of which admits a record; none set: every record. `instances`: the CloudEvent
  // type starts with ccm.lablet.instance.; `workers`: with ccm.worker.; `events`: every record.
  bool instances = false;
  bool workers = false;
  bool events = false;
  std::optional<std::string> state;   // the resulting state the event data names (new_state), any case
  std::optional<std::string> worker;  // the subject, or the data's worker_id
  std::optional<std::string> lablet;  // the subject
};

struct WatchOptions {
  std::size_t max_watchers = 256;    // open at once; one more is refused
  std::size_t buffer_events = 1024;  // records a watcher may fall behind before it is cut off
  std::chrono::milliseconds heartbeat{15'000};  // a heartbeat after this long with nothing sent
  // How often the outbox is read when no commit wakes the hub (a follower replica, or a
  // store whose commits are not routed to Wake).
  std::chrono::milliseconds poll{200};
  // The text a record is sent as, made once per record however many watchers get it.
  std::function<std::string(const ports::OutboxRecord&)> render = nullptr;
};

// What a watcher is given, in order.
struct WatchItem {
  enum class Kind {
    kRecord,     // an outbox record: `seq` and `text` (the rendered record)
    kHeartbeat,  // nothing happened for a while
    kCut,        // the watcher fell too far behind and is cut off: `reason`; nothing follows
  };
  Kind kind = Kind::kRecord;
  std::int64_t seq = 0;
  std::shared_ptr<const std::string> text = nullptr;
  std::string reason = {};
};

class WatchHub;

// One watcher's queue, between the hub (which fills it) and the connection (which takes from
// it). Thread-safe. Made by WatchHub::Open.
class Watcher {
 public:
  Watcher(WatchHub& hub, WatchFilter filter, std::int64_t after);
  ~Watcher();  // Close
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // `wake` is called (from the hub's thread) whenever an item is queued, until Close.
  void OnReady(std::function<void()> wake);
  // Moves the queued items to `out`, at most about `max_bytes` of record text.
  void Take(std::vector<WatchItem>& out, std::size_t max_bytes);
  // The seq of the last record taken (or the cursor it started after).
  std::int64_t last_taken() const;
  // Leaves the hub: nothing is queued or woken after it returns. Idempotent.
  void Close();

 private:
  friend class WatchHub;
  WatchHub& hub_;
  const WatchFilter filter_;
  mutable std::mutex mu_;
  std::deque<WatchItem> queue_;
  std::size_t queued_records_ = 0;
  std::int64_t last_taken_;
  std::function<void()> wake_;
  bool closed_ = false;
  bool cut_ = false;
  // The hub skipped this watcher's catch-up for want of room: Take wakes the hub once the
  // connection has made room, instead of the hub looking again and again.
  std::size_t room_wanted_ = 0;
  // The hub's own (its thread, under its lock): every record up to `cursor_` was considered.
  std::int64_t cursor_;
  std::chrono::steady_clock::time_point last_queued_;
};

// Counters for /metrics. Thread-safe.
struct WatchCounts {
  std::size_t open = 0;     // watchers open now
  std::uint64_t cut = 0;    // watchers cut off for falling behind, ever
  std::uint64_t refused = 0;  // watchers refused at the limit, ever
};

// The outbox as a live feed, on every replica: one reader thread for all watchers follows the
// outbox (woken by Wake, and every `poll` otherwise) and fans each new record out to every
// watcher whose filter it matches. A watcher that starts after a seq first catches up from the
// store, a page at a time while its queue has room, then joins the live feed with no gap and
// no duplicate: every watcher has a cursor, and both the catch-up and the live feed hand it
// only records past it, on the one thread. A live record that finds a watcher's queue holding
// `buffer_events` records cuts that watcher off (its queue is dropped and replaced by a kCut
// item): a slow client never slows the hub or the others.
//
// The first watcher makes the hub find the outbox's last seq (reading it through, a page at a
// time); after that it follows the outbox for as long as the hub lives. A store error is
// logged and retried at the next poll.
class WatchHub {
 public:
  WatchHub(ports::Outbox& outbox, WatchOptions options);
  ~WatchHub();  // stops the thread; every Watcher must be gone
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // A new watcher, after `after` (a seq; none: from the hub's current position on), or null
  // when `max_watchers` are open.
  std::shared_ptr<Watcher> Open(const WatchFilter& filter, std::optional<std::int64_t> after);
  // A commit wrote events: read the outbox soon.
  void Wake();
  WatchCounts counts() const;
  const WatchOptions& options() const { return options_; }

 private:
  friend class Watcher;
  struct Facts;
  void Remove(Watcher* w);
  void Run();
  // One round: the new records, the catch-ups, the heartbeats. Whether a catch-up has more.
  bool Round();
  void Deliver(const ports::OutboxRecord& record, const Facts& facts, std::shared_ptr<const std::string>& text,
               Watcher& w, bool live);

  ports::Outbox& outbox_;
  const WatchOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<Watcher*, std::weak_ptr<Watcher>>> watchers_;
  bool woken_ = false;
  bool stopping_ = false;
  std::atomic<std::uint64_t> cut_{0};
  std::atomic<std::uint64_t> refused_{0};
  // The reader thread's: the last seq read (known once `synced_`).
  std::int64_t head_ = 0;
  bool synced_ = false;
  std::thread thread_;
};

}  // namespace ccm::app
