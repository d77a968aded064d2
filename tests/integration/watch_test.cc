// GET /api/v1/watch over real HTTP on loopback, on a SQLite store: filters, resuming without a
// gap or a duplicate, heartbeats, a slow client cut off without slowing anyone, the watcher
// limit, bad parameters, roles, a drain; and `ccm watch` against a running ccm.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <csignal>
#include <fstream>
#include <iterator>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "app/watch.h"
#include "store/memory/memory_store.h"
#include "support/fixtures.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/process.h"
#include "support/raw_socket.h"
#include "support/signed_stack.h"
#include "support/stack.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"
#include "support/wait.h"
#include "transport/http_connection.h"

namespace ccm {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

struct Frame {
  std::string id, event, data;
};

// The events in an event-stream body (comments left out).
std::vector<Frame> FramesOf(const std::string& body) {
  std::vector<Frame> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = body.find("\n\n", start);
    if (end == std::string::npos) return out;
    Frame f;
    bool any = false;
    std::size_t line = start;
    while (line < end) {
      std::size_t eol = body.find('\n', line);
      if (eol == std::string::npos || eol > end) eol = end;
      const std::string l = body.substr(line, eol - line);
      line = eol + 1;
      auto value = [&l](std::size_t n) { return l.substr(n); };
      if (l.rfind("id: ", 0) == 0) f.id = value(4), any = true;
      else if (l.rfind("event: ", 0) == 0) f.event = value(7), any = true;
      else if (l.rfind("data: ", 0) == 0) f.data = value(6), any = true;
    }
    if (any) out.push_back(f);
    start = end + 2;
  }
}

std::vector<std::int64_t> SeqsOf(const std::vector<Frame>& frames) {
  std::vector<std::int64_t> out;
  for (const auto& f : frames)
    if (!f.id.empty()) out.push_back(std::stoll(f.id));
  return out;
}

// A watcher on a thread of its own, through the one HTTP client (chunked decoding included).
class Watching {
 public:
  Watching(const std::string& base, const std::string& path, std::map<std::string, std::string> headers = {})
      : headers_(std::move(headers)) {
    thread_ = std::thread([this, url = base + path] {
      transport::Connection connection;
      transport::Request request;
      request.method = "GET";
      request.headers = &headers_;
      request.on_chunk = [this](std::string_view chunk) {
        std::lock_guard lock(mu_);
        body_.append(chunk);
        return !stop_.load();
      };
      request.keep_going = [this] { return !stop_.load(); };
      const auto answer = connection.Send(url, request);
      std::lock_guard lock(mu_);
      status_ = answer.status;
      done_ = true;
    });
  }
  ~Watching() {
    stop_ = true;
    thread_.join();
  }
  std::string Body() {
    std::lock_guard lock(mu_);
    return body_;
  }
  std::vector<Frame> Frames() { return FramesOf(Body()); }
  std::vector<Frame> Records() {
    std::vector<Frame> out;
    for (auto& f : Frames())
      if (!f.id.empty()) out.push_back(f);
    return out;
  }
  bool Done() {
    std::lock_guard lock(mu_);
    return done_;
  }
  long Status() {
    std::lock_guard lock(mu_);
    return status_;
  }
  bool WaitRecords(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    return testing::Eventually([&] { return Records().size() >= n; }, timeout);
  }

 private:
  transport::Headers headers_;
  std::mutex mu_;
  std::string body_;
  long status_ = 0;
  bool done_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A client that asks for the stream and then reads only when told: its receive buffer is
// small, so that the server soon cannot write to it.
class SlowClient {
 public:
  explicit SlowClient(std::uint16_t port, const std::string& path) : socket_(port, /*receive_buffer=*/4096) {
    socket_.Send("GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n");
  }
  // Reads until the server closes or `wait` passes.
  std::string ReadAll(std::chrono::milliseconds wait) { return socket_.ReadUntilClosed(wait); }

 private:
  testing::RawSocket socket_;
};

app::WatchOptions Fast(std::size_t buffer = 1024, std::size_t max_watchers = 256) {
  app::WatchOptions o;
  o.heartbeat = 300ms;
  o.poll = 20ms;
  o.buffer_events = buffer;
  o.max_watchers = max_watchers;
  return o;
}

class Watch : public ::testing::Test {
 protected:
  explicit Watch(app::WatchOptions options = Fast())
      : stack_(nullptr, {}, nullptr, std::move(options)), http_(stack_.BaseUrl()) {}

  std::string AddWorker(const std::string& name) {
    auto r = http_.PostJson("/api/v1/workers", testing::WorkerBody(name, "http://127.0.0.1:1", 8));
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json().value("id", "");
  }
  void Drain(const std::string& worker) {
    auto r = http_.PostJson("/api/internal/workers/" + worker + "/transition", {{"to", "DRAINING"}});
    EXPECT_EQ(r.status, 200) << r.body;
  }
  // Every record of the outbox, as GET /api/v1/events lists it.
  std::vector<json> Events() {
    std::vector<json> out;
    std::string after;
    for (;;) {
      const json page = http_.Get("/api/v1/events?limit=500" + (after.empty() ? "" : "&after=" + after)).Json();
      for (const auto& i : page["items"]) out.push_back(i);
      if (!page["next"].is_string()) return out;
      after = page["next"];
    }
  }
  // Waits until a fresh stream has joined the live feed: the hub sends heartbeats only to
  // watchers it has placed, after it has found the outbox's end.
  static void Joined(Watching& w) {
    ASSERT_TRUE(testing::Eventually([&] { return w.Body().find(": heartbeat\n\n") != std::string::npos; }, 5s))
        << w.Body();
    EXPECT_EQ(w.Body().rfind("retry: 2000\n\n", 0), 0u) << w.Body();
  }

  testing::Stack stack_;
  testing::HttpClient http_;
};

TEST_F(Watch, StreamsEachNewRecordAsTheEventsApiListsIt) {
  const std::string old = AddWorker("before");  // its 3 records are not sent: the stream starts from now on
  Watching w(stack_.BaseUrl(), "/api/v1/watch");
  Joined(w);
  const std::string wid = AddWorker("w1");  // pending, provisioning, running
  Drain(wid);
  ASSERT_TRUE(w.WaitRecords(4)) << w.Body();
  std::this_thread::sleep_for(100ms);
  const auto records = w.Records();
  const auto listed = Events();
  ASSERT_EQ(listed.size(), 7u);
  ASSERT_EQ(records.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    const json& expected = listed[i + 3];
    EXPECT_EQ(records[i].id, std::to_string(expected["seq"].get<std::int64_t>()));
    EXPECT_EQ(records[i].event, expected["type"]);
    EXPECT_EQ(json::parse(records[i].data)["event"], expected["event"]);
    EXPECT_EQ(json::parse(records[i].data)["subject"], expected["subject"]);
  }
  EXPECT_EQ(records[3].event, "ccm.worker.draining");
  EXPECT_NE(w.Body().find("\"subject\":\"" + wid + "\""), std::string::npos);
  EXPECT_EQ(w.Body().find(old), std::string::npos);
}

TEST_F(Watch, AnswersWithTheEventStreamHeaders) {
  testing::HttpClient probe(stack_.BaseUrl());
  SlowClient raw(stack_.server->port(), "/api/v1/watch");
  const std::string head = raw.ReadAll(500ms);
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  for (const char* h : {"Content-Type: text/event-stream", "Cache-Control: no-store", "X-Accel-Buffering: no",
                        "Transfer-Encoding: chunked", "retry: 2000"})
    EXPECT_NE(head.find(h), std::string::npos) << h << " in " << head;
}

TEST_F(Watch, FiltersByKindStateWorkerAndLablet) {
  const std::string w1 = AddWorker("w1");
  Watching workers(stack_.BaseUrl(), "/api/v1/watch?kind=workers");
  Watching instances(stack_.BaseUrl(), "/api/v1/watch?kind=instances");
  Watching draining(stack_.BaseUrl(), "/api/v1/watch?state=draining");
  Watching of_w1(stack_.BaseUrl(), "/api/v1/watch?worker=" + w1);
  Watching of_lablet(stack_.BaseUrl(), "/api/v1/watch?lablet=" + w1);
  Watching all(stack_.BaseUrl(), "/api/v1/watch?kind=instances,events");
  for (Watching* w : {&workers, &instances, &draining, &of_w1, &of_lablet, &all}) Joined(*w);
  const std::string w2 = AddWorker("w2");
  Drain(w1);
  Drain(w2);
  ASSERT_TRUE(all.WaitRecords(5)) << all.Body();
  ASSERT_TRUE(workers.WaitRecords(5)) << workers.Body();
  ASSERT_TRUE(draining.WaitRecords(2)) << draining.Body();
  ASSERT_TRUE(of_w1.WaitRecords(1)) << of_w1.Body();
  std::this_thread::sleep_for(200ms);  // nothing more comes
  EXPECT_EQ(instances.Records().size(), 0u) << instances.Body();
  for (const auto& f : draining.Records()) EXPECT_EQ(f.event, "ccm.worker.draining");
  EXPECT_EQ(draining.Records().size(), 2u);
  ASSERT_EQ(of_w1.Records().size(), 1u) << of_w1.Body();
  EXPECT_EQ(json::parse(of_w1.Records()[0].data)["subject"], w1);
  EXPECT_EQ(of_lablet.Records().size(), 1u);
  EXPECT_EQ(workers.Records().size(), 5u);
  EXPECT_EQ(all.Records().size(), 5u);
}

TEST_F(Watch, ResumesAfterLastEventIdWithoutAGapOrADuplicate) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(AddWorker("w" + std::to_string(i)));
  const auto listed = Events();
  ASSERT_EQ(listed.size(), 15u);  // 3 per worker
  const std::int64_t second = listed[1]["seq"];
  std::vector<std::int64_t> seen;
  {
    Watching first(stack_.BaseUrl(), "/api/v1/watch?after=0");
    ASSERT_TRUE(first.WaitRecords(15)) << first.Body();
    EXPECT_EQ(SeqsOf(first.Records()).front(), listed[0]["seq"]);
  }
  // Resumed after the second record, while more are being written: the catch-up and the live
  // feed meet without a gap or a duplicate.
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    testing::HttpClient c(stack_.BaseUrl());
    for (int i = 0; i < 40; ++i) c.PostJson("/api/v1/workers", testing::WorkerBody("x" + std::to_string(i), "http://127.0.0.1:1", 8));
    writing = false;
  });
  Watching resumed(stack_.BaseUrl(), "/api/v1/watch?after=999999999",
                   {{"Last-Event-ID", std::to_string(second)}});  // the header wins over ?after=
  writer.join();
  const auto all = Events();
  ASSERT_EQ(all.size(), 135u);
  ASSERT_TRUE(resumed.WaitRecords(133)) << resumed.Records().size();
  std::this_thread::sleep_for(100ms);
  std::vector<std::int64_t> expected;
  for (std::size_t i = 2; i < all.size(); ++i) expected.push_back(all[i]["seq"]);
  EXPECT_EQ(SeqsOf(resumed.Records()), expected);
}

TEST_F(Watch, SendsHeartbeatsWhenNothingHappens) {
  Watching w(stack_.BaseUrl(), "/api/v1/watch");
  ASSERT_TRUE(testing::Eventually([&] { return w.Body().find(": heartbeat\n\n") != std::string::npos; }, 3s))
      << w.Body();
  EXPECT_EQ(w.Records().size(), 0u);
}

TEST_F(Watch, RefusesBadParametersNamingThem) {
  for (const auto& [query, field] : std::vector<std::pair<std::string, std::string>>{
           {"?kind=lablets", "kind"},
           {"?kind=workers,", "kind"},
           {"?after=-1", "after"},
           {"?after=abc", "after"},
           {"?state=", "state"},
           {"?worker=", "worker"},
           {"?color=red", "color"}}) {
    auto r = http_.Get("/api/v1/watch" + query);
    EXPECT_EQ(r.status, 400) << query << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json") << query;
    EXPECT_EQ(r.Json()["field"], field) << query << ": " << r.body;
  }
  auto r = http_.Send("GET", "/api/v1/watch", "", {{"Last-Event-ID", "x1"}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.Json()["field"], "Last-Event-ID");
}

class WatchLimited : public Watch {
 protected:
  WatchLimited() : Watch(Fast(1024, 2)) {}
};

TEST_F(WatchLimited, OneWatcherPastTheLimitGets429WithRetryAfter) {
  Watching a(stack_.BaseUrl(), "/api/v1/watch"), b(stack_.BaseUrl(), "/api/v1/watch");
  ASSERT_TRUE(testing::Eventually([&] { return !a.Body().empty() && !b.Body().empty(); }));
  auto refused = http_.Get("/api/v1/watch");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.ContentType(), "application/problem+json");
  EXPECT_FALSE(refused.headers["retry-after"].empty());
  EXPECT_NE(refused.Json()["detail"].get<std::string>().find("CCM_WATCH_MAX_WATCHERS=2"), std::string::npos);
  const std::string metrics = http_.Get("/metrics").body;
  EXPECT_NE(metrics.find("\nccm_watchers 2\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nccm_watchers_refused_total 1\n"), std::string::npos);
}

TEST_F(WatchLimited, AWatcherThatEndsFreesItsPlace) {
  {
    Watching a(stack_.BaseUrl(), "/api/v1/watch"), b(stack_.BaseUrl(), "/api/v1/watch");
    ASSERT_TRUE(testing::Eventually([&] { return !a.Body().empty() && !b.Body().empty(); }));
  }
  // The server sees the clients gone at its next write (a heartbeat, within 300 ms).
  ASSERT_TRUE(testing::Eventually([&] { return stack_.composition->watch().counts().open == 0; }, 5s));
  Watching c(stack_.BaseUrl(), "/api/v1/watch");
  ASSERT_TRUE(testing::Eventually([&] { return !c.Body().empty(); }));
  EXPECT_EQ(c.Body().rfind("retry: 2000", 0), 0u);
}

class WatchSmallBuffer : public Watch {
 protected:
  WatchSmallBuffer() : Watch(Fast(16)) {}

  // `n` records in one commit, each with about 1 KiB of data.
  void Burst(int n, int from) {
    ports::Changes changes;
    for (int i = 0; i < n; ++i) {
      ports::OutboxEvent e;
      e.id = "burst-" + std::to_string(from + i);
      e.subject = "burst";
      e.type = "ccm.test.burst";
      e.time = stack_.clock.Now();
      e.json = json{{"specversion", "1.0"}, {"id", e.id}, {"source", "test"}, {"type", e.type},
                    {"data", {{"padding", std::string(1024, 'x')}}}}
                   .dump();
      changes.events.push_back(e);
    }
    ASSERT_TRUE(stack_.store->Commit(changes));
  }
};

TEST_F(WatchSmallBuffer, ASlowClientIsCutWithTheReasonAndSlowsNobody) {
  SlowClient slow(stack_.server->port(), "/api/v1/watch");
  Watching fast(stack_.BaseUrl(), "/api/v1/watch");
  ASSERT_TRUE(testing::Eventually([&] { return stack_.composition->watch().counts().open == 2; }));
  // A heartbeat sent after both were open: the round that sent it placed both.
  Joined(fast);
  const std::size_t seen = fast.Body().size();
  ASSERT_TRUE(testing::Eventually([&] { return fast.Body().find(": heartbeat", seen) != std::string::npos; }, 5s));
  // Far more than the slow client's socket buffers and its 16 queued records hold, in commits
  // small enough for a client that reads (a burst past the buffer would cut it too).
  for (int i = 0; i < 200; ++i) {
    Burst(5, i * 5);
    std::this_thread::sleep_for(25ms);  // the hub reads every 20 ms here
  }
  ASSERT_TRUE(fast.WaitRecords(1000, 10s)) << fast.Records().size() << fast.Body().substr(0, 600);
  EXPECT_EQ(fast.Body().find("event: cut"), std::string::npos);
  // A write is answered at once meanwhile.
  const auto start = std::chrono::steady_clock::now();
  AddWorker("meanwhile");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  ASSERT_TRUE(fast.WaitRecords(1003)) << fast.Records().size();
  ASSERT_TRUE(testing::Eventually([&] { return stack_.composition->watch().counts().cut >= 1; }, 5s));
  EXPECT_NE(http_.Get("/metrics").body.find("\nccm_watchers_cut_total 1\n"), std::string::npos);

  // The slow client reads at last: what it was given, then the cut, then the end.
  const std::string got = slow.ReadAll(5s);
  const auto cut = got.find("event: cut\ndata: ");
  ASSERT_NE(cut, std::string::npos) << got.substr(0, 300);
  const json reason = json::parse(got.substr(cut + 17, got.find('\n', cut + 17) - cut - 17));
  EXPECT_NE(reason["reason"].get<std::string>().find("16 events behind"), std::string::npos) << reason;
  const std::int64_t resume_after = reason["resume_after"];
  // It resumes after the last record it got: the next one is the one after that.
  std::int64_t last_got = 0;
  for (std::size_t at = got.find("id: "); at < cut; at = got.find("id: ", at + 1)) {
    const std::size_t eol = got.find('\n', at);
    last_got = std::stoll(got.substr(at + 4, eol - at - 4));
  }
  EXPECT_EQ(resume_after, last_got);
  EXPECT_GT(resume_after, 0);
  EXPECT_LT(resume_after, 1002);
  Watching again(stack_.BaseUrl(), "/api/v1/watch", {{"Last-Event-ID", std::to_string(resume_after)}});
  ASSERT_TRUE(again.WaitRecords(1)) << again.Body();
  EXPECT_EQ(std::stoll(again.Records().front().id), resume_after + 1);
}

TEST_F(Watch, ADrainEndsStreamsPromptlyWithShutdown) {
  Watching a(stack_.BaseUrl(), "/api/v1/watch"), b(stack_.BaseUrl(), "/api/v1/watch?kind=workers");
  Joined(a);
  Joined(b);
  const auto start = std::chrono::steady_clock::now();
  stack_.server->BeginDrain();
  stack_.server->CloseListener();
  EXPECT_EQ(stack_.server->AwaitConnections(5s), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  ASSERT_TRUE(testing::Eventually([&] { return a.Done() && b.Done(); }, 5s));
  for (Watching* w : {&a, &b}) {
    const auto frames = w->Frames();
    ASSERT_FALSE(frames.empty());
    EXPECT_EQ(frames.back().event, "shutdown") << w->Body();
    EXPECT_EQ(frames.back().data, "{}");
  }
}

// The outbox of a memory store, counting its reads.
class CountingOutbox final : public ports::Outbox {
 public:
  explicit CountingOutbox(ports::Outbox& inner) : inner_(inner) {}
  Result<std::vector<ports::OutboxRecord>> DueEvents(Timestamp now, int limit) override {
    return inner_.DueEvents(now, limit);
  }
  Result<ports::PageOf<ports::OutboxRecord>> ListEvents(const ports::EventFilter& f, const ports::Page& p) override {
    ++lists;
    return inner_.ListEvents(f, p);
  }
  Result<ports::OutboxRecord> GetEvent(const std::string& id) override { return inner_.GetEvent(id); }
  Result<ports::OutboxStats> GetOutboxStats() override { return inner_.GetOutboxStats(); }
  Result<std::int64_t> LastSeq() override { return inner_.LastSeq(); }
  std::atomic<int> lists{0};

 private:
  ports::Outbox& inner_;
};

// A watcher resuming far behind whose connection takes nothing yet: the hub fills its queue
// and then waits for room, instead of reading the store again and again; once the connection
// takes, the catch-up goes on to the end.
TEST(WatchHub, AWatcherWithoutRoomCostsNoReadsUntilItTakes) {
  store::MemoryStore memory;
  for (int i = 0; i < 20; ++i) {
    ports::Changes batch;
    for (int j = 0; j < 50; ++j) batch.events.push_back(testing::MakeEvent("e" + std::to_string(i * 50 + j), "s"));
    ASSERT_TRUE(memory.Commit(batch));
  }
  CountingOutbox outbox(memory);
  app::WatchHub hub(outbox, {.buffer_events = 100, .heartbeat = 3'600'000ms, .poll = 50ms,
                             .render = [](const ports::OutboxRecord& r) { return std::to_string(r.seq); }});
  auto watcher = hub.Open({}, 0);
  ASSERT_NE(watcher, nullptr);
  std::atomic<int> wakes{0};
  watcher->OnReady([&wakes] { ++wakes; });
  ASSERT_TRUE(testing::Eventually([&] { return wakes.load() > 0; }, 5s));
  std::this_thread::sleep_for(300ms);  // some 6 polls of the live feed, and nothing taken
  const int reads = outbox.lists.load();
  EXPECT_LT(reads, 40) << "the hub kept reading for a watcher with no room";

  std::vector<app::WatchItem> items;
  std::int64_t last = 0;
  ASSERT_TRUE(testing::Eventually(
      [&] {
        items.clear();
        watcher->Take(items, 1 << 20);
        for (const auto& item : items)
          if (item.kind == app::WatchItem::Kind::kRecord) {
            EXPECT_EQ(item.seq, last + 1);
            last = item.seq;
          }
        return last == 1000;
      },
      10s));
  watcher->Close();
}

TEST(WatchRoles, AViewerMayWatchAndATokenWithoutRolesMayNot) {
  testing::SignedStack s;
  testing::HttpClient http(s.stack.BaseUrl());
  http.SetBearer(s.Token({}));
  auto none = http.Get("/api/v1/watch");
  EXPECT_EQ(none.status, 403) << none.body;
  http.SetBearer("");
  EXPECT_EQ(http.Get("/api/v1/watch").status, 401);
  Watching viewer(s.stack.BaseUrl(), "/api/v1/watch", {{"Authorization", "Bearer " + s.Token({"ccm.viewer"})}});
  ASSERT_TRUE(testing::Eventually([&] { return viewer.Body().rfind("retry: 2000", 0) == 0; })) << viewer.Body();
}

TEST(WatchCli, PrintsEachChangeWithItsFiltersAndFailsOnABadOne) {
  testing::TempDir dir;
  std::string db = "sqlite:" + dir.File("ccm.db");
  auto ccm = std::make_unique<testing::CcmProcess>(dir.path(), std::map<std::string, std::string>{
                                                                    {"CCM_STORE", db}, {"CCM_WATCH_HEARTBEAT_MS", "200"},
                                                                    {"CCM_DRAIN_GRACE_MS", "0"}});
  testing::HttpClient http(ccm->BaseUrl());
  auto w1 = http.PostJson("/api/v1/workers", testing::WorkerBody("w1", "http://127.0.0.1:1", 8));
  ASSERT_EQ(w1.status, 201) << w1.body;
  const std::string wid = w1.Json()["id"];
  ASSERT_EQ(http.PostJson("/api/internal/workers/" + wid + "/transition", {{"to", "DRAINING"}}).status, 200);

  const std::string url = " --url " + ccm->BaseUrl();
  auto [rc, out] = testing::RunCcm("watch --after 0 --until-idle 1500" + url);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\tccm.worker.running\t" + wid + "\tRUNNING"), std::string::npos) << out;
  EXPECT_NE(out.find("\tccm.worker.draining\t" + wid + "\tDRAINING"), std::string::npos) << out;

  auto [jrc, jout] = testing::RunCcm("watch --after 0 --until-idle 1000 --kind workers --state draining -o json" + url);
  EXPECT_EQ(jrc, 0) << jout;
  const json line = json::parse(jout.substr(0, jout.find('\n')), nullptr, false);
  ASSERT_TRUE(line.is_object()) << jout;
  EXPECT_EQ(line["type"], "ccm.worker.draining");
  EXPECT_EQ(line["subject"], wid);

  auto [yrc, yout] = testing::RunCcm("watch --after 0 --until-idle 1000 --kind workers --state draining -o yaml" + url);
  EXPECT_EQ(yrc, 0) << yout;
  EXPECT_EQ(yout.rfind("---\n", 0), 0u) << yout;
  EXPECT_NE(yout.find("type: ccm.worker.draining\n"), std::string::npos) << yout;

  // A refused parameter is invalid input (exit 5), printed from the problem+json body.
  auto [brc, bad] = testing::RunCcm("watch --kind lablets --until-idle 1000" + url);
  EXPECT_EQ(brc, 5) << bad;
  EXPECT_NE(bad.find("ccm watch: 400 "), std::string::npos) << bad;
  EXPECT_NE(bad.find("field: kind"), std::string::npos) << bad;
  // Usage errors: nothing is sent.
  EXPECT_EQ(testing::RunCcm("watch -o xml" + url).first, 2);
  EXPECT_EQ(testing::RunCcm("watch --after -1" + url).first, 2);
}

TEST(WatchCli, ExitsWithTheDocumentedCodeWhenTheFirstConnectionFails) {
  // Nothing listens there: exit 7 at once, not a reconnection loop (no --until-idle).
  const std::string nowhere = "http://127.0.0.1:" + std::to_string(testing::FreePort());
  const auto start = std::chrono::steady_clock::now();
  auto [urc, unreachable] = testing::RunCcm("watch --url " + nowhere);
  EXPECT_EQ(urc, 7) << unreachable;
  EXPECT_NE(unreachable.find("ccm watch: GET " + nowhere + "/api/v1/watch"), std::string::npos) << unreachable;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);

  // Authentication on: no token is 401, a token without ccm.viewer 403; both exit 6.
  testing::SignedStack s;
  auto [nrc, none] = testing::RunCcm("watch --url " + s.stack.BaseUrl());
  EXPECT_EQ(nrc, 6) << none;
  EXPECT_NE(none.find("ccm watch: 401 Unauthorized"), std::string::npos) << none;
  auto [frc, forbidden] = testing::RunCcm("watch --url " + s.stack.BaseUrl() + " --token " + s.Token({}));
  EXPECT_EQ(frc, 6) << forbidden;
  EXPECT_NE(forbidden.find("ccm watch: 403 "), std::string::npos) << forbidden;
  // With the role, the same ccm streams (and the command ends once idle).
  auto [vrc, viewer] =
      testing::RunCcm("watch --until-idle 300 --url " + s.stack.BaseUrl() + " --token " + s.Token({"ccm.viewer"}));
  EXPECT_EQ(vrc, 0) << viewer;
}


// The seqs `ccm watch` printed (its table lines), in order.
std::vector<std::int64_t> PrintedSeqs(const std::string& file) {
  std::vector<std::int64_t> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos || line.find_first_not_of("0123456789") != tab) continue;
    out.push_back(std::stoll(line.substr(0, tab)));
  }
  return out;
}

TEST(WatchCli, ResumesAcrossADrainAndARestartWithoutLosingOrRepeatingAChange) {
  testing::TempDir dir;
  const std::string db = "sqlite:" + dir.File("ccm.db");
  auto first = std::make_unique<testing::CcmProcess>(dir.path(), std::map<std::string, std::string>{{"CCM_STORE", db}});
  const std::string base = first->BaseUrl();
  const std::string port = base.substr(base.rfind(':') + 1);
  const auto add_workers = [](const std::string& url, const std::string& prefix, int n) {
    testing::HttpClient http(url);
    for (int i = 0; i < n; ++i) {
      auto r = http.PostJson("/api/v1/workers", testing::WorkerBody(prefix + std::to_string(i), "http://127.0.0.1:1", 8));
      EXPECT_EQ(r.status, 201) << r.body;
    }
  };
  add_workers(base, "a", 3);  // seqs 1 to 9
  const std::string printed = dir.File("watch.out");
  const int watch = testing::Spawn({CCM_BINARY, "watch", "--url", base, "--after", "0", "--until-idle", "6000"}, {},
                                   printed);
  ASSERT_TRUE(testing::Eventually([&] { return PrintedSeqs(printed).size() >= 9; }, 10s));
  // A drain ends the stream with `shutdown`; the same ccm comes back on the same port.
  first->Signal(SIGTERM);
  ASSERT_EQ(first->WaitForExit(10s), 0);
  first.reset();
  testing::CcmProcess second(dir.path(), {{"CCM_STORE", db}, {"CCM_LISTEN", "127.0.0.1:" + port}});
  add_workers(second.BaseUrl(), "b", 2);  // seqs 10 to 15
  int status = 0;
  ASSERT_TRUE(testing::Eventually([&] { return waitpid(watch, &status, WNOHANG) == watch; }, 30s));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::vector<std::int64_t> expected;
  for (std::int64_t seq = 1; seq <= 15; ++seq) expected.push_back(seq);
  EXPECT_EQ(PrintedSeqs(printed), expected);
  std::ifstream in(printed);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find("the stream ended (shutdown); resuming after 9"), std::string::npos) << all;
}

}  // namespace
}  // namespace ccm
