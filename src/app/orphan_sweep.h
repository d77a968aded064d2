#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "ports/clock.h"
#include "ports/cml.h"
#include "ports/store.h"
#include "runtime/background_loop.h"
#include "runtime/background_work.h"

namespace ccm::app {

// The instance named by a lab description that starts with ccm's mark (LabMark("lablet <id>"):
// "ccm lablet <id>" alone on the first line); nullopt for any other description.
std::optional<domain::InstanceId> MarkedInstance(std::string_view description);

// Stops, wipes and deletes a lab on the worker `cml`; a lab that is gone already (at any
// step) counts as removed. Errors: those of CmlWorkers, from the step that failed.
Status RemoveCmlLab(ports::CmlWorkers& cml, const ports::CmlTarget& target, const std::string& lab_id);

struct OrphanSweepOptions {
  // A marked lab no live instance owns is removed once it has been orphaned this long
  // (ORPHAN_LAB_GRACE_SECONDS), counted from its creation on CML, or, when CML does not give
  // it, from the sweep that first found it orphaned. It must exceed the time from an import
  // to the recording of its lab id, and the clock skew between ccm and the workers.
  std::chrono::milliseconds grace = std::chrono::seconds(900);
  // How often the background loop (Start) sweeps.
  std::chrono::milliseconds interval = std::chrono::seconds(60);
};

// Counters of the sweep, for /metrics. Thread-safe.
struct OrphanSweepMetrics {
  std::atomic<std::uint64_t> removed{0};            // ccm_orphan_labs_removed_total
  std::atomic<std::uint64_t> removal_failures{0};   // ccm_orphan_lab_removal_failures_total
  std::atomic<std::uint64_t> unlisted_workers{0};   // ccm_orphan_sweep_worker_failures_total
};

// Finds and removes the labs ccm created that no instance owns: left by a leader deposed
// between an import and the recording of its lab id, or by an import whose answer was lost.
//
// For each RUNNING worker, lists its CML labs. A lab whose description does not start with
// ccm's mark (MarkedInstance) is never touched. A marked lab is owned, and kept, while the
// instance its mark names exists, is not TERMINATED, and has either no cml_lab_id yet (the
// import may be being recorded) or this lab's id. Any other marked lab is an orphan: once
// orphaned for the grace (OrphanSweepOptions::grace) it is stopped, wiped and deleted, with
// one log line naming the worker, the lab and the instance of the mark. A worker whose CML
// cannot be listed is skipped (logged, counted); the others are still swept. A lab whose
// owner cannot be read (the store fails) is kept until a later sweep.
//
// Meant to run on the leader only: Start runs SweepOnce every `interval` on a thread of its
// own until Stop. SweepOnce is not reentrant: call it directly only while the loop is stopped.
// The metrics may be read from any thread. Not owned: store, clock, cml and metrics must
// outlive it.
class OrphanSweep final : public runtime::BackgroundTask {
 public:
  OrphanSweep(ports::Store& store, ports::Clock& clock, ports::CmlWorkers& cml, OrphanSweepOptions options, OrphanSweepMetrics& metrics);

  ~OrphanSweep();

  // One sweep of every RUNNING worker; returns how many labs it removed.
  int SweepOnce();

  std::string_view name() const override { return "orphan sweep"; }
  void Start() override;
  void RequestStop() override;
  void Stop() override;
  void Wake() override {}  // it sweeps CML, which commits do not change

 private:
  // Why the lab is an orphan ("" when it is owned, or when that cannot be told now).
  std::string OrphanReason(const ports::CmlLab& lab, const domain::InstanceId& marked);
  // Sweeps one worker's labs; returns how many it removed, or nullopt when CML cannot list them.
  std::optional<int> SweepWorker(const domain::Worker& worker, Timestamp now);

  ports::Store& store_;
  ports::Clock& clock_;
  ports::CmlWorkers& cml_;
  OrphanSweepOptions options_;
  OrphanSweepMetrics& metrics_;
  // (worker id, lab id) -> when a sweep first found the lab orphaned; for labs without a
  // creation time. Forgotten when the lab is owned again, gone, or removed.
  std::map<std::pair<std::string, std::string>, Timestamp> first_orphaned_;
  std::unique_ptr<runtime::BackgroundLoop> loop_;
};

}  // namespace ccm::app
