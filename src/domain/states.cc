#include "domain/states.h"

#include <algorithm>
#include <array>
#include <vector>

namespace ccm::domain {

namespace {

using I = InstanceState;
using W = WorkerState;

struct InstanceRow {
  InstanceState state;
  std::string_view name;
  std::string_view event_type;
  std::vector<InstanceState> targets;
};

struct WorkerRow {
  WorkerState state;
  std::string_view name;
  std::string_view event_type;
  std::vector<WorkerState> targets;
};

// The instance state machine: the only legal moves (SYSTEM.md). Three event types are not
// the state's name: INSTANTIATING, COLLECTING and GRADING.
const std::array<InstanceRow, 10>& InstanceTable() {
  static const std::array<InstanceRow, 10> kTable{{
      {I::kPending, "PENDING", "ccm.lablet.instance.pending", {I::kScheduled, I::kTerminated}},
      {I::kScheduled, "SCHEDULED", "ccm.lablet.instance.scheduled", {I::kInstantiating, I::kTerminated}},
      {I::kInstantiating, "INSTANTIATING", "ccm.lablet.instance.provisioning.started", {I::kRunning, I::kTerminated}},
      {I::kRunning, "RUNNING", "ccm.lablet.instance.running", {I::kCollecting, I::kStopping}},
      {I::kCollecting, "COLLECTING", "ccm.lablet.instance.collecting.started", {I::kGrading, I::kStopping}},
      {I::kGrading, "GRADING", "ccm.lablet.instance.grading.started", {I::kStopping}},
      {I::kStopping, "STOPPING", "ccm.lablet.instance.stopping", {I::kStopped}},
      {I::kStopped, "STOPPED", "ccm.lablet.instance.stopped", {I::kArchived, I::kRunning}},
      {I::kArchived, "ARCHIVED", "ccm.lablet.instance.archived", {I::kTerminated}},
      {I::kTerminated, "TERMINATED", "ccm.lablet.instance.terminated", {}},
  }};
  return kTable;
}

const std::array<WorkerRow, 7>& WorkerTable() {
  static const std::array<WorkerRow, 7> kTable{{
      {W::kPending, "PENDING", "ccm.worker.pending", {W::kProvisioning}},
      {W::kProvisioning, "PROVISIONING", "ccm.worker.provisioning.started", {W::kRunning}},
      {W::kRunning, "RUNNING", "ccm.worker.running", {W::kDraining, W::kStopping}},
      {W::kDraining, "DRAINING", "ccm.worker.draining", {W::kRunning, W::kStopping}},
      {W::kStopping, "STOPPING", "ccm.worker.stopping", {W::kStopped}},
      {W::kStopped, "STOPPED", "ccm.worker.stopped", {W::kRunning, W::kTerminated}},
      {W::kTerminated, "TERMINATED", "ccm.worker.terminated", {}},
  }};
  return kTable;
}

const InstanceRow& Row(InstanceState s) { return InstanceTable()[static_cast<size_t>(s)]; }
const WorkerRow& Row(WorkerState s) { return WorkerTable()[static_cast<size_t>(s)]; }

template <typename Table>
auto ParseName(const Table& table, std::string_view name) -> std::optional<decltype(table[0].state)> {
  for (const auto& row : table)
    if (row.name == name) return row.state;
  return std::nullopt;
}

}  // namespace

std::string_view ToString(InstanceState s) { return Row(s).name; }
std::string_view ToString(WorkerState s) { return Row(s).name; }
std::optional<InstanceState> ParseInstanceState(std::string_view name) { return ParseName(InstanceTable(), name); }
std::optional<WorkerState> ParseWorkerState(std::string_view name) { return ParseName(WorkerTable(), name); }
std::span<const InstanceState> AllowedTargets(InstanceState from) { return Row(from).targets; }
std::span<const WorkerState> AllowedTargets(WorkerState from) { return Row(from).targets; }

bool IsLegalMove(InstanceState from, InstanceState to) {
  const auto t = AllowedTargets(from);
  return std::find(t.begin(), t.end(), to) != t.end();
}
bool IsLegalMove(WorkerState from, WorkerState to) {
  const auto t = AllowedTargets(from);
  return std::find(t.begin(), t.end(), to) != t.end();
}

std::string_view EventTypeOnEntering(InstanceState s) { return Row(s).event_type; }
std::string_view EventTypeOnEntering(WorkerState s) { return Row(s).event_type; }

bool HoldsCapacity(InstanceState s) {
  return s != I::kPending && s != I::kArchived && s != I::kTerminated;
}
bool HoldsPorts(InstanceState s) { return s != I::kPending && s != I::kTerminated; }

}  // namespace ccm::domain
