// Delivery over real HTTP on loopback to a sink that fails on purpose: refused connections,
// 500s, 429 with Retry-After, answers slower than the timeout. Once it recovers every event
// arrives, in order per subject, none dead-lettered.
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "app/dispatcher.h"
#include "clients/http_event_sink.h"
#include "http/server.h"
#include "os/clock.h"
#include "ports/store.h"
#include "store/sqlite/sqlite_store.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"
#include "support/wait.h"

namespace ccm {
namespace {

using testing::FreePort;
using testing::TestSink;

using namespace std::chrono_literals;

class Delivery : public ::testing::TestWithParam<cloudevents::Mode> {};

TEST_P(Delivery, EveryEventArrivesInOrderPerSubjectOnceTheSinkRecovers) {
  testing::TempDir dir;
  auto store = std::move(store::SqliteStore::Open({dir.File("ccm.db")}).value());
  os::SystemClock clock;
  // 300 events over 12 subjects; ids sort in commit order.
  for (int n = 0; n < 300; ++n) {
    char id[16];
    std::snprintf(id, sizeof id, "e%05d", n);
    ports::Changes c;
    const std::string subject = "s" + std::to_string(n % 12);
    c.events = {{id, subject, "ccm.test", clock.Now(),
                 R"({"specversion":"1.0","id":")" + std::string(id) + R"(","source":"ccm","type":"ccm.test","subject":")" +
                     subject + R"(","datacontenttype":"application/json","data":{"n":)" + std::to_string(n) + "}}"}};
    ASSERT_TRUE(store->Commit(c));
  }

  const std::uint16_t port = FreePort();
  ASSERT_NE(port, 0);
  clients::HttpEventSinkOptions so;
  so.url = "http://127.0.0.1:" + std::to_string(port) + "/events";
  so.mode = GetParam();
  so.batch_size = 40;
  so.connect_timeout = 200ms;
  so.total_timeout = 300ms;
  clients::HttpEventSink sink(so);
  app::DispatcherOptions o;
  o.base_backoff = 10ms;
  o.max_backoff = 100ms;
  o.max_attempts = 1000;
  o.round_size = 100;
  o.breaker_threshold = 3;
  o.breaker_cooldown = 150ms;
  o.idle_poll = 20ms;
  app::DispatchMetrics metrics;
  app::Dispatcher dispatcher(*store, *store, sink, clock, o, metrics);
  dispatcher.Start();

  // Nothing listens yet: connections are refused.
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(metrics.delivered.load(), 0u);
  EXPECT_GT(metrics.retried.load(), 0u);

  TestSink receiver(port, {{500, ""},
                           {503, ""},
                           {429, "1"},
                           {200, "", 600ms},  // slower than the 300 ms timeout
                           {500, ""},
                           {502, ""},
                           {408, ""}});
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (store->GetOutboxStats()->pending > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  dispatcher.Stop();

  const auto stats = store->GetOutboxStats();
  EXPECT_EQ(stats->pending, 0);
  EXPECT_EQ(stats->dead, 0);
  EXPECT_EQ(receiver.Distinct(), 300u);
  for (const auto& [subject, ids] : receiver.FirstArrivals()) {
    EXPECT_EQ(ids.size(), 25u) << subject;
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end())) << subject << " arrived out of order";
  }
  EXPECT_GE(metrics.delivered.load(), 300u);
  receiver.Stop();
}

INSTANTIATE_TEST_SUITE_P(Modes, Delivery,
                         ::testing::Values(cloudevents::Mode::kStructured, cloudevents::Mode::kBinary,
                                           cloudevents::Mode::kBatch),
                         [](const auto& info) {
                           switch (info.param) {
                             case cloudevents::Mode::kStructured: return std::string("structured");
                             case cloudevents::Mode::kBinary: return std::string("binary");
                             case cloudevents::Mode::kBatch: return std::string("batch");
                           }
                           return std::string("unknown");
                         });

// A sink that refuses for good (400) the first event of every worker, and takes the rest,
// recording the order in which ids arrive.
class RefusesEachWorkersFirstEvent {
 public:
  RefusesEachWorkersFirstEvent() : server_([this](http::Request& r) { return Handle(r); }) {}
  std::string Url() const { return server_.Url() + "/events"; }
  std::vector<std::string> Received() {
    std::lock_guard lock(mu_);
    return received_;
  }

 private:
  http::Response Handle(http::Request& r) {
    http::Response resp;
    resp.status = 202;
    auto decoded = cloudevents::Decode(r.headers, r.body);
    if (!decoded) {
      resp.status = 400;
      return resp;
    }
    std::lock_guard lock(mu_);
    for (const auto& d : decoded->events) {
      if (!d.event) continue;
      const std::string subject = d.event->subject.value_or("");
      if (d.event->type.rfind("ccm.worker.", 0) == 0 && refused_.insert(subject).second) {
        resp.status = 400;
        return resp;
      }
      received_.push_back(d.event->id);
    }
    return resp;
  }

  std::mutex mu_;
  std::set<std::string> refused_;
  std::vector<std::string> received_;
  testing::FakeServer server_;
};

TEST(DeliveryOverHttp, ASubjectWaitsBehindItsDeadLetterAndAReplayDeliversItInOrder) {
  using nlohmann::json;
  testing::TempDir dir;
  RefusesEachWorkersFirstEvent sink;
  testing::CcmProcess ccm(dir.path(), {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                       {"CCM_RECONCILERS", "false"},
                                       {"CLOUDEVENTS_SINK_URL", sink.Url()}});
  testing::HttpClient http(ccm.BaseUrl());
  json worker = {{"name", "w1"}, {"hostname", "w1"}, {"cml_url", "http://w1"}, {"license_type", "ENTERPRISE"},
                 {"capacity", {{"cpu_cores", 64}, {"memory_gb", 256}, {"max_nodes", 100}}}, {"state", "RUNNING"}};
  auto created = http.PostJson("/api/v1/workers", worker);
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string wid = created.Json()["id"];
  std::vector<std::string> worker_events;
  const json listed = http.Get("/api/v1/events?subject=" + wid).Json();
  for (const auto& e : listed["items"]) worker_events.push_back(e["id"]);
  ASSERT_GE(worker_events.size(), 2u) << listed.dump();

  // The worker's first event dies; the rest of its subject is held. Another subject flows.
  json def = {{"name", "lab"}, {"version", "1.0.0"}, {"lab_yaml", "nodes: [{id: n0, label: r1}]"},
              {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}},
              {"license_affinity", {"ENTERPRISE"}}, {"max_duration_minutes", 60}, {"created_by", "test"}};
  const std::string def_id = http.PostJson("/api/v1/definitions", def).Json()["id"];
  json inst = {{"definition_id", def_id}, {"owner_id", "c1"}, {"timeslot_start", "2030-12-01T09:00:00Z"},
               {"timeslot_end", "2030-12-01T10:00:00Z"}};
  const std::string iid = http.PostJson("/api/v1/instances", inst).Json()["id"];
  ASSERT_TRUE(testing::Eventually([&] { return sink.Received().size() == 1; }));
  ASSERT_TRUE(testing::Eventually(
      [&] { return http.Get("/api/v1/events/dead-letters").Json()["items"].size() == 1; }));
  auto held = http.Get("/api/v1/events?state=held").Json()["items"];
  ASSERT_EQ(held.size(), worker_events.size() - 1);
  for (size_t n = 0; n < held.size(); ++n) EXPECT_EQ(held[n]["id"], worker_events[n + 1]);
  EXPECT_NE(http.Get("/metrics").body.find("ccm_outbox_held_events " + std::to_string(held.size())),
            std::string::npos);

  // Replaying the dead letter releases the subject: its events arrive in their order.
  auto replayed = http.Post("/api/v1/events/dead-letters/" + worker_events[0] + "/replay", "");
  ASSERT_EQ(replayed.status, 200) << replayed.body;
  ASSERT_TRUE(testing::Eventually([&] { return sink.Received().size() == 1 + worker_events.size(); }));
  auto received = sink.Received();
  EXPECT_EQ(std::vector<std::string>(received.begin() + 1, received.end()), worker_events);
  EXPECT_TRUE(http.Get("/api/v1/events?state=held").Json()["items"].empty());
  EXPECT_EQ(http.Get("/api/v1/events?subject=" + iid).Json()["items"][0]["state"], "delivered");
}

// A sink that counts the requests in flight; its first request waits (up to 4 s, under the
// sink's 5 s timeout) for a second one to have come, so that requests which can overlap are
// seen to.
class CountsRequestsInFlight {
 public:
  CountsRequestsInFlight() : server_([this](http::Request& r) { return Handle(r); }) {}
  std::string Url() const { return server_.Url() + "/events"; }
  int MostInFlight() {
    std::lock_guard lock(mu_);
    return most_;
  }
  std::map<std::string, std::vector<std::string>> Arrivals() {
    std::lock_guard lock(mu_);
    return arrivals_;
  }

 private:
  http::Response Handle(http::Request& r) {
    http::Response resp;
    resp.status = 202;
    auto decoded = cloudevents::Decode(r.headers, r.body);
    std::unique_lock lock(mu_);
    most_ = std::max(most_, ++in_flight_);
    changed_.notify_all();
    if (requests_++ == 0) changed_.wait_for(lock, 4s, [&] { return most_ >= 2; });
    if (decoded)
      for (const auto& d : decoded->events)
        if (d.event) arrivals_[d.event->subject.value_or("")].push_back(d.event->id);
    --in_flight_;
    return resp;
  }

  std::mutex mu_;
  std::condition_variable changed_;
  int in_flight_ = 0;
  int most_ = 0;
  int requests_ = 0;
  std::map<std::string, std::vector<std::string>> arrivals_;
  testing::FakeServer server_;
};

TEST(DeliveryOverHttp, SeveralRequestsInFlightNoMoreThanTheSettingInOrderPerSubject) {
  testing::TempDir dir;
  auto store = std::move(store::SqliteStore::Open({dir.File("ccm.db")}).value());
  os::SystemClock clock;
  std::map<std::string, std::vector<std::string>> published;
  ports::Changes c;
  for (int n = 0; n < 120; ++n) {
    char id[16];
    std::snprintf(id, sizeof id, "e%05d", n);
    const std::string subject = "s" + std::to_string(n % 10);
    c.events.push_back({id, subject, "ccm.test", clock.Now(),
                        R"({"specversion":"1.0","id":")" + std::string(id) +
                            R"(","source":"ccm","type":"ccm.test","subject":")" + subject + R"("})"});
    published[subject].push_back(id);
  }
  ASSERT_TRUE(store->Commit(c));
  CountsRequestsInFlight receiver;
  clients::HttpEventSinkOptions so;
  so.url = receiver.Url();
  clients::HttpEventSink sink(so);
  app::DispatcherOptions o;
  o.concurrency = 2;  // below the fake server's handler threads, so the bound is the dispatcher's
  o.round_size = 50;
  app::DispatchMetrics metrics;
  app::Dispatcher dispatcher(*store, *store, sink, clock, o, metrics);
  int delivered = 0;
  for (int round = 0; round < 10 && delivered < 120; ++round) {
    auto n = dispatcher.RunOnce();
    ASSERT_TRUE(n);
    delivered += *n;
  }
  EXPECT_EQ(delivered, 120);
  EXPECT_EQ(receiver.MostInFlight(), 2);
  EXPECT_EQ(receiver.Arrivals(), published);
  EXPECT_EQ(store->GetOutboxStats()->pending, 0);
}

TEST(RetryAfter, SecondsAndHttpDates) {
  const auto now = std::chrono::system_clock::from_time_t(1'800'000'000);
  EXPECT_EQ(clients::ParseRetryAfter("120", now), std::chrono::milliseconds(120'000));
  // 1'800'000'060 is Fri, 15 Jan 2027 08:01:00 GMT.
  EXPECT_EQ(clients::ParseRetryAfter("Fri, 15 Jan 2027 08:01:00 GMT", now), std::chrono::milliseconds(60'000));
  EXPECT_FALSE(clients::ParseRetryAfter("soon", now));
  EXPECT_FALSE(clients::ParseRetryAfter("", now));
}

}  // namespace
}  // namespace ccm
