// GET /api/v1/overview over real HTTP on loopback: the counts per state and per worker, a
// lablet stuck past its state's time-out (a fake clock moves past it), the two-second cache,
// paging through more instances than one store page holds, roles, and an unknown parameter.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "compose/composition.h"
#include "http/api.h"
#include "http/server.h"
#include "store/memory/memory_store.h"
#include "store/sqlite/sqlite_store.h"
#include "support/fake_clock.h"
#include "support/http_client.h"
#include "support/json_schema.h"
#include "support/lab_seed.h"
#include "support/signed_stack.h"
#include "support/stack.h"
#include "support/temp_dir.h"

namespace ccm {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// ccm's API on a fake clock, with a 60 s instantiation time-out, on a SQLite file or in memory.
struct ClockedStack {
  explicit ClockedStack(testing::StoreKind kind) {
    if (kind == testing::StoreKind::kMemory) {
      auto s = std::make_unique<store::MemoryStore>();
      outbox = s.get();
      store = std::move(s);
    } else {
      auto s = store::SqliteStore::Open({dir.File("ccm.db")});
      if (!s) throw std::runtime_error(s.error().message);
      outbox = s->get();
      store = std::move(s.value());
    }
    compose::Settings settings;
    settings.reconcile.instantiation_timeout = 60s;
    composition = std::make_unique<compose::Composition>(
        compose::Adapters{.store = *store, .outbox = *outbox, .clock = clock, .ids = ids, .platform = platform},
        settings);
    http::AddApiRoutes(router, composition->Api());
    http::ServerOptions options;
    options.port = 0;
    server = std::make_unique<http::Server>(options, [this](http::Request& r) { return router.Dispatch(r); });
    if (auto started = server->Start(); !started) throw std::runtime_error(started.error().message);
  }
  ~ClockedStack() { server->Stop(); }
  std::string BaseUrl() const { return "http://127.0.0.1:" + std::to_string(server->port()); }

  testing::TempDir dir;
  std::unique_ptr<ports::Store> store;
  ports::Outbox* outbox = nullptr;
  testing::FakeClock clock{FromUnixMillis(1'800'000'000'000)};
  os::UuidV7Generator ids;
  testing::Unreachable platform;
  std::unique_ptr<compose::Composition> composition;
  http::Router router;
  std::unique_ptr<http::Server> server;
};

json InstanceBody(const std::string& definition_id, const std::string& owner) {
  return {{"definition_id", definition_id},
          {"owner_id", owner},
          {"assessment", {{"session_id", "s-1"}, {"part_id", "p-1"}}},
          {"timeslot_start", "2027-01-01T09:00:00Z"},
          {"timeslot_end", "2027-01-01T10:00:00Z"}};
}

std::string Create(testing::HttpClient& http, const std::string& definition_id, const std::string& owner) {
  auto r = http.PostJson("/api/v1/instances", InstanceBody(definition_id, owner));
  EXPECT_EQ(r.status, 201) << r.body;
  return r.Json()["id"];
}

void ExpectMatchesSchema(const json& body) {
  static const json kDoc = json::parse(http::OpenApiDocument());
  const auto errors = testing::ValidateSchema(kDoc, {{"$ref", "#/components/schemas/Overview"}}, body);
  EXPECT_TRUE(errors.empty()) << errors.front() << "\n" << body.dump(1);
}

TEST(Overview, CountsPerStateAndPerWorkerAndListsTheStuckOnesOldestFirst) {
  ClockedStack stack(testing::StoreKind::kSqlite);
  testing::HttpClient http(stack.BaseUrl());
  const auto lab = testing::SeedLab(http, "nodes: [{id: n0, label: r1}]\n");
  const std::string a = Create(http, lab.definition_id, "alice");
  const std::string b = Create(http, lab.definition_id, "bob");
  Create(http, lab.definition_id, "carol");
  const std::string gone = Create(http, lab.definition_id, "dave");
  ASSERT_EQ(http.PostJson("/api/internal/instances/" + a + "/schedule", {{"worker_id", lab.worker_id}}).status, 200);
  stack.clock.Advance(30s);
  ASSERT_EQ(http.PostJson("/api/internal/instances/" + b + "/schedule", {{"worker_id", lab.worker_id}}).status, 200);
  ASSERT_EQ(http.PostJson("/api/internal/instances/" + gone + "/transition", {{"to", "TERMINATED"}}).status, 200);

  auto first = http.Get("/api/v1/overview");
  ASSERT_EQ(first.status, 200) << first.body;
  json o = first.Json();
  ExpectMatchesSchema(o);
  EXPECT_EQ(o["total"], 4);
  EXPECT_EQ(o["per_state"]["PENDING"], 1);
  EXPECT_EQ(o["per_state"]["SCHEDULED"], 2);
  EXPECT_EQ(o["per_state"]["TERMINATED"], 1);
  EXPECT_EQ(o["per_state"]["RUNNING"], 0);
  EXPECT_EQ(o["stuck"]["total"], 0);
  EXPECT_EQ(o["workers"], json::array({{{"worker_id", lab.worker_id}, {"lablets", 2}}}));
  EXPECT_EQ(o["computed_at"], FormatRfc3339(stack.clock.Now()));

  // Within two seconds the same answer comes back, even though a lablet was added.
  Create(http, lab.definition_id, "erin");
  stack.clock.Advance(1s);
  EXPECT_EQ(http.Get("/api/v1/overview").Json(), o);

  // 61 s after the first was scheduled, it is past the 60 s time-out; 91 s after, both are.
  stack.clock.Advance(30s);
  o = http.Get("/api/v1/overview").Json();
  EXPECT_EQ(o["total"], 5);
  EXPECT_EQ(o["per_state"]["PENDING"], 2);
  ASSERT_EQ(o["stuck"]["total"], 1);
  EXPECT_EQ(o["stuck"]["items"][0]["id"], a);
  EXPECT_EQ(o["stuck"]["items"][0]["state"], "SCHEDULED");
  EXPECT_EQ(o["stuck"]["items"][0]["owner_id"], "alice");
  EXPECT_EQ(o["stuck"]["items"][0]["worker_id"], lab.worker_id);
  EXPECT_EQ(o["stuck"]["items"][0]["since"], FormatRfc3339(stack.clock.Now() - 61s));
  stack.clock.Advance(30s);
  o = http.Get("/api/v1/overview").Json();
  ExpectMatchesSchema(o);
  ASSERT_EQ(o["stuck"]["total"], 2);
  EXPECT_EQ(o["stuck"]["items"][0]["id"], a);
  EXPECT_EQ(o["stuck"]["items"][1]["id"], b);
}

TEST(Overview, PagesThroughEveryInstanceAndListsAtMostFiftyStuckOnes) {
  ClockedStack stack(testing::StoreKind::kMemory);
  testing::HttpClient http(stack.BaseUrl());
  const auto lab = testing::SeedLab(http, "nodes: [{id: n0, label: r1}]\n");
  std::string oldest;
  for (int n = 0; n < 560; ++n) {
    const std::string id = Create(http, lab.definition_id, "owner-" + std::to_string(n));
    if (n < 60) {
      ASSERT_EQ(http.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", lab.worker_id}}).status,
                200);
      if (n == 0) oldest = id;
      stack.clock.Advance(1ms);
    }
  }
  stack.clock.Advance(120s);
  auto o = http.Get("/api/v1/overview").Json();
  ExpectMatchesSchema(o);
  EXPECT_EQ(o["total"], 560);  // more than one page of the store (500)
  EXPECT_EQ(o["per_state"]["SCHEDULED"], 60);
  EXPECT_EQ(o["per_state"]["PENDING"], 500);
  EXPECT_EQ(o["stuck"]["total"], 60);
  ASSERT_EQ(o["stuck"]["items"].size(), 50u);
  EXPECT_EQ(o["stuck"]["items"][0]["id"], oldest);
  EXPECT_LT(o["stuck"]["items"][0]["since"].get<std::string>(), o["stuck"]["items"][49]["since"].get<std::string>());
  EXPECT_EQ(o["workers"][0]["lablets"], 60);
}

// A lablet booked ahead waits in SCHEDULED by design: it is late only once its timeslot has
// begun, and then counted from that moment.
TEST(Overview, AScheduledLabletIsLateOnlyOnceItsTimeslotHasBegun) {
  ClockedStack stack(testing::StoreKind::kMemory);
  testing::HttpClient http(stack.BaseUrl());
  const auto lab = testing::SeedLab(http, "nodes: [{id: n0, label: r1}]\n");
  json body = InstanceBody(lab.definition_id, "frank");
  const Timestamp start = stack.clock.Now() + std::chrono::minutes(10);
  body["timeslot_start"] = FormatRfc3339(start);
  body["timeslot_end"] = FormatRfc3339(start + std::chrono::hours(1));
  auto created = http.PostJson("/api/v1/instances", body);
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.Json()["id"];
  ASSERT_EQ(http.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", lab.worker_id}}).status, 200);

  stack.clock.Advance(std::chrono::minutes(9));  // scheduled 9 min ago, the 60 s time-out long past
  EXPECT_EQ(http.Get("/api/v1/overview").Json()["stuck"]["total"], 0);
  stack.clock.Advance(std::chrono::seconds(61 + 60));  // its timeslot began 61 s ago
  auto o = http.Get("/api/v1/overview").Json();
  ASSERT_EQ(o["stuck"]["total"], 1);
  EXPECT_EQ(o["stuck"]["items"][0]["id"], id);
  EXPECT_EQ(o["stuck"]["items"][0]["since"], FormatRfc3339(start));
}

TEST(Overview, RefusesAnUnknownQueryParameterNamingIt) {
  ClockedStack stack(testing::StoreKind::kMemory);
  testing::HttpClient http(stack.BaseUrl());
  auto r = http.Get("/api/v1/overview?state=RUNNING");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.ContentType(), "application/problem+json");
  EXPECT_EQ(r.Json()["field"], "state");
  EXPECT_NE(r.Json()["detail"].get<std::string>().find("state"), std::string::npos) << r.body;
}

TEST(Overview, ViewersMayReadItOthersMayNot) {
  testing::SignedStack signed_stack;
  testing::HttpClient http(signed_stack.stack.BaseUrl());
  EXPECT_EQ(http.Get("/api/v1/overview").status, 401);
  http.SetBearer(signed_stack.Token({"ccm.events.publish"}));
  auto denied = http.Get("/api/v1/overview");
  EXPECT_EQ(denied.status, 403);
  EXPECT_NE(denied.Json()["detail"].get<std::string>().find("ccm.viewer"), std::string::npos) << denied.body;
  http.SetBearer(signed_stack.Token({"ccm.viewer"}));
  auto allowed = http.Get("/api/v1/overview");
  EXPECT_EQ(allowed.status, 200) << allowed.body;
  EXPECT_EQ(allowed.Json()["total"], 0);
}

}  // namespace
}  // namespace ccm
