// Micro-benchmarks of the hot paths: state checks, lab YAML, port allocation, the JSON
// codec, and durable commits (single and concurrent, which group commit shares).
#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "domain/lab_yaml.h"
#include "domain/lifecycle.h"
#include "domain/pod.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "store/sqlite/sqlite_store.h"
#include "wire/aggregates.h"

namespace ccm {
namespace {

using namespace ccm::domain;

std::string SampleTemplate() {
  std::ifstream in(std::string(CCM_TEST_DATA) + "/sample_lab_template.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void BM_IsLegalMove(benchmark::State& state) {
  int legal = 0;
  for (auto _ : state)
    for (InstanceState from : kAllInstanceStates)
      for (InstanceState to : kAllInstanceStates) legal += IsLegalMove(from, to);
  benchmark::DoNotOptimize(legal);
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_IsLegalMove);

void BM_ParseSampleLab(benchmark::State& state) {
  const std::string yaml = SampleTemplate();
  for (auto _ : state) benchmark::DoNotOptimize(ParseLab(yaml));
}
BENCHMARK(BM_ParseSampleLab);

void BM_RewriteSampleLab(benchmark::State& state) {
  const std::string yaml = SampleTemplate();
  const PortMap ports{{"serial_1", 5041}, {"serial_2", 5042}, {"vnc_1", 5044}};
  for (auto _ : state) benchmark::DoNotOptimize(RewriteLab(yaml, ports));
}
BENCHMARK(BM_RewriteSampleLab);

void BM_BuildPodSample(benchmark::State& state) {
  const LabInfo lab = *ParseLab(SampleTemplate());
  const PortMap ports{{"serial_1", 5041}, {"serial_2", 5042}, {"vnc_1", 5044}};
  for (auto _ : state) benchmark::DoNotOptimize(BuildPod(lab, ports, "203.0.113.10", "instance", "ccm"));
}
BENCHMARK(BM_BuildPodSample);

void BM_BuildPod500Nodes(benchmark::State& state) {
  LabInfo lab;
  PortMap ports;
  for (int i = 0; i < 500; ++i) {
    const std::string n = std::to_string(i);
    lab.nodes.push_back({"n" + n, "router-" + n, {"serial:${PORT_SERIAL_" + n + "}", "vnc:${PORT_VNC_" + n + "}"}});
    ports["serial_" + n] = 2000 + 2 * i;
    ports["vnc_" + n] = 2001 + 2 * i;
  }
  for (auto _ : state) benchmark::DoNotOptimize(BuildPod(lab, ports, "203.0.113.10", "instance", "ccm"));
}
BENCHMARK(BM_BuildPod500Nodes);

LabletInstance RunningInstance() {
  LabletInstance i;
  i.id = {"01a21ab7-5c4d-7c70-bff8-ee2c8d164c24"};
  i.definition_id = {"01a21ab7-5c4d-7c70-bff8-ee2c8d164c25"};
  i.definition_version = "1.0.0";
  i.owner_id = "candidate-42";
  i.assessment = AssessmentRef{"session-1", "part-1"};
  i.worker_id = WorkerId{"01a21ab7-5c4d-7c70-bff8-ee2c8d164c26"};
  i.allocated_ports = {{"serial_1", 2000}, {"serial_2", 2001}, {"vnc_1", 2002}};
  for (InstanceState s : {InstanceState::kScheduled, InstanceState::kInstantiating, InstanceState::kRunning})
    i.state_history.push_back({i.state, s, FromUnixMillis(1000), "reason", "actor"}), i.state = s;
  return i;
}

void BM_InstanceJsonRoundTrip(benchmark::State& state) {
  const LabletInstance i = RunningInstance();
  for (auto _ : state) {
    const std::string text = wire::ToJson(i).dump();
    benchmark::DoNotOptimize(wire::InstanceFromJson(nlohmann::json::parse(text)));
  }
}
BENCHMARK(BM_InstanceJsonRoundTrip);

// What a move's answer and its commit each do with the lablet: its JSON text.
void BM_InstanceJsonText(benchmark::State& state) {
  const LabletInstance i = RunningInstance();
  for (auto _ : state) benchmark::DoNotOptimize(wire::ToJson(i).dump());
}
BENCHMARK(BM_InstanceJsonText);

void BM_AllocatePorts(benchmark::State& state) {
  // A worker already holding `range(0)` instances of three ports each.
  Worker w;
  w.id = {"w"};
  w.state = WorkerState::kRunning;
  w.capacity = {1e9, 1e9, 1e9};
  w.max_nodes = 1 << 30;
  LabletDefinition def;
  def.license_affinity = {w.license_type};
  def.node_count = 1;
  def.resource_requirements = {1, 1, 0};
  def.port_template = {{"serial_1", "serial"}, {"serial_2", "serial"}, {"vnc_1", "vnc"}};
  for (int n = 0; n < state.range(0); ++n) (void)w.Allocate({"i" + std::to_string(n)}, def);
  for (auto _ : state) {
    benchmark::DoNotOptimize(w.Allocate({"new"}, def));
    w.ReleaseCapacity({"new"});
    w.ReleasePorts({"new"});
  }
}
BENCHMARK(BM_AllocatePorts)->Arg(0)->Arg(100)->Arg(2000);

// Durable commits of one new instance with its event; with several threads at once the
// group commit folds them into shared transactions.
void BM_DurableCommit(benchmark::State& state) {
  static std::unique_ptr<store::SqliteStore> store;
  static std::atomic<int> next{0};
  static std::string dir;
  if (state.thread_index() == 0) {
    char tmpl[] = "/tmp/ccm-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    store = std::move(store::SqliteStore::Open({dir + "/ccm.db"}).value());
  }
  LabletInstance i = RunningInstance();
  for (auto _ : state) {
    const int n = next++;
    i.id = {"i-" + std::to_string(n)};
    ports::Changes c;
    c.instances = {i};
    c.events = {ports::OutboxEvent{"e-" + std::to_string(n), i.id.value, "ccm.lablet.instance.pending",
                                 FromUnixMillis(0), "{}"}};
    if (!store->Commit(c)) state.SkipWithError("commit failed");
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    state.counters["commits_per_fsync"] =
        static_cast<double>(store->Stats().commits) / static_cast<double>(std::max<std::uint64_t>(1, store->Stats().transactions));
    store.reset();
    std::filesystem::remove_all(dir);
  }
}
BENCHMARK(BM_DurableCommit)->Threads(1)->Threads(16)->Threads(64)->UseRealTime();

}  // namespace
}  // namespace ccm

BENCHMARK_MAIN();
