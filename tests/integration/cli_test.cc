// The `ccm` commands that call a running ccm (instances, workers, definitions), run as a
// user runs them: the real binary against a real `ccm serve` over loopback, or against a fake
// server for the answers ccm itself never gives.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>

#include "domain/time.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"

namespace ccm {
namespace {

using nlohmann::json;

struct Ran {
  int rc = -1;
  std::string out;  // stdout
  std::string err;  // stderr
  json Json() const { return json::parse(out, nullptr, false); }
};

// Runs `env ccm args < input` in a shell (`env` a list of NAME=value words, `input` a file,
// none: /dev/null); stdout and stderr apart.
Ran Ccm(const testing::TempDir& dir, const std::string& args, const std::string& env = "",
        const std::string& input = "") {
  static std::mutex mu;  // one error file per directory
  std::lock_guard lock(mu);
  const std::string err_file = dir.File("stderr");
  const std::string command = (env.empty() ? "" : "env " + env + " ") + CCM_BINARY + " " + args + " < " +
                              (input.empty() ? "/dev/null" : input) + " 2> " + err_file;
  Ran run;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return run;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) run.out.append(buf, n);
  const int status = pclose(p);
  run.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(err_file);
  std::stringstream text;
  text << in.rdbuf();
  run.err = text.str();
  return run;
}

std::string In(std::chrono::hours h) {
  return FormatRfc3339(std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()) + h);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool Has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const json kWorker = {{"name", "w1"},
                      {"hostname", "w1"},
                      {"cml_url", "http://w1"},
                      {"license_type", "ENTERPRISE"},
                      {"capacity", {{"cpu_cores", 4}, {"memory_gb", 8}, {"max_nodes", 10}}},
                      {"port_range", {{"start", 5000}, {"end", 5009}}},
                      {"state", "RUNNING"}};
const json kDefinition = {{"name", "lab"},
                          {"version", "1.0.0"},
                          {"lab_yaml", "nodes: [{id: n0, label: r1}]"},
                          {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}},
                          {"license_affinity", {"ENTERPRISE"}},
                          {"max_duration_minutes", 60},
                          {"created_by", "test"}};

// One ccm (SQLite, no reconcilers: only what a test does is written) per test.
class CliCommands : public ::testing::Test {
 protected:
  CliCommands()
      : ccm_(dir_.path(), {{"CCM_STORE", "sqlite:" + dir_.File("ccm.db")},
                           {"CCM_RECONCILERS", "false"},
                           // A pod may be asked for; nothing calls the engine without the reconcilers.
                           {"GRADING_ENGINE_URL", "http://127.0.0.1:9"}}),
        http_(ccm_.BaseUrl()) {}

  Ran Ccm(const std::string& args, const std::string& input = "") {
    return ccm::Ccm(dir_, args + " --url " + ccm_.BaseUrl(), "", input);
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.File(name)) << text;
    return dir_.File(name);
  }
  std::string SeedDefinition() { return http_.PostJson("/api/v1/definitions", kDefinition).Json()["id"]; }
  std::string SeedWorker() { return http_.PostJson("/api/v1/workers", kWorker).Json()["id"]; }

  testing::TempDir dir_;
  testing::CcmProcess ccm_;
  testing::HttpClient http_;
};

TEST_F(CliCommands, DefinitionsFromAYamlFileInEveryFormat) {
  const std::string file = Write("def.yaml",
                                 "name: lab\n"
                                 "version: \"1.0.0\"\n"
                                 "lab_yaml: |\n"
                                 "  nodes: [{id: n0, label: r1}]\n"
                                 "resource_requirements: {cpu_cores: 1, memory_gb: 1.5}\n"
                                 "license_affinity: [ENTERPRISE]\n"
                                 "max_duration_minutes: 60\n"
                                 "created_by: test\n");
  const Ran created = Ccm("definitions create -f " + file + " -o json");
  ASSERT_EQ(created.rc, 0) << created.err;
  const json def = created.Json();
  ASSERT_TRUE(def.is_object()) << created.out;
  EXPECT_EQ(def["version"], "1.0.0");  // quoted in YAML: a string, not the number 1.0
  EXPECT_EQ(def["lab_yaml"], "nodes: [{id: n0, label: r1}]\n");
  EXPECT_EQ(def["resource_requirements"]["memory_gb"], 1.5);
  EXPECT_EQ(def["max_duration_minutes"], 60);
  const std::string id = def["id"];

  const Ran listed = Ccm("definitions list");
  ASSERT_EQ(listed.rc, 0) << listed.err;
  const auto lines = Lines(listed.out);
  ASSERT_EQ(lines.size(), 2u) << listed.out;
  EXPECT_EQ(lines[0].rfind("ID", 0), 0u) << listed.out;
  // Aligned: each column starts where its header does.
  EXPECT_EQ(lines[0].find("VERSION"), lines[1].find("1.0.0")) << listed.out;
  EXPECT_EQ(lines[0].find("NAME"), lines[1].find("lab")) << listed.out;
  EXPECT_EQ(lines[1].rfind(id, 0), 0u) << listed.out;

  const Ran yaml = Ccm("definitions get " + id + " -o yaml");
  ASSERT_EQ(yaml.rc, 0) << yaml.err;
  EXPECT_TRUE(Has(yaml.out, "version: \"1.0.0\"")) << yaml.out;
  EXPECT_TRUE(Has(yaml.out, "max_duration_minutes: 60")) << yaml.out;
  const YAML::Node node = YAML::Load(yaml.out);
  EXPECT_EQ(node["id"].as<std::string>(), id);
  EXPECT_EQ(node["lab_yaml"].as<std::string>(), "nodes: [{id: n0, label: r1}]\n");
  EXPECT_EQ(node["license_affinity"][0].as<std::string>(), "ENTERPRISE");
  EXPECT_TRUE(node["grading_rules_uri"].IsNull());

  const Ran version = Ccm("definitions get " + id + " --version 1.0.0 -o json");
  EXPECT_EQ(version.rc, 0) << version.err;
  EXPECT_EQ(version.Json()["id"], id);
  EXPECT_EQ(Ccm("definitions get " + id + " --version 9.9.9").rc, 3);

  const Ran deleted = Ccm("definitions delete " + id);
  EXPECT_EQ(deleted.rc, 0) << deleted.err;
  EXPECT_EQ(deleted.out, "definition " + id + " deleted (lab 1.0.0)\n");
  EXPECT_EQ(Ccm("definitions list -o json").Json()["items"].size(), 0u);
  const Ran all = Ccm("definitions list --include-deleted --name lab");
  EXPECT_TRUE(Has(all.out, "lab (deleted)")) << all.out;
}

TEST_F(CliCommands, DefinitionsFromOptionsAndALabFile) {
  const std::string lab = Write("lab.yaml", "nodes: [{id: n0, label: r1}]\n");
  const Ran created = Ccm("definitions create --name opt --version 2.0.0 --lab-yaml " + lab +
                          " --cpu-cores 2 --memory-gb 4 --license ENTERPRISE --license PERSONAL "
                          "--max-duration-minutes 90 --created-by ops -o json");
  ASSERT_EQ(created.rc, 0) << created.err;
  const json def = created.Json();
  EXPECT_EQ(def["version"], "2.0.0");
  EXPECT_EQ(def["lab_yaml"], "nodes: [{id: n0, label: r1}]\n");
  EXPECT_EQ(def["resource_requirements"]["cpu_cores"], 2);
  EXPECT_EQ(def["license_affinity"], json({"ENTERPRISE", "PERSONAL"}));
  EXPECT_EQ(def["max_duration_minutes"], 90);
}

TEST_F(CliCommands, WorkersCreateListDrainAndDelete) {
  const Ran created = Ccm(
      "workers create --name w1 --hostname w1 --cml-url http://w1 --license-type ENTERPRISE --cpu-cores 4 "
      "--memory-gb 8 --max-nodes 10 --port-start 5000 --port-end 5009 --state RUNNING -o yaml");
  ASSERT_EQ(created.rc, 0) << created.err;
  EXPECT_TRUE(Has(created.out, "state: RUNNING")) << created.out;
  const std::string id = YAML::Load(created.out)["id"].as<std::string>();

  const Ran listed = Ccm("workers list");
  ASSERT_EQ(listed.rc, 0) << listed.err;
  const auto lines = Lines(listed.out);
  ASSERT_EQ(lines.size(), 2u) << listed.out;
  for (const char* column : {"ID", "NAME", "STATE", "LICENSE", "CPU", "MEMORY_GB", "NODES", "PORTS"})
    EXPECT_TRUE(Has(lines[0], column)) << column;
  EXPECT_EQ(lines[0].find("CPU"), lines[1].find("0/4")) << listed.out;
  EXPECT_TRUE(Has(lines[1], "0/10")) << listed.out;
  EXPECT_TRUE(Has(lines[1], "5000-5009 (0 used)")) << listed.out;

  const Ran got = Ccm("workers get " + id + " -o json");
  ASSERT_EQ(got.rc, 0) << got.err;
  EXPECT_EQ(got.Json()["capacity"]["cpu_cores"], 4);
  EXPECT_EQ(Ccm("workers list -o json").Json()["items"].size(), 1u);

  const Ran drained = Ccm("workers drain " + id + " --reason maintenance");
  EXPECT_EQ(drained.rc, 0) << drained.err;
  EXPECT_EQ(drained.out, "worker " + id + ": RUNNING -> DRAINING\n");
  const Ran deleted = Ccm("workers delete " + id);
  EXPECT_EQ(deleted.rc, 0) << deleted.err;
  EXPECT_EQ(deleted.out, "worker " + id + ": DRAINING -> STOPPING\n");
  const Ran again = Ccm("workers delete " + id);
  EXPECT_EQ(again.rc, 0) << again.err;
  EXPECT_EQ(again.out, "worker " + id + ": already STOPPING\n");
  const json history = http_.Get("/api/v1/workers/" + id).Json()["state_history"];
  EXPECT_EQ(history[history.size() - 2]["reason"], "maintenance") << history.dump();
  // A STOPPED worker is released for good.
  ASSERT_EQ(http_.PostJson("/api/internal/workers/" + id + "/transition", {{"to", "STOPPED"}}).status, 200);
  const Ran released = Ccm("workers delete " + id + " -o json");
  EXPECT_EQ(released.rc, 0) << released.err;
  EXPECT_EQ(released.Json()["state"], "TERMINATED") << released.out;
  EXPECT_EQ(Ccm("workers delete " + id).out, "worker " + id + ": already TERMINATED\n");
  // Nothing but RUNNING drains.
  const Ran stale = Ccm("workers drain " + id);
  EXPECT_EQ(stale.rc, 4) << stale.err;
  EXPECT_TRUE(Has(stale.err, "409 Conflict")) << stale.err;
}

TEST_F(CliCommands, AWorkerThatHoldsAnInstanceIsNotDeleted) {
  const std::string worker = SeedWorker();
  const std::string def = SeedDefinition();
  const json instance = {{"definition_id", def}, {"owner_id", "c1"}, {"timeslot_start", In(std::chrono::hours(24))},
                         {"timeslot_end", In(std::chrono::hours(25))}};
  const std::string id = http_.PostJson("/api/v1/instances", instance).Json()["id"];
  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", worker}}).status, 200);
  const Ran refused = Ccm("workers delete " + worker);
  EXPECT_EQ(refused.rc, 4) << refused.out << refused.err;
  EXPECT_TRUE(Has(refused.err, "409 Conflict: worker " + worker + " still has 1 active instances")) << refused.err;
  EXPECT_TRUE(Has(refused.err, "field: state")) << refused.err;
  EXPECT_EQ(refused.out, "");
  EXPECT_EQ(http_.Get("/api/v1/workers/" + worker).Json()["state"], "RUNNING");
  const Ran listed = Ccm("workers list");
  EXPECT_TRUE(Has(listed.out, "1/4")) << listed.out;
}

TEST_F(CliCommands, InstancesFromStdinWithPagingAndEnding) {
  SeedWorker();
  const std::string def = SeedDefinition();
  const std::string start = In(std::chrono::hours(24)), end = In(std::chrono::hours(25));
  const std::string body = Write("instance.json", json{{"definition_id", def},
                                                       {"owner_id", "from-file"},
                                                       {"timeslot_start", start},
                                                       {"timeslot_end", end}}
                                                      .dump());
  // -f - reads stdin; an option overrides the document's field.
  const Ran first = Ccm("instances create -f - --owner-id cand-0 --idempotency-key key-1 -o json", body);
  ASSERT_EQ(first.rc, 0) << first.err;
  EXPECT_EQ(first.Json()["owner_id"], "cand-0");
  const std::string id = first.Json()["id"];
  const Ran retried = Ccm("instances create -f - --owner-id cand-0 --idempotency-key key-1 -o json", body);
  EXPECT_EQ(retried.rc, 0) << retried.err;
  EXPECT_EQ(retried.Json()["id"], id);  // the same instance, not a second one
  for (int n = 1; n < 5; ++n) {
    const Ran more = Ccm("instances create --definition-id " + def + " --owner-id cand-" + std::to_string(n) +
                         " --start " + start + " --end " + end);
    ASSERT_EQ(more.rc, 0) << more.err;
    EXPECT_EQ(Lines(more.out).size(), 2u) << more.out;  // the header and its row
  }

  const Ran page = Ccm("instances list --limit 2 -o json");
  ASSERT_EQ(page.rc, 0) << page.err;
  EXPECT_EQ(page.Json()["items"].size(), 2u);
  ASSERT_TRUE(page.Json()["next"].is_string()) << page.out;
  const Ran second = Ccm("instances list --limit 2 --after " + page.Json()["next"].get<std::string>() + " -o json");
  EXPECT_EQ(second.Json()["items"].size(), 2u) << second.out;
  EXPECT_NE(second.Json()["items"][0]["id"], page.Json()["items"][0]["id"]);
  const Ran all = Ccm("instances list --limit 2 --all -o json");
  ASSERT_EQ(all.rc, 0) << all.err;
  EXPECT_EQ(all.Json()["items"].size(), 5u) << all.out;
  EXPECT_TRUE(all.Json()["next"].is_null());
  const Ran table = Ccm("instances list --limit 2");
  const auto lines = Lines(table.out);
  ASSERT_EQ(lines.size(), 4u) << table.out;
  for (const char* column : {"ID", "STATE", "WORKER", "OWNER", "START", "END", "AGE"})
    EXPECT_TRUE(Has(lines[0], column)) << column;
  EXPECT_EQ(lines[3].rfind("# more: --after ", 0), 0u) << table.out;
  EXPECT_TRUE(Has(lines[1], "PENDING")) << table.out;
  EXPECT_EQ(lines[0].find("START"), lines[1].find(start.substr(0, 10))) << table.out;
  const Ran owned = Ccm("instances list --owner-id cand-3 --state PENDING -o yaml");
  ASSERT_EQ(owned.rc, 0) << owned.err;
  const YAML::Node items = YAML::Load(owned.out)["items"];
  ASSERT_EQ(items.size(), 1u) << owned.out;
  EXPECT_EQ(items[0]["owner_id"].as<std::string>(), "cand-3");
  EXPECT_TRUE(Has(owned.out, "timeslot_start: \"" + start + "\"")) << owned.out;  // a date stays a string

  const Ran got = Ccm("instances get " + id);
  ASSERT_EQ(got.rc, 0) << got.err;
  EXPECT_TRUE(Has(got.out, "cand-0")) << got.out;
  const Ran ended = Ccm("instances delete " + id);
  EXPECT_EQ(ended.rc, 0) << ended.err;
  EXPECT_EQ(ended.out, "instance " + id + ": termination requested (state TERMINATED)\n");
  EXPECT_EQ(http_.Get("/api/v1/instances/" + id).Json()["state"], "TERMINATED");
}

TEST_F(CliCommands, CollectAndAssignPodOnARunningInstance) {
  const std::string worker = SeedWorker();
  const std::string def = SeedDefinition();
  const Ran created = Ccm("instances create --definition-id " + def + " --owner-id c1 --session-id s1 --part-id p1" +
                          " --start " + In(std::chrono::hours(24)) + " --end " + In(std::chrono::hours(25)) +
                          " -o json");
  ASSERT_EQ(created.rc, 0) << created.err;
  EXPECT_EQ(created.Json()["assessment"], json({{"session_id", "s1"}, {"part_id", "p1"}}));
  const std::string id = created.Json()["id"];

  // Not RUNNING yet: both refused, exit 4, naming the field.
  const Ran early = Ccm("instances collect " + id);
  EXPECT_EQ(early.rc, 4) << early.err;
  EXPECT_TRUE(Has(early.err, "only a RUNNING instance can be collected")) << early.err;
  EXPECT_TRUE(Has(early.err, "field: state")) << early.err;
  EXPECT_EQ(Ccm("instances assign-pod " + id).rc, 4);

  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", worker}}).status, 200);
  for (const char* to : {"INSTANTIATING", "RUNNING"})
    ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", to}}).status, 200) << to;
  const Ran pod = Ccm("instances assign-pod " + id + " -o json");
  EXPECT_EQ(pod.rc, 0) << pod.err;
  EXPECT_EQ(pod.Json()["state"], "RUNNING");
  EXPECT_TRUE(pod.Json()["pod_due_at"].is_string()) << pod.out;
  const Ran collected = Ccm("instances collect " + id + " --reason manual --triggered-by ops");
  EXPECT_EQ(collected.rc, 0) << collected.err;
  EXPECT_TRUE(Has(collected.out, "COLLECTING")) << collected.out;
  EXPECT_TRUE(Has(collected.out, worker)) << collected.out;
  const json history = http_.Get("/api/v1/instances/" + id).Json()["state_history"];
  EXPECT_EQ(history.back()["actor"], "ops") << history.dump();
}

TEST_F(CliCommands, ExitCodesAndProblemsFromTheBody) {
  const Ran missing = Ccm("instances get 00000000-0000-0000-0000-000000000000");
  EXPECT_EQ(missing.rc, 3);
  EXPECT_EQ(missing.out, "");
  EXPECT_TRUE(Has(missing.err, "ccm instances get: 404 Not found: instance 00000000-0000-0000-0000-000000000000 "
                               "not found"))
      << missing.err;
  EXPECT_EQ(Ccm("workers delete nope").rc, 3);
  EXPECT_EQ(Ccm("definitions delete nope").rc, 3);

  // The problem names the field and its rule; nothing is written.
  const Ran invalid = Ccm("instances create --owner-id c1");
  EXPECT_EQ(invalid.rc, 5);
  EXPECT_TRUE(Has(invalid.err, "400 Invalid request: definition_id is required")) << invalid.err;
  EXPECT_TRUE(Has(invalid.err, "  field: definition_id\n")) << invalid.err;
  EXPECT_EQ(http_.Get("/api/v1/instances").Json()["items"].size(), 0u);
  const Ran bad_worker = Ccm("workers create -f -", Write("w.yaml", "name: w\ncapacity: {cpu_cores: many}\n"));
  EXPECT_EQ(bad_worker.rc, 5);
  EXPECT_TRUE(Has(bad_worker.err, "field: ")) << bad_worker.err;
  const Ran filter = Ccm("instances list --state SLEEPING");
  EXPECT_EQ(filter.rc, 5);
  EXPECT_TRUE(Has(filter.err, "field: state")) << filter.err;
  const Ran unparsable = Ccm("definitions create -f " + Write("broken.yaml", "name: [unclosed\n"));
  EXPECT_EQ(unparsable.rc, 5);
  EXPECT_TRUE(Has(unparsable.err, "broken.yaml: not valid YAML")) << unparsable.err;
  const Ran broken_json = Ccm("definitions create -f " + Write("broken.json", "{\"name\": \"x\""));
  EXPECT_EQ(broken_json.rc, 5);
  EXPECT_TRUE(Has(broken_json.err, "not valid JSON")) << broken_json.err;
  EXPECT_EQ(Ccm("definitions create -f " + dir_.File("absent.yaml")).rc, 5);

  // Usage errors: nothing is sent.
  EXPECT_EQ(Ccm("instances get").rc, 2);
  EXPECT_EQ(Ccm("instances frob").rc, 2);
  EXPECT_EQ(Ccm("instances list -o xml").rc, 2);
  EXPECT_EQ(Ccm("instances list --limit 0").rc, 2);
  EXPECT_EQ(Ccm("instances collect x --reason bored").rc, 2);
  EXPECT_EQ(ccm::Ccm(dir_, "instances").rc, 2);
  EXPECT_EQ(Ccm("events replay").rc, 2);

  // Nothing listens there.
  const Ran unreachable = ccm::Ccm(dir_, "workers list --url http://127.0.0.1:" + std::to_string(testing::FreePort()));
  EXPECT_EQ(unreachable.rc, 7);
  EXPECT_TRUE(Has(unreachable.err, "ccm workers list: GET http://127.0.0.1:")) << unreachable.err;

  // A ccm with authentication on and no token.
  testing::TempDir other;
  testing::CcmProcess guarded(other.path(), {{"CCM_STORE", "sqlite:" + other.File("ccm.db")}}, /*authenticated=*/true);
  const Ran denied = ccm::Ccm(dir_, "instances list --url " + guarded.BaseUrl());
  EXPECT_EQ(denied.rc, 6);
  EXPECT_TRUE(Has(denied.err, "401 Unauthorized")) << denied.err;
}

// The answers ccm itself never gives (5xx from a proxy, 412, 428, an `errors` list), from a
// fake server that records what the command sent.
class CliAgainstAFake : public ::testing::Test {
 protected:
  CliAgainstAFake()
      : fake_([this](http::Request& r) {
          std::lock_guard lock(mu_);
          auto header = [&r](const char* name) {
            auto it = r.headers.find(name);
            return it == r.headers.end() ? std::string() : it->second;
          };
          seen_.push_back({r.method, r.path, r.query, header("authorization"), header("idempotency-key"), r.body});
          http::Response resp;
          resp.status = status_;
          resp.content_type = status_ < 300 ? "application/json" : "application/problem+json";
          resp.body = body_;
          return resp;
        }) {}

  struct Seen {
    std::string method, path;
    std::map<std::string, std::string> query;
    std::string authorization, idempotency_key, body;
  };
  void Answer(int status, json body) {
    std::lock_guard lock(mu_);
    status_ = status;
    body_ = body.dump();
  }
  Seen Last() {
    std::lock_guard lock(mu_);
    return seen_.empty() ? Seen{} : seen_.back();
  }
  Ran Ccm(const std::string& args, const std::string& env = "", const std::string& input = "") {
    return ccm::Ccm(dir_, args, env, input);
  }

  testing::TempDir dir_;
  std::mutex mu_;
  int status_ = 200;
  std::string body_ = R"({"items": [], "next": null})";
  std::vector<Seen> seen_;
  testing::FakeServer fake_;
};

TEST_F(CliAgainstAFake, EveryStatusHasItsExitCode) {
  const std::vector<std::pair<int, int>> expected = {{500, 1}, {503, 1}, {405, 1}, {404, 3}, {409, 4}, {412, 4},
                                                     {428, 4}, {400, 5}, {413, 5}, {415, 5}, {422, 5}, {401, 6},
                                                     {403, 6}};
  for (const auto& [status, code] : expected) {
    Answer(status, {{"title", "T"}, {"status", status}, {"detail", "because"}});
    const Ran run = Ccm("workers get w --url " + fake_.Url());
    EXPECT_EQ(run.rc, code) << status << " " << run.err;
    EXPECT_TRUE(Has(run.err, "ccm workers get: " + std::to_string(status) + " T: because")) << run.err;
  }
  // A 2xx that is not JSON: not a ccm.
  {
    std::lock_guard lock(mu_);
    status_ = 200;
    body_ = "<html>";
  }
  const Ran html = Ccm("workers list --url " + fake_.Url());
  EXPECT_EQ(html.rc, 1);
  EXPECT_TRUE(Has(html.err, "not JSON")) << html.err;
}

TEST_F(CliAgainstAFake, AnErrorsListIsPrinted) {
  Answer(422, {{"title", "Unprocessable content"},
               {"status", 422},
               {"detail", "2 of 3 refused"},
               {"field", "items"},
               {"errors",
                {{{"id", "e1"}, {"status", 422}, {"field", "data.score"}, {"detail", "data.score must be a number"}},
                 {{"id", "e2"}, {"status", 409}, {"detail", "illegal move"}}}}});
  const Ran run = Ccm("instances create --owner-id x --url " + fake_.Url());
  EXPECT_EQ(run.rc, 5);
  EXPECT_TRUE(Has(run.err, "422 Unprocessable content: 2 of 3 refused\n  field: items\n")) << run.err;
  EXPECT_TRUE(Has(run.err, "  - id=e1 status=422 field=data.score: data.score must be a number\n")) << run.err;
  EXPECT_TRUE(Has(run.err, "  - id=e2 status=409: illegal move\n")) << run.err;
}

TEST_F(CliAgainstAFake, UrlAndTokenFromTheEnvironmentOrOptionsBeforeOrAfterTheVerb) {
  const Ran from_env = Ccm("workers list", "CCM_URL=" + fake_.Url() + " CCM_TOKEN=t-env");
  EXPECT_EQ(from_env.rc, 0) << from_env.err;
  EXPECT_EQ(Last().path, "/api/v1/workers");
  EXPECT_EQ(Last().authorization, "Bearer t-env");
  const Ran option_wins = Ccm("workers list --token t-opt --url " + fake_.Url(), "CCM_URL=http://127.0.0.1:9 CCM_TOKEN=t-env");
  EXPECT_EQ(option_wins.rc, 0) << option_wins.err;
  EXPECT_EQ(Last().authorization, "Bearer t-opt");
  const Ran before = Ccm("workers --url " + fake_.Url() + " -o json list --limit 7 --after x");
  EXPECT_EQ(before.rc, 0) << before.err;
  EXPECT_EQ(Last().query, (std::map<std::string, std::string>{{"limit", "7"}, {"after", "x"}}));
  EXPECT_EQ(Last().authorization, "");
  EXPECT_EQ(json::parse(before.out), json::parse(R"({"items": [], "next": null})"));
  const Ran events = Ccm("events list --subject a/b", "CCM_URL=" + fake_.Url());
  EXPECT_EQ(events.rc, 0) << events.err;
  EXPECT_EQ(Last().path, "/api/v1/events");
  EXPECT_EQ(Last().query, (std::map<std::string, std::string>{{"subject", "a/b"}, {"limit", "50"}}));
  // The default: the local ccm's port.
  const Ran local = Ccm("workers list --url " + fake_.Url() + " --help");
  EXPECT_TRUE(Has(local.out, "http://127.0.0.1:8080")) << local.out;
}

TEST_F(CliAgainstAFake, CreateSendsTheDocumentTheOptionsAndTheKey) {
  Answer(201, {{"id", "i1"}, {"state", "PENDING"}});
  const std::string yaml = dir_.File("i.yaml");
  std::ofstream(yaml) << "owner_id: \"007\"\nreservation_id: r1\nassessment:\n  session_id: s\n  part_id: 12\n"
                         "flag: true\nnothing: ~\ntimeslot_start: 2026-12-01T09:00:00Z\n";
  const Ran run = Ccm("instances create -f " + yaml + " --idempotency-key k-9 --part-id p --url " + fake_.Url());
  EXPECT_EQ(run.rc, 0) << run.err;
  const Seen seen = Last();
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.idempotency_key, "k-9");
  const json body = json::parse(seen.body);
  EXPECT_EQ(body["owner_id"], "007");  // quoted: still a string
  EXPECT_EQ(body["assessment"], json({{"session_id", "s"}, {"part_id", "p"}}));  // the option wins
  EXPECT_EQ(body["flag"], true);
  EXPECT_TRUE(body["nothing"].is_null());
  EXPECT_EQ(body["timeslot_start"], "2026-12-01T09:00:00Z");
  EXPECT_TRUE(Has(run.out, "i1")) << run.out;
}

TEST_F(CliAgainstAFake, AllFollowsNextToTheLastPage) {
  // Pages chosen by ?after=: 1 -> 2 -> 3, the last with no next.
  testing::FakeServer pages([](http::Request& r) {
    const auto after = r.query.count("after") ? r.query.at("after") : "";
    json page = {{"items", {{{"id", after.empty() ? "a" : after == "a" ? "b" : "c"}}}}};
    page["next"] = after == "b" ? json(nullptr) : json(after.empty() ? "a" : "b");
    http::Response resp;
    resp.body = page.dump();
    return resp;
  });
  const Ran all = Ccm("definitions list --all -o json --url " + pages.Url());
  ASSERT_EQ(all.rc, 0) << all.err;
  EXPECT_EQ(all.Json()["items"], json::parse(R"([{"id": "a"}, {"id": "b"}, {"id": "c"}])"));
  const Ran one = Ccm("definitions list --url " + pages.Url());
  EXPECT_TRUE(Has(one.out, "# more: --after a (or --all)")) << one.out;
}

TEST(CliHelp, SaysTheExitCodesAndTheEnvironment) {
  testing::TempDir dir;
  for (const std::string args : {"--help", "instances --help"}) {
    const Ran help = Ccm(dir, args);
    EXPECT_EQ(help.rc, 0) << args;
    EXPECT_TRUE(Has(help.out, "7  cannot reach ccm")) << help.out;
    EXPECT_TRUE(Has(help.out, "CCM_URL")) << help.out;
  }
  const Ran version = Ccm(dir, "--version");
  EXPECT_EQ(version.rc, 0);
  EXPECT_EQ(version.out.rfind("ccm ", 0), 0u) << version.out;
}

}  // namespace
}  // namespace ccm
