// `ccm backup`: a consistent copy of the SQLite store taken while ccm serves and writes, that a
// new ccm serves from; and the refusals, each with its exit code.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace ccm {
namespace {

using nlohmann::json;

std::string CreateInstance(testing::HttpClient& http, const std::string& def_id, int n) {
  const json inst = {{"definition_id", def_id}, {"owner_id", "c" + std::to_string(n)},
                     {"timeslot_start", "2026-12-01T09:00:00Z"}, {"timeslot_end", "2026-12-01T10:00:00Z"}};
  const auto r = http.PostJson("/api/v1/instances", inst);
  return r.status == 201 ? r.Json()["id"].get<std::string>() : std::string();
}

TEST(Backup, CopiesTheStoreWhileCcmWritesAndANewCcmServesTheCopy) {
  testing::TempDir dir;
  const std::string db = dir.File("ccm.db"), copy = dir.File("copy.db");
  std::vector<std::string> before;
  std::string def_id;
  std::atomic<int> written_during{0};
  {
    testing::CcmProcess ccm(dir.path(), {{"CCM_STORE", "sqlite:" + db}, {"CCM_RECONCILERS", "false"}});
    testing::HttpClient http(ccm.BaseUrl());
    const json def = {{"name", "lab"}, {"version", "1.0.0"}, {"lab_yaml", "nodes: [{id: n0, label: r1}]"},
                      {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}},
                      {"license_affinity", {"ENTERPRISE"}}, {"max_duration_minutes", 60}, {"created_by", "test"}};
    def_id = http.PostJson("/api/v1/definitions", def).Json()["id"];
    for (int n = 0; n < 20; ++n) before.push_back(CreateInstance(http, def_id, n));
    // Writes go on while the copy is taken: the copy is one committed state, whichever.
    std::atomic<bool> stop{false};
    std::thread writer([&] {
      testing::HttpClient w(ccm.BaseUrl());
      for (int n = 100; !stop; ++n)
        if (!CreateInstance(w, def_id, n).empty()) ++written_during;
    });
    while (written_during == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto [rc, out] = testing::RunCcm("backup --store sqlite:" + db + " --to " + copy);
    stop = true;
    writer.join();
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find(db + " -> " + copy), std::string::npos) << out;
    EXPECT_NE(out.find("schema version"), std::string::npos) << out;
    EXPECT_GT(written_during.load(), 0);

    // Never overwritten: the same target again is refused and left as it was.
    std::ifstream in(copy, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto [again_rc, again] = testing::RunCcm("backup --store sqlite:" + db + " --to " + copy);
    EXPECT_EQ(again_rc, 2);
    EXPECT_NE(again.find("exists; nothing is overwritten"), std::string::npos) << again;
    std::ifstream in2(copy, std::ios::binary);
    EXPECT_EQ(bytes, std::string((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>()));
  }
  struct stat st {};
  ASSERT_EQ(stat(copy.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // device secrets and bookings: ccm's user alone

  // A ccm on the copy has everything written before the backup started.
  testing::CcmProcess restored(dir.path(), {{"CCM_STORE", "sqlite:" + copy}, {"CCM_RECONCILERS", "false"}});
  testing::HttpClient http(restored.BaseUrl());
  EXPECT_EQ(http.Get("/api/v1/definitions/" + def_id).status, 200);
  for (const auto& id : before) {
    ASSERT_FALSE(id.empty());
    EXPECT_EQ(http.Get("/api/v1/instances/" + id).status, 200) << id;
  }
  int stored = 0;
  std::string after;
  for (;;) {
    const auto page = http.Get("/api/v1/instances?limit=100" + (after.empty() ? "" : "&after=" + after)).Json();
    stored += static_cast<int>(page["items"].size());
    if (!page.contains("next") || page["next"].is_null()) break;
    after = page["next"].get<std::string>();
  }
  EXPECT_GE(stored, 20);
  EXPECT_LE(stored, 20 + written_during.load());
}

TEST(Backup, RefusesWhatItCannotCopy) {
  testing::TempDir dir;
  {
    const auto [rc, out] = testing::RunCcm("backup --store sqlite:" + dir.File("absent.db") + " --to " + dir.File("x.db"));
    EXPECT_EQ(rc, 1);
    EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
    EXPECT_FALSE(std::ifstream(dir.File("x.db")).good());
  }
  {
    const auto [rc, out] = testing::RunCcm("backup --store etcd:http://127.0.0.1:2379 --to " + dir.File("x.db"));
    EXPECT_EQ(rc, 2);
    EXPECT_NE(out.find("etcdctl snapshot save"), std::string::npos) << out;
  }
  {
    const auto [rc, out] = testing::RunCcm("backup --store postgres:db --to " + dir.File("x.db"));
    EXPECT_EQ(rc, 2);
    EXPECT_NE(out.find("must be sqlite:PATH"), std::string::npos) << out;
  }
  {
    const auto [rc, out] = testing::RunCcm("backup --store sqlite:" + dir.File("a.db"));
    EXPECT_EQ(rc, 2);  // a usage error: a required option is missing
    EXPECT_NE(out.find("--to"), std::string::npos) << out;
  }
  {
    // The store from the settings, as serve reads them.
    std::ofstream(dir.File("ccm.yaml")) << "CCM_STORE: sqlite:" << dir.File("absent.db") << "\n";
    const auto [rc, out] = testing::RunCcm("backup --config " + dir.File("ccm.yaml") + " --to " + dir.File("y.db"));
    EXPECT_EQ(rc, 1);
    EXPECT_NE(out.find(dir.File("absent.db") + " does not exist"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace ccm
