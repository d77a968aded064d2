// Seeds a store (a SQLite file, or etcd with --store etcd:URL,...) for the load benchmarks through the real use cases: --workers RUNNING
// workers, one definition without ports, and --instances PENDING instances, created from 16
// threads so that group commit shares the fsyncs. Writes the instance ids, one a line, to
// --ids and the worker ids to --worker-ids.
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "app/services.h"
#include "main/config.h"
#include "os/clock.h"
#include "ports/store.h"
#include "store/etcd/etcd_store.h"
#include "store/sqlite/sqlite_store.h"

int main(int argc, char** argv) {
  using namespace ccm;
  CLI::App cli{"Seed a ccm SQLite store for benchmarks"};
  std::string db, etcd, ids_file, worker_ids_file;
  int count = 1000, worker_count = 1;
  bool running = false, stopped = false;
  auto* db_option = cli.add_option("--db", db, "SQLite file");
  cli.add_option("--etcd", etcd, "etcd members, comma-separated (instead of --db)")->excludes(db_option);
  cli.add_option("--ids", ids_file, "Where to write the instance ids")->required();
  cli.add_option("--instances", count, "How many instances");
  cli.add_option("--worker-ids", worker_ids_file, "Where to write the worker ids")->required();
  cli.add_option("--workers", worker_count, "How many workers");
  cli.add_flag("--running", running, "Schedule each instance (round robin on the workers) and move it to RUNNING");
  cli.add_flag("--stopped", stopped, "As --running, then on to STOPPED");
  CLI11_PARSE(cli, argc, argv);

  std::unique_ptr<ports::Store> opened;
  if (!etcd.empty()) {
    store::EtcdStore::Options options;
    options.client.endpoints = main::EtcdEndpointsOf("etcd:" + etcd);
    auto s = store::EtcdStore::Open(options);
    if (!s) {
      std::cerr << s.error().message << "\n";
      return 1;
    }
    opened = std::move(s.value());
  } else {
    auto s = store::SqliteStore::Open({db});
    if (!s) {
      std::cerr << s.error().message << "\n";
      return 1;
    }
    opened = std::move(s.value());
  }
  auto* store = &opened;
  os::SystemClock clock;
  os::UuidV7Generator ids;
  app::EventFactory events(ids, "ccm-bench");
  app::Deps deps{**store, clock, ids, events};
  app::DefinitionService definitions(deps);
  app::InstanceService instances(deps);
  app::WorkerService workers(deps);

  std::ofstream worker_ids(worker_ids_file);
  std::vector<domain::WorkerId> worker_list;
  for (int n = 0; n < worker_count; ++n) {
    domain::WorkerDraft wd;
    wd.name = "bench-" + std::to_string(n);
    wd.hostname = wd.name;
    wd.cml_url = "http://" + wd.name;
    wd.capacity = {100000, 100000, 0};
    wd.max_nodes = 100000;
    wd.initial_state = domain::WorkerState::kRunning;
    auto worker = workers.Register(wd, "bench");
    if (!worker) {
      std::cerr << "seed: " << worker.error().message << "\n";
      return 1;
    }
    worker_ids << worker->id.value << "\n";
    worker_list.push_back(worker->id);
  }
  domain::DefinitionDraft dd;
  dd.name = "bench";
  dd.version = "1.0.0";
  dd.lab_yaml = "nodes:\n  - id: n0\n    label: r1\n";
  dd.resource_requirements = {0.01, 0.01, 0};
  dd.license_affinity = {domain::LicenseType::kEnterprise};
  dd.max_duration_minutes = 120;
  dd.created_by = "bench";
  auto def = definitions.Create(dd);
  if (!def) {
    std::cerr << "seed: " << def.error().message << "\n";
    return 1;
  }

  std::mutex mu;
  std::ofstream out(ids_file);
  std::vector<std::thread> threads;
  constexpr int kThreads = 16;
  bool failed = false;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int n = t; n < count; n += kThreads) {
        domain::InstanceDraft d;
        d.definition_id = def->id;
        d.owner_id = "candidate-" + std::to_string(n);
        d.timeslot_start = clock.Now();
        d.timeslot_end = d.timeslot_start + std::chrono::minutes(60);
        auto i = instances.Create(d, "bench");
        if (i && (running || stopped)) {
          i = instances.Schedule(i->id, worker_list[static_cast<size_t>(n) % worker_list.size()], "bench");
          if (i) i = instances.Transition(i->id, domain::InstanceState::kInstantiating, "bench", "bench", {});
          if (i) i = instances.Transition(i->id, domain::InstanceState::kRunning, "bench", "bench", {});
          for (auto to : {domain::InstanceState::kStopping, domain::InstanceState::kStopped})
            if (i && stopped) i = instances.Transition(i->id, to, "bench", "bench", {});
        }
        std::lock_guard lock(mu);
        if (!i) {
          std::cerr << "seed: " << i.error().message << "\n";
          failed = true;
          return;
        }
        out << i->id.value << "\n";
      }
    });
  for (auto& t : threads) t.join();
  if (failed) {
    std::cerr << "seed: creating instances failed\n";
    return 1;
  }
  return 0;
}
