// Ports and capacity under concurrent scheduling: many threads schedule instances onto one
// worker through the use case and the real SQLite store.
#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

#include "support/fixtures.h"
#include "support/stack.h"

namespace ccm {
namespace {

using namespace ccm::domain;

TEST(ConcurrentScheduling, NoPortIsHandedOutTwiceAndExhaustionIsClear) {
  testing::Stack stack(testing::StoreKind::kMemory);
  DefinitionDraft dd;
  dd.name = "three-ports";
  dd.version = "1.0.0";
  dd.lab_yaml = "nodes:\n  - id: n0\n    label: r1\n    tags: ['serial:${PORT_A}', 'vnc:${PORT_B}', 'ssh:${PORT_C}']\n";
  dd.resource_requirements = {0.5, 1, 0};
  dd.license_affinity = {LicenseType::kEnterprise};
  dd.max_duration_minutes = 60;
  dd.created_by = "test";
  auto def = stack.definitions->Create(dd);
  ASSERT_TRUE(def) << def.error().message;

  WorkerDraft wd = testing::MakeWorkerDraft("w1", {1000, 1000, 0}, 1000);
  wd.port_range_start = 5000;
  wd.port_range_end = 5059;  // 60 ports: room for exactly 20 instances of 3 ports
  auto worker = stack.workers->Register(wd, "test");
  ASSERT_TRUE(worker);

  constexpr int kThreads = 6, kEach = 5;  // 30 instances for 20 slots
  std::vector<InstanceId> ids;
  for (int n = 0; n < kThreads * kEach; ++n) {
    InstanceDraft d;
    d.definition_id = def->id;
    d.owner_id = "candidate-" + std::to_string(n);
    d.timeslot_start = stack.clock.Now();
    d.timeslot_end = d.timeslot_start + std::chrono::minutes(30);
    auto i = stack.instances->Create(d, "test");
    ASSERT_TRUE(i);
    ids.push_back(i->id);
  }

  std::mutex mu;
  std::vector<PortMap> granted;
  std::vector<std::string> refusals;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int n = 0; n < kEach; ++n) {
        auto r = stack.instances->Schedule(ids[static_cast<size_t>(t * kEach + n)], worker->id, "scheduler");
        std::lock_guard lock(mu);
        if (r) granted.push_back(r->allocated_ports);
        else refusals.push_back(r.error().message);
      }
    });
  for (auto& t : threads) t.join();

  ASSERT_EQ(granted.size(), 20u);
  ASSERT_EQ(refusals.size(), 10u);
  for (const auto& msg : refusals) EXPECT_NE(msg.find("ports exhausted"), std::string::npos) << msg;
  std::set<int> ports;
  for (const auto& g : granted)
    for (const auto& [_, port] : g) {
      EXPECT_TRUE(ports.insert(port).second) << "port " << port << " handed out twice";
      EXPECT_GE(port, 5000);
      EXPECT_LE(port, 5059);
    }
  auto stored = stack.workers->Get(worker->id);
  EXPECT_EQ(stored->port_allocations.size(), 20u);
  EXPECT_EQ(stored->FreePorts(), 0);
  EXPECT_DOUBLE_EQ(stored->Allocated().resources.cpu_cores, 10.0);

  // Terminating one gives its ports back for the next.
  InstanceId first;
  for (const auto& id : ids)
    if (stack.instances->Get(id)->state == InstanceState::kScheduled) {
      first = id;
      break;
    }
  ASSERT_TRUE(stack.instances->RequestTermination(first, "test"));
  EXPECT_EQ(stack.workers->Get(worker->id)->FreePorts(), 3);
  InstanceId pending;
  for (const auto& id : ids)
    if (stack.instances->Get(id)->state == InstanceState::kPending) {
      pending = id;
      break;
    }
  EXPECT_TRUE(stack.instances->Schedule(pending, worker->id, "scheduler"));
}

}  // namespace
}  // namespace ccm
