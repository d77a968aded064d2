// A graceful stop of a real `ccm serve` process: SIGTERM turns readiness 503 at once, the
// listener closes after CCM_DRAIN_GRACE_MS, the requests in flight are answered (with
// `Connection: close`), idle keep-alive connections are closed, a delivery in flight is
// answered and recorded, a leader on etcd resigns so that another replica leads at once,
// systemd hears READY=1, WATCHDOG=1 and STOPPING=1, and the process exits 0.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "cloudevents/http_binding.h"
#include "support/etcd_cluster.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/process.h"
#include "support/raw_socket.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace ccm {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using testing::Eventually;

std::string ReadLog(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::uint16_t PortOf(const std::string& base_url) {
  return static_cast<std::uint16_t>(std::stoi(base_url.substr(base_url.rfind(':') + 1)));
}

std::int64_t Millis(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A request over a raw socket whose body comes in two parts, so that it is in flight (being
// read) for as long as the test wants.
struct TrickledRequest {
  testing::RawSocket socket;
  std::string rest;

  TrickledRequest(std::uint16_t port, const std::string& path, const std::string& body) : socket(port) {
    const std::string head = "POST " + path +
                             " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n";
    const std::size_t first = body.size() / 2;
    EXPECT_TRUE(socket.Send(head + body.substr(0, first)));
    rest = body.substr(first);
  }
};

TEST(Drain, RequestsInFlightAtSigtermAreAllAnsweredAndTheProcessExitsZero) {
  testing::TempDir dir;
  constexpr int kGraceMs = 400;
  testing::CcmProcess ccm(dir.path(),
                          {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                           {"CCM_DRAIN_GRACE_MS", std::to_string(kGraceMs)},
                           {"CCM_DRAIN_TIMEOUT_MS", "10000"},
                           {"CCM_LOG_LEVEL", "info"}},
                          false, dir.File("ccm.log"));
  const std::uint16_t port = PortOf(ccm.BaseUrl());

  // A keep-alive connection that has been answered once and now waits for a next request.
  testing::RawSocket idle(port);
  ASSERT_TRUE(idle.Send("GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  bool idle_open = false;
  const std::string first_answer = idle.ReadUntilClosed(500ms, &idle_open);
  ASSERT_TRUE(idle_open) << "the connection is kept alive before the drain";
  ASSERT_TRUE(Contains(first_answer, "HTTP/1.1 200")) << first_answer;

  // Requests in flight at SIGTERM: half of each body sent.
  constexpr int kInFlight = 16;
  std::vector<std::unique_ptr<TrickledRequest>> requests;
  for (int n = 0; n < kInFlight; ++n)
    requests.push_back(std::make_unique<TrickledRequest>(
        port, "/api/v1/workers",
        testing::WorkerBody("w" + std::to_string(n), "https://w" + std::to_string(n) + ".lab", 16).dump()));
  std::this_thread::sleep_for(200ms);  // every request has been accepted and started

  const auto signalled = Clock::now();
  ccm.Signal(SIGTERM);

  // The idle connection is closed at once, with no answer.
  bool idle_timed_out = false;
  const std::string idle_after = idle.ReadUntilClosed(2s, &idle_timed_out);
  EXPECT_FALSE(idle_timed_out) << "an idle keep-alive connection is closed when the drain starts";
  EXPECT_EQ(idle_after, "");

  // Past the grace, new connections are refused.
  std::this_thread::sleep_until(signalled + std::chrono::milliseconds(kGraceMs) + 400ms);
  testing::HttpClient late(ccm.BaseUrl());
  EXPECT_EQ(late.Get("/health/live").status, 0) << "the listener is closed after the grace";
  ASSERT_TRUE(ccm.Running()) << "the requests in flight are waited for";

  // The rest of every body: each request is answered in full, and its connection closed.
  for (auto& r : requests) ASSERT_TRUE(r->socket.Send(r->rest));
  std::set<std::string> ids;
  for (auto& r : requests) {
    bool timed_out = false;
    const std::string answer = r->socket.ReadUntilClosed(5s, &timed_out);
    EXPECT_FALSE(timed_out) << "the connection is closed after its answer";
    EXPECT_TRUE(Contains(answer, "HTTP/1.1 201")) << answer;
    EXPECT_TRUE(Contains(answer, "Connection: close")) << answer;
    const auto body = json::parse(answer.substr(answer.find("\r\n\r\n") + 4), nullptr, false);
    ASSERT_TRUE(body.is_object()) << answer;
    ids.insert(body.value("id", ""));
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kInFlight));
  EXPECT_EQ(ccm.WaitForExit(10s), 0);

  const std::string log = ReadLog(dir.File("ccm.log"));
  EXPECT_TRUE(Contains(log, "draining on signal 15")) << log;
  EXPECT_TRUE(Contains(log, "drain: listener closed")) << log;
  EXPECT_TRUE(Contains(log, "drain: every connection closed")) << log;
  EXPECT_TRUE(Contains(log, "drain: background work stopped")) << log;

  // What was answered was kept: every worker is there after a restart.
  testing::CcmProcess again(dir.path(), {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")}}, false, dir.File("again.log"));
  testing::HttpClient http(again.BaseUrl());
  for (const auto& id : ids) EXPECT_EQ(http.Get("/api/v1/workers/" + id).status, 200) << id;
}

TEST(Drain, ReadinessIs503DuringTheGraceWhileLivenessAnswersThenNewConnectionsAreRefused) {
  testing::TempDir dir;
  constexpr int kGraceMs = 1500;
  testing::CcmProcess ccm(dir.path(),
                          {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                           {"CCM_DRAIN_GRACE_MS", std::to_string(kGraceMs)},
                           {"CCM_LOG_LEVEL", "info"}},
                          false, dir.File("ccm.log"));
  testing::HttpClient probe(ccm.BaseUrl());
  ASSERT_EQ(probe.Get("/health/ready").status, 200);

  const auto signalled = Clock::now();
  ccm.Signal(SIGTERM);
  // Readiness turns at once (the signal is handled within a few milliseconds).
  testing::HttpResult ready;
  ASSERT_TRUE(Eventually(
      [&] {
        testing::HttpClient fresh(ccm.BaseUrl());
        ready = fresh.Get("/health/ready");
        return ready.status == 503;
      },
      1s));
  EXPECT_LT(Millis(Clock::now() - signalled), kGraceMs / 2);
  EXPECT_EQ(ready.ContentType(), "application/problem+json");
  EXPECT_EQ(ready.Json().value("status", 0), 503);
  EXPECT_EQ(ready.Json().value("detail", "").rfind("draining", 0), 0u) << ready.body;
  EXPECT_EQ(ready.headers["retry-after"], "1");
  EXPECT_EQ(ready.headers["connection"], "close");

  // Liveness still answers, on new connections, all through the grace.
  for (int n = 0; n < 5; ++n) {
    testing::HttpClient fresh(ccm.BaseUrl());
    auto live = fresh.Get("/health/live");
    EXPECT_EQ(live.status, 200);
    EXPECT_EQ(live.headers["connection"], "close") << "no connection is kept alive while draining";
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_LT(Millis(Clock::now() - signalled), kGraceMs) << "the machine was too slow to probe within the grace";

  // After the grace: refused, and the process ends with 0.
  std::this_thread::sleep_until(signalled + std::chrono::milliseconds(kGraceMs) + 500ms);
  testing::HttpClient late(ccm.BaseUrl());
  const auto refused = late.Get("/health/live");
  EXPECT_EQ(refused.status, 0) << refused.body;
  EXPECT_EQ(ccm.WaitForExit(10s), 0);
}

TEST(Drain, ALeaderResignsOnSigtermAndTheOtherReplicaLeadsAtOnceNotAfterTheTtl) {
  testing::TempDir side;
  testing::EtcdCluster etcd(side.File("etcd"), 1);
  // A TTL far longer than the bound asserted: a takeover within it proves the lease was
  // released, not left to expire.
  constexpr int kTtlSeconds = 30;
  std::vector<std::unique_ptr<testing::TempDir>> dirs;
  std::vector<std::unique_ptr<testing::CcmProcess>> ccm;
  for (int n = 0; n < 2; ++n) {
    dirs.push_back(std::make_unique<testing::TempDir>());
    ccm.push_back(std::make_unique<testing::CcmProcess>(dirs[n]->path(),
                                                        std::map<std::string, std::string>{
                                                            {"CCM_STORE", etcd.StoreSetting()},
                                                            {"CCM_LEADER_TTL_SECONDS", std::to_string(kTtlSeconds)},
                                                            {"CCM_DRAIN_GRACE_MS", "200"},
                                                            {"CCM_LOG_LEVEL", "info"}},
                                                        false, dirs[n]->File("ccm.log")));
  }
  auto leads = [&](int n) {
    testing::HttpClient http(ccm[n]->BaseUrl());
    auto r = http.Get("/health/ready");
    return r.status == 200 && r.Json().value("leader", false);
  };
  int leader = -1;
  ASSERT_TRUE(Eventually(
      [&] {
        leader = leads(0) ? 0 : leads(1) ? 1 : -1;
        return leader >= 0;
      },
      10s));
  const int other = 1 - leader;
  ASSERT_FALSE(leads(other));

  const auto signalled = Clock::now();
  ccm[leader]->Signal(SIGTERM);
  std::optional<Clock::time_point> exited, took_over;
  while (Clock::now() - signalled < 20s && (!exited || !took_over)) {
    if (!exited && ccm[leader]->WaitForExit(0ms) >= 0) exited = Clock::now();
    if (!took_over && leads(other)) took_over = Clock::now();
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(took_over) << "the other replica never led";
  ASSERT_TRUE(exited) << "the leader did not exit";
  std::cout << "took over " << Millis(*took_over - signalled) << " ms after SIGTERM; the leader exited after "
            << Millis(*exited - signalled) << " ms\n";
  // Within one second of the leader's exit being seen (usually before it), and far within the TTL.
  EXPECT_LT(Millis(*took_over - *exited), 1000);
  EXPECT_LT(Millis(*took_over - signalled), 5000);
  const std::string log = ReadLog(dirs[leader]->File("ccm.log"));
  EXPECT_TRUE(Contains(log, "lease revoked")) << log;
}

// The sink answers its first delivery after a while; every delivery is counted, copies too.
class SlowFirstSink {
 public:
  explicit SlowFirstSink(std::chrono::milliseconds first_delay)
      : first_delay_(first_delay), server_([this](http::Request& r) { return Handle(r); }) {}
  std::string Url() const { return server_.Url() + "/events"; }
  int Started() const { return started_.load(); }
  int Answered() const { return answered_.load(); }
  std::map<std::string, int> Copies() {
    std::lock_guard lock(mu_);
    return copies_;
  }

 private:
  http::Response Handle(http::Request& r) {
    if (started_.fetch_add(1) == 0) std::this_thread::sleep_for(first_delay_);
    if (auto decoded = cloudevents::Decode(r.headers, r.body)) {
      std::lock_guard lock(mu_);
      for (const auto& d : decoded->events)
        if (d.event) ++copies_[d.event->id];
    }
    ++answered_;
    http::Response resp;
    resp.status = 202;
    return resp;
  }

  std::chrono::milliseconds first_delay_;
  std::atomic<int> started_{0};
  std::atomic<int> answered_{0};
  std::mutex mu_;
  std::map<std::string, int> copies_;
  testing::FakeServer server_;
};

TEST(Drain, ADeliveryInFlightIsAnsweredAndRecordedBeforeTheLeaderResigns) {
  testing::TempDir side;
  testing::EtcdCluster etcd(side.File("etcd"), 1);
  SlowFirstSink sink(1500ms);
  const std::map<std::string, std::string> env{{"CCM_STORE", etcd.StoreSetting()},
                                               {"CLOUDEVENTS_SINK_URL", sink.Url()},
                                               {"CCM_DRAIN_GRACE_MS", "0"},
                                               {"CCM_LOG_LEVEL", "info"}};
  testing::TempDir dir;
  {
    testing::CcmProcess ccm(dir.path(), env, false, dir.File("ccm.log"));
    testing::HttpClient http(ccm.BaseUrl());
    ASSERT_TRUE(Eventually([&] { return http.Get("/health/ready").Json().value("leader", false); }, 10s));
    ASSERT_EQ(http.PostJson("/api/v1/workers", testing::WorkerBody("w1", "https://w1.lab", 16)).status, 201);
    ASSERT_TRUE(Eventually([&] { return sink.Started() == 1; }, 10s));
    ccm.Signal(SIGTERM);
    EXPECT_EQ(ccm.WaitForExit(15s), 0);
    EXPECT_EQ(sink.Answered(), 1) << "the process waited for the delivery in flight";
    const std::string log = ReadLog(dir.File("ccm.log"));
    EXPECT_TRUE(Contains(log, "resigning leadership")) << log;
    EXPECT_TRUE(Contains(log, "lease revoked")) << log;
  }
  const auto delivered = sink.Copies();
  ASSERT_FALSE(delivered.empty());

  // The next leader finds the delivery recorded: nothing is sent twice.
  testing::TempDir next_dir;
  testing::CcmProcess next(next_dir.path(), env, false, next_dir.File("ccm.log"));
  testing::HttpClient http(next.BaseUrl());
  ASSERT_TRUE(Eventually([&] { return http.Get("/health/ready").Json().value("leader", false); }, 10s));
  ASSERT_EQ(http.PostJson("/api/v1/workers", testing::WorkerBody("w2", "https://w2.lab", 16)).status, 201);
  // The new worker's event arrives, and behind it no copy of the first.
  ASSERT_TRUE(Eventually([&] { return sink.Copies().size() > delivered.size(); }, 10s));
  std::this_thread::sleep_for(500ms);
  for (const auto& [id, copies] : sink.Copies()) EXPECT_EQ(copies, 1) << id << " was delivered " << copies << " times";
}

// systemd's side of sd_notify: a datagram socket that records every message.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path), fd_(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "cannot bind " << path;
    timeval wait{0, 50'000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    reader_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        const ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::lock_guard lock(mu_);
        messages_.push_back({Clock::now(), std::string(buf, static_cast<size_t>(n))});
      }
    });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    close(fd_);
  }

  struct Message {
    Clock::time_point at;
    std::string text;
  };
  std::vector<Message> Messages() {
    std::lock_guard lock(mu_);
    return messages_;
  }
  // The messages holding `line` (one of their lines).
  std::vector<Message> With(const std::string& line) {
    std::vector<Message> out;
    for (auto& m : Messages())
      if (("\n" + m.text + "\n").find("\n" + line + "\n") != std::string::npos) out.push_back(m);
    return out;
  }

 private:
  std::string path_;
  int fd_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Message> messages_;
  std::thread reader_;
};

// ccm on SQLite in `dir`, as systemd starts a Type=notify service with WatchdogSec=1s:
// NOTIFY_SOCKET is dir/notify (a NotifySocket there hears it), plus `extra` settings.
std::unique_ptr<testing::CcmProcess> StartUnderNotify(testing::TempDir& dir,
                                                      const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env = {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                            {"NOTIFY_SOCKET", dir.File("notify")},
                                            {"WATCHDOG_USEC", "1000000"},
                                            {"CCM_DRAIN_GRACE_MS", "0"}};
  env.insert(extra.begin(), extra.end());
  return std::make_unique<testing::CcmProcess>(dir.path(), env, false, dir.File("ccm.log"));
}

TEST(Drain, SystemdHearsReadyOnceListeningThenWatchdogPingsThenStopping) {
  testing::TempDir dir;
  NotifySocket systemd(dir.File("notify"));
  // WATCHDOG_PID unset: sd_watchdog_enabled takes the watchdog as meant for this process.
  auto ccm = StartUnderNotify(dir, {{"CCM_LOG_LEVEL", "info"}});
  ASSERT_TRUE(Eventually([&] { return !systemd.With("READY=1").empty(); }, 5s));
  const auto ready = systemd.With("READY=1");
  ASSERT_EQ(ready.size(), 1u);
  // READY comes with where it serves, and that port answers.
  const std::string where = ccm->BaseUrl().substr(std::string("http://").size());
  EXPECT_TRUE(Contains(ready[0].text, "STATUS=serving on " + where)) << ready[0].text;
  testing::HttpClient http(ccm->BaseUrl());
  EXPECT_EQ(http.Get("/health/live").status, 200);

  // Pings every 500 ms (half the watchdog's 1 s), from the event loop.
  const auto since = Clock::now();
  std::this_thread::sleep_for(3200ms);
  std::vector<Clock::time_point> pings;
  for (const auto& m : systemd.With("WATCHDOG=1"))
    if (m.at >= since) pings.push_back(m.at);
  EXPECT_GE(pings.size(), 4u) << "about one ping per 500 ms";
  EXPECT_LE(pings.size(), 10u);
  // No gap as long as the watchdog's period, when systemd would kill the service (the bound
  // leaves room for a shared machine: a ping late by up to 500 ms still passes).
  for (size_t k = 1; k < pings.size(); ++k) EXPECT_LT(Millis(pings[k] - pings[k - 1]), 1000);
  EXPECT_TRUE(systemd.With("STOPPING=1").empty());

  const auto signalled = Clock::now();
  ccm->Signal(SIGTERM);
  ASSERT_TRUE(Eventually([&] { return !systemd.With("STOPPING=1").empty(); }, 5s));
  EXPECT_GE(systemd.With("STOPPING=1")[0].at, signalled);
  EXPECT_EQ(ccm->WaitForExit(10s), 0);
}

TEST(Drain, AWatchdogMeantForAnotherProcessIsNotPinged) {
  testing::TempDir dir;
  NotifySocket systemd(dir.File("notify"));
  // systemd sets WATCHDOG_PID to the main process: a process it does not name (a child that
  // inherited the environment, say) must not ping in its place.
  auto ccm = StartUnderNotify(dir, {{"WATCHDOG_PID", "1"}});
  ASSERT_TRUE(Eventually([&] { return !systemd.With("READY=1").empty(); }, 5s));
  std::this_thread::sleep_for(1200ms);  // two ping periods
  EXPECT_TRUE(systemd.With("WATCHDOG=1").empty());
  ccm->Signal(SIGTERM);
  EXPECT_EQ(ccm->WaitForExit(10s), 0);
}

}  // namespace
}  // namespace ccm
