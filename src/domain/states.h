#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace ccm::domain {

// The lifecycle of a LabletInstance. The legal moves are the table in states.cc, the only
// place that knows them.
enum class InstanceState {
  kPending,        // created, waiting for a worker
  kScheduled,      // a worker is chosen and ports are allocated on it
  kInstantiating,  // the lab is being imported and started on the worker's CML
  kRunning,        // the lab runs; the candidate works on it
  kCollecting,     // the Assessment Platform is collecting the candidate's work
  kGrading,        // the Grading Engine is grading what was collected
  kStopping,       // the lab is being stopped on the worker
  kStopped,        // the lab is stopped; it may be started again
  kArchived,       // stopped for good, capacity released, kept until retention ends
  kTerminated,     // the lab is wiped and deleted, ports released; final
};

// The lifecycle of a Worker (one CML host).
enum class WorkerState {
  kPending,       // registered, not yet provisioned
  kProvisioning,  // the host is being brought up
  kRunning,       // takes new instances
  kDraining,      // takes no new instances; stops once its last instance is gone
  kStopping,      // the host is being stopped
  kStopped,       // the host is stopped; it may be started again
  kTerminated,    // the host is gone; final
};

std::string_view ToString(InstanceState s);
std::string_view ToString(WorkerState s);
// Parses the upper-case name ("RUNNING"); nullopt for anything else.
std::optional<InstanceState> ParseInstanceState(std::string_view name);
std::optional<WorkerState> ParseWorkerState(std::string_view name);

// The states reachable in one legal move from `from`; empty for a final state.
std::span<const InstanceState> AllowedTargets(InstanceState from);
std::span<const WorkerState> AllowedTargets(WorkerState from);
bool IsLegalMove(InstanceState from, InstanceState to);
bool IsLegalMove(WorkerState from, WorkerState to);

// The CloudEvent type published on entering a state ("ccm.lablet.instance.running").
std::string_view EventTypeOnEntering(InstanceState s);
std::string_view EventTypeOnEntering(WorkerState s);
// Published when a score is recorded, just before the move to STOPPING.
inline constexpr std::string_view kGradingCompletedEventType = "ccm.lablet.instance.grading.completed";
// Not a state either: the Grading Engine took a RUNNING instance's pod.
inline constexpr std::string_view kPodAssignedEventType = "ccm.lablet.instance.pod.assigned";

// True while the instance holds capacity on its worker (SCHEDULED up to STOPPED).
bool HoldsCapacity(InstanceState s);
// True while the instance holds ports on its worker (SCHEDULED up to ARCHIVED).
bool HoldsPorts(InstanceState s);

inline constexpr InstanceState kAllInstanceStates[] = {
    InstanceState::kPending,  InstanceState::kScheduled, InstanceState::kInstantiating, InstanceState::kRunning,
    InstanceState::kCollecting, InstanceState::kGrading, InstanceState::kStopping,    InstanceState::kStopped,
    InstanceState::kArchived, InstanceState::kTerminated};
inline constexpr WorkerState kAllWorkerStates[] = {WorkerState::kPending,  WorkerState::kProvisioning,
                                                   WorkerState::kRunning,  WorkerState::kDraining,
                                                   WorkerState::kStopping, WorkerState::kStopped,
                                                   WorkerState::kTerminated};

}  // namespace ccm::domain
