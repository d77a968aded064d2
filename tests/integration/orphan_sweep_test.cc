// The sweep of orphan labs against cml-sim over real HTTP, through the real CML client, with a
// real SQLite store and a fake clock: which labs it removes, which it never touches, and how
// it rides out a worker that cannot be reached. Also the CML calls it relies on: the mark
// written at import, and the listing of labs per the CML 2.9 contract.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

#include "app/orphan_sweep.h"
#include "clients/cml_client.h"
#include "ports/cml.h"
#include "ports/store.h"
#include "store/sqlite/sqlite_store.h"
#include "support/fake_clock.h"
#include "support/fixtures.h"
#include "support/http_client.h"
#include "support/json_schema.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"
#include "support/wait.h"

namespace ccm {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kGrace = 15min;

// A lab as ccm's definitions hold it: CML YAML with the author's own description.
const char* kLabYaml =
    "lab:\n  version: 0.2.2\n  title: author's title\n  description: a router and nothing else\n"
    "nodes: []\nlinks: []\n";

Timestamp SystemNow() {
  return FromUnixMillis(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// cml-sim, a SQLite store and the sweep over them; the fake clock starts at the real time,
// since cml-sim stamps labs with the real time.
struct SweepWorld {
  testing::TempDir dir;
  std::unique_ptr<testing::ChildProcess> sim;
  std::unique_ptr<store::SqliteStore> store;
  testing::FakeClock clock{SystemNow()};
  clients::CmlClient cml{{"admin", "cml-secret"}};
  app::OrphanSweepMetrics metrics;
  std::unique_ptr<app::OrphanSweep> sweep;

  explicit SweepWorld(std::vector<std::string> sim_args = {}) {
    std::vector<std::string> argv = {CML_SIM_BINARY, "--ready-file", dir.File("cml.ready"), "--cml-schema",
                                     std::string(CCM_TEST_DATA) + "/cml-2.9.openapi.json", "--start-delay-ms", "0"};
    argv.insert(argv.end(), sim_args.begin(), sim_args.end());
    sim = std::make_unique<testing::ChildProcess>(argv, std::map<std::string, std::string>{}, dir.File("cml.ready"));
    auto s = store::SqliteStore::Open({dir.File("ccm.db")});
    if (!s) throw std::runtime_error(s.error().message);
    store = std::move(s.value());
    app::OrphanSweepOptions options;
    options.grace = kGrace;
    sweep = std::make_unique<app::OrphanSweep>(*store, clock, cml, options, metrics);
  }

  std::string Url() const { return sim->BaseUrl(); }

  void AddWorker(const std::string& id, const std::string& cml_url,
                 domain::WorkerState state = domain::WorkerState::kRunning) {
    domain::Worker w = testing::MakeWorker(id, state);
    w.cml_url = cml_url;
    ports::Changes c;
    c.workers.push_back(w);
    ASSERT_TRUE(store->Commit(c));
  }
  void AddInstance(const std::string& id, domain::InstanceState state, std::optional<std::string> lab_id) {
    domain::LabletInstance i = testing::MakeInstance(id);
    i.state = state;
    i.worker_id = domain::WorkerId{"w1"};
    i.cml_lab_id = std::move(lab_id);
    ports::Changes c;
    c.instances.push_back(i);
    ASSERT_TRUE(store->Commit(c));
  }
  void RecordLab(const std::string& instance_id, const std::string& lab_id) {
    auto i = store->GetInstance(domain::InstanceId{instance_id});
    ASSERT_TRUE(i);
    i->cml_lab_id = lab_id;
    ports::Changes c;
    c.instances.push_back(*i);
    ASSERT_TRUE(store->Commit(c));
  }

  // A lab imported as the instantiator imports one, for instance `instance_id`.
  std::string Import(const std::string& instance_id) {
    auto id = cml.ImportLab(Url(), kLabYaml, "lablet " + instance_id);
    EXPECT_TRUE(id) << id.error().message;
    return id ? *id : "";
  }
  // A lab created out of band on cml-sim; `created` null gives one without a creation time.
  std::string Plant(const std::string& title, const std::string& description, json created = "default") {
    json body = {{"title", title}, {"description", description}};
    if (created != "default") body["created"] = created;
    return testing::HttpClient(Url()).PostJson("/sim/labs", body).Json()["id"];
  }
  json Lab(const std::string& id) {
    for (const auto& lab : testing::HttpClient(Url()).Get("/sim/labs").Json())
      if (lab["id"] == id) return lab;
    return nullptr;
  }
  bool Deleted(const std::string& id) { return Lab(id)["deleted"] == true; }
};

// ---- the mark -----------------------------------------------------------------------------

TEST(OrphanMark, NamesTheInstanceOfACcmLabAndNothingElse) {
  EXPECT_EQ(app::MarkedInstance("ccm lablet 0190-abc")->value, "0190-abc");
  EXPECT_EQ(app::MarkedInstance("ccm lablet 0190-abc\nthe author's text")->value, "0190-abc");
  EXPECT_EQ(app::MarkedInstance("ccm lablet 0190-abc\r\nmore")->value, "0190-abc");
  EXPECT_EQ(app::MarkedInstance(ports::LabMark("lablet 0190-abc"))->value, "0190-abc");
  EXPECT_FALSE(app::MarkedInstance(""));
  EXPECT_FALSE(app::MarkedInstance("lablet 0190-abc"));
  EXPECT_FALSE(app::MarkedInstance("ccm lablet "));
  EXPECT_FALSE(app::MarkedInstance("ccm lablet for the CCNA class"));
  EXPECT_FALSE(app::MarkedInstance("CCM lablet 0190-abc"));
  EXPECT_FALSE(app::MarkedInstance(" ccm lablet 0190-abc"));
}

// ---- the CML calls the sweep relies on ----------------------------------------------------

TEST(OrphanCml, ImportMarksTheDescriptionAndKeepsTheTitleAndTheAuthorsText) {
  SweepWorld world;
  const std::string id = world.Import("inst-1");
  auto labs = world.cml.ListLabs(world.Url());
  ASSERT_TRUE(labs) << labs.error().message;
  ASSERT_EQ(labs->size(), 1u);
  EXPECT_EQ((*labs)[0].id, id);
  EXPECT_EQ((*labs)[0].title, "lablet inst-1");
  EXPECT_EQ((*labs)[0].description, "ccm lablet inst-1\na router and nothing else");
  ASSERT_TRUE((*labs)[0].created);
  EXPECT_LT(std::chrono::abs(*(*labs)[0].created - SystemNow()), 1min);
}

TEST(OrphanCml, ALongAuthorsDescriptionIsCutToCmlsLimitAndTheMarkStays) {
  SweepWorld world;
  const std::string yaml =
      "lab:\n  version: 0.2.2\n  description: '" + std::string(5000, 'x') + "'\nnodes: []\nlinks: []\n";
  auto id = world.cml.ImportLab(world.Url(), yaml, "lablet inst-2");
  ASSERT_TRUE(id) << id.error().message;  // cml-sim validates the topology: 4096 at most
  auto labs = world.cml.ListLabs(world.Url());
  ASSERT_TRUE(labs);
  EXPECT_EQ((*labs)[0].description.size(), 4096u);
  EXPECT_EQ(app::MarkedInstance((*labs)[0].description)->value, "inst-2");
}

TEST(OrphanCml, LabListingAndDetailsFollowTheCml29Contract) {
  SweepWorld world;
  world.Import("inst-1");
  world.Plant("someone's lab", "", nullptr);
  const json spec = json::parse(testing::ReadTestData("cml-2.9.openapi.json"));
  testing::HttpClient http(world.Url());
  http.SetBearer(
      http.PostJson("/api/v0/authenticate", {{"username", "admin"}, {"password", "cml-secret"}}).Json());
  auto get = [&](const std::string& path) { return http.Get(path).Json(); };
  const json ids = get("/api/v0/labs?show_all=true");
  ASSERT_EQ(ids.size(), 2u);
  const json& list_schema =
      spec["paths"]["/labs"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
  for (const auto& e : testing::ValidateSchema(spec, list_schema, ids)) ADD_FAILURE() << e;
  for (const auto& id : ids) {
    const json lab = get("/api/v0/labs/" + id.get<std::string>());
    for (const auto& e : testing::ValidateSchema(spec, spec["components"]["schemas"]["LabResponse"], lab))
      ADD_FAILURE() << e << "\n" << lab;
  }
  auto labs = world.cml.ListLabs(world.Url());
  ASSERT_TRUE(labs);
  ASSERT_EQ(labs->size(), 2u);
  EXPECT_EQ((*labs)[1].title, "someone's lab");
  EXPECT_FALSE((*labs)[1].created);  // CML may leave it out
}

// Calls to one worker from many threads at once (the instantiator's) each get an answer, and
// the worker is signed in to once, not once per call; two workers (one sim under two paths)
// get a token each.
TEST(OrphanCml, CallsFromManyThreadsShareOneSignInPerWorker) {
  SweepWorld world;
  const std::vector<std::string> urls = {world.Url() + "/w1", world.Url() + "/w2"};
  std::vector<std::thread> threads;
  std::atomic<int> answered{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      const std::string url = urls[t % 2];
      auto lab = world.cml.ImportLab(url, kLabYaml, "lablet " + std::to_string(t));
      if (!lab) return;
      if (world.cml.StartLab(url, *lab) && world.cml.LabState(url, *lab)) ++answered;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(answered.load(), 8);
  testing::HttpClient http(world.Url());
  EXPECT_EQ(http.Get("/sim/workers").Json()["authentications"], 2);
  EXPECT_EQ(http.Get("/sim/labs").Json().size(), 8u);
}

TEST(OrphanCml, ListingAnUnreachableWorkerIsUnavailable) {
  clients::CmlClient cml({"admin", "cml-secret"});
  auto labs = cml.ListLabs("http://127.0.0.1:" + std::to_string(testing::FreePort()));
  ASSERT_FALSE(labs);
  EXPECT_EQ(labs.error().code, ErrorCode::kUnavailable);
}

// ---- the sweep ----------------------------------------------------------------------------

TEST(OrphanSweep, AMarkedLabPastItsGraceWhoseInstanceIsGoneOrTerminatedIsStoppedWipedAndDeleted) {
  SweepWorld world;
  world.AddWorker("w1", world.Url());
  world.AddInstance("ended", domain::InstanceState::kTerminated, std::nullopt);
  const std::string no_instance = world.Import("never-recorded");
  const std::string terminated = world.Import("ended");
  ASSERT_TRUE(world.cml.StartLab(world.Url(), terminated));
  world.clock.Advance(kGrace + 1min);
  EXPECT_EQ(world.sweep->SweepOnce(), 2);
  for (const auto& id : {no_instance, terminated}) {
    const json lab = world.Lab(id);
    EXPECT_EQ(lab["deleted"], true) << lab;
    EXPECT_EQ(lab["stops"], 1) << lab;
    EXPECT_EQ(lab["wipes"], 1) << lab;
  }
  EXPECT_EQ(world.metrics.removed.load(), 2u);
  EXPECT_EQ(world.metrics.removal_failures.load(), 0u);
  EXPECT_EQ(world.sweep->SweepOnce(), 0);  // nothing left to do
}

TEST(OrphanSweep, AnOrphanWithinItsGraceStaysUntilTheGraceIsOver) {
  SweepWorld world;
  world.AddWorker("w1", world.Url());
  const std::string lab = world.Import("lost");
  world.clock.Advance(kGrace - 1min);
  EXPECT_EQ(world.sweep->SweepOnce(), 0);
  EXPECT_FALSE(world.Deleted(lab));
  world.clock.Advance(2min);
  EXPECT_EQ(world.sweep->SweepOnce(), 1);
  EXPECT_TRUE(world.Deleted(lab));
}

TEST(OrphanSweep, WithoutACreationTimeTheGraceCountsFromTheFirstSweepThatFoundTheOrphan) {
  SweepWorld world;
  world.AddWorker("w1", world.Url());
  const std::string lab = world.Plant("lablet lost", "ccm lablet lost", nullptr);
  world.clock.Advance(1h);  // however old it is, the sweep has not seen it yet
  EXPECT_EQ(world.sweep->SweepOnce(), 0);
  world.clock.Advance(kGrace - 1s);
  EXPECT_EQ(world.sweep->SweepOnce(), 0);
  EXPECT_FALSE(world.Deleted(lab));
  world.clock.Advance(1s);
  EXPECT_EQ(world.sweep->SweepOnce(), 1);
  EXPECT_TRUE(world.Deleted(lab));
}

TEST(OrphanSweep, ALabCreatedLongAgoIsRemovedAtTheFirstSweep) {
  SweepWorld world;
  world.AddWorker("w1", world.Url());
  const std::string lab = world.Plant("lablet lost", "ccm lablet lost\nold", "2026-01-01T00:00:00+00:00");
  EXPECT_EQ(world.sweep->SweepOnce(), 1);
  EXPECT_TRUE(world.Deleted(lab));
}

TEST(OrphanSweep, ALabOwnedByALiveInstanceStays) {
  SweepWorld world;
  world.AddWorker("w1", world.Url());
  const std::string lab = world.Import("live");
  world.AddInstance("live", domain::InstanceState::kRunning, lab);
  ASSERT_TRUE(world.cml.StartLab(world.Url(), lab));
  const std::string archived_lab = world.Import("archived");
  world.AddInstance("archived", domain::InstanceState::kArchived, archived_lab);
  world.clock.Advance(10 * kGrace);
  EXPECT_EQ(world.sweep->SweepOnce(), 0);
  for (const auto& id : {lab, archived_lab}) {
    const json l = world.Lab(id);
    EXPECT_EQ(l["deleted"], false);
    EXPECT_EQ(l["stops"], 0);
  }
  EXPECT_EQ(world.metrics.removed.load(), 0u);
}

TEST(OrphanSweep, ALabOfAnInstanceStillInstantiatingWithoutARecordedLabStaysUntilAnotherLabIsRecorded) {
  SweepWorld world;
  world.AddWorker("w1", world.Url());
  world.AddInstance("starting", domain::InstanceState::kInstantiating, std::nullopt);
  // Imported by a leader deposed before it recorded the id.
  const std::string first = world.Import("starting");
  world.clock.Advance(kGrace - 1s);
  EXPECT_EQ(world.sweep->SweepOnce(), 0);
  world.clock.Advance(1h);  // the import may still be being recorded: the lab is the instance's
  EXPECT_EQ(world.sweep->SweepOnce(), 0);
  EXPECT_FALSE(world.Deleted(first));
  // The next leader imports again and records its own lab: the first one is an orphan.
  const std::string second = world.Import("starting");
  world.RecordLab("starting", second);
  EXPECT_EQ(world.sweep->SweepOnce(), 1);
  EXPECT_TRUE(world.Deleted(first));
  EXPECT_FALSE(world.Deleted(second));
}

TEST(OrphanSweep, ALabWithoutCcmsMarkIsNeverTouchedWhateverItsTitle) {
  SweepWorld world;
  world.AddWorker("w1", world.Url());
  const std::string foreign[] = {
      world.Plant("lablet gone", "", "2026-01-01T00:00:00+00:00"),
      world.Plant("lablet gone", "lablet gone", "2026-01-01T00:00:00+00:00"),
      world.Plant("CCNA practice", "ccm lablet for the CCNA class", "2026-01-01T00:00:00+00:00"),
      world.Plant("notes", "see ccm lablet gone", nullptr),
  };
  for (int i = 0; i < 3; ++i) {
    world.clock.Advance(kGrace);
    EXPECT_EQ(world.sweep->SweepOnce(), 0);
  }
  for (const auto& id : foreign) {
    const json lab = world.Lab(id);
    EXPECT_EQ(lab["deleted"], false) << lab;
    EXPECT_EQ(lab["stops"], 0) << lab;
    EXPECT_EQ(lab["wipes"], 0) << lab;
  }
}

TEST(OrphanSweep, AWorkerWhoseCmlCannotBeReachedIsSkippedAndTheOthersAreSwept) {
  SweepWorld world;
  world.AddWorker("w0-down", "http://127.0.0.1:" + std::to_string(testing::FreePort()));
  world.AddWorker("w1", world.Url());
  const std::string lab = world.Import("lost");
  world.clock.Advance(kGrace + 1min);
  EXPECT_EQ(world.sweep->SweepOnce(), 1);
  EXPECT_TRUE(world.Deleted(lab));
  EXPECT_EQ(world.metrics.unlisted_workers.load(), 1u);
}

TEST(OrphanSweep, OnlyRunningWorkersAreSwept) {
  SweepWorld world;
  world.AddWorker("w1", world.Url(), domain::WorkerState::kStopped);
  const std::string lab = world.Import("lost");
  world.clock.Advance(kGrace + 1min);
  EXPECT_EQ(world.sweep->SweepOnce(), 0);
  EXPECT_FALSE(world.Deleted(lab));
}

TEST(OrphanSweep, AFailedRemovalIsCountedAndRetriedAtTheNextSweep) {
  SweepWorld world({"--fail-stops", "1"});
  world.AddWorker("w1", world.Url());
  const std::string lab = world.Import("lost");
  world.clock.Advance(kGrace + 1min);
  EXPECT_EQ(world.sweep->SweepOnce(), 0);
  EXPECT_EQ(world.metrics.removal_failures.load(), 1u);
  EXPECT_FALSE(world.Deleted(lab));
  EXPECT_EQ(world.sweep->SweepOnce(), 1);
  EXPECT_TRUE(world.Deleted(lab));
  EXPECT_EQ(world.metrics.removed.load(), 1u);
}

TEST(OrphanSweep, StartedItSweepsOnItsOwnThreadUntilStopped) {
  SweepWorld world;
  world.AddWorker("w1", world.Url());
  const std::string lab = world.Import("lost");
  world.clock.Advance(kGrace + 1min);
  world.sweep->Start();
  EXPECT_TRUE(testing::Eventually([&] { return world.metrics.removed.load() == 1; }));
  world.sweep->Stop();
  EXPECT_TRUE(world.Deleted(lab));
}

}  // namespace
}  // namespace ccm
