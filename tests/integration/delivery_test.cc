// Delivery over real HTTP on loopback to a sink that fails on purpose: refused connections,
// 500s, 429 with Retry-After, answers slower than the timeout. Once it recovers every event
// arrives, in order per subject, none dead-lettered.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "app/dispatcher.h"
#include "app/system.h"
#include "clients/http_event_sink.h"
#include "http/server.h"
#include "store/sqlite/sqlite_store.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"

namespace ccm {
namespace {

using testing::FreePort;
using testing::TestSink;

using namespace std::chrono_literals;

class Delivery : public ::testing::TestWithParam<cloudevents::Mode> {};

TEST_P(Delivery, EveryEventArrivesInOrderPerSubjectOnceTheSinkRecovers) {
  testing::TempDir dir;
  auto store = std::move(store::SqliteStore::Open({dir.File("ccm.db")}).value());
  app::SystemClock clock;
  // 300 events over 12 subjects; ids sort in commit order.
  for (int n = 0; n < 300; ++n) {
    char id[16];
    std::snprintf(id, sizeof id, "e%05d", n);
    app::Changes c;
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
  app::Dispatcher dispatcher(*store, sink, clock, o, metrics);
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
