#include "app/orphan_sweep.h"
#include "ports/page.h"

#include <set>
#include <spdlog/spdlog.h>

namespace ccm::app {

using namespace ccm::domain;

namespace {

constexpr std::string_view kMarkedLablet = "ccm lablet ";

}  // namespace

std::optional<InstanceId> MarkedInstance(std::string_view description) {
  if (!description.starts_with(kMarkedLablet)) return std::nullopt;
  std::string_view id = description.substr(kMarkedLablet.size());
  id = id.substr(0, id.find('\n'));
  if (!id.empty() && id.back() == '\r') id.remove_suffix(1);
  // One word: a first line with more on it is someone else's text that happens to start so.
  if (id.empty() || id.find_first_of(" \t") != std::string_view::npos) return std::nullopt;
  return InstanceId{std::string(id)};
}

Status RemoveCmlLab(ports::CmlWorkers& cml, const ports::CmlTarget& target, const std::string& lab_id) {
  auto gone = [](const Status& s) { return !s && s.error().code == ErrorCode::kNotFound; };
  Status s = cml.StopLab(target, lab_id);
  if (gone(s)) return {};
  if (!s) return s;
  s = cml.WipeLab(target, lab_id);
  if (gone(s)) return {};
  if (!s) return s;
  s = cml.DeleteLab(target, lab_id);
  if (gone(s)) return {};
  return s;
}

OrphanSweep::OrphanSweep(ports::Store& store, ports::Clock& clock, ports::CmlWorkers& cml, OrphanSweepOptions options,
                         OrphanSweepMetrics& metrics)
    : store_(store), clock_(clock), cml_(cml), options_(options), metrics_(metrics) {
  loop_ = std::make_unique<runtime::BackgroundLoop>(
      [this] {
        SweepOnce();
        return false;
      },
      options_.interval);
}

OrphanSweep::~OrphanSweep() { Stop(); }

void OrphanSweep::Start() { loop_->Start(); }
void OrphanSweep::RequestStop() { loop_->RequestStop(); }
void OrphanSweep::Stop() { loop_->Stop(); }

int OrphanSweep::SweepOnce() {
  const Timestamp now = clock_.Now();
  int removed = 0;
  std::set<std::string> running;
  ports::Page page{ports::kMaxPageLimit, ""};
  for (;;) {
    auto got = store_.ListWorkers(page);
    if (!got) {
      // Without the whole list, a worker left out would lose its orphans' first sightings.
      spdlog::warn("orphan sweep: cannot list workers: {}", got.error().message);
      return removed;
    }
    for (const auto& w : got->items) {
      if (w.state != WorkerState::kRunning) continue;
      running.insert(w.id.value);
      if (auto n = SweepWorker(w, now)) removed += *n;
    }
    if (got->next.empty()) break;
    page.after = got->next;
  }
  // A worker no longer RUNNING is not swept; what was seen on it starts afresh if it returns.
  std::erase_if(first_orphaned_, [&](const auto& e) { return !running.count(e.first.first); });
  return removed;
}

std::optional<int> OrphanSweep::SweepWorker(const Worker& worker, Timestamp now) {
  // The labs are listed before any instance is read: a lab id recorded after the instance was
  // read belongs to a lab imported before that, which the mark protects (no cml_lab_id yet).
  auto labs = cml_.ListLabs(ports::CmlTargetOf(worker));
  if (!labs) {
    ++metrics_.unlisted_workers;
    spdlog::warn("orphan sweep: worker {}: labs not listed, worker skipped: {}", worker.id.value,
                 labs.error().message);
    return std::nullopt;  // its first sightings are kept: nothing is known of its labs now
  }
  std::set<std::string> orphaned;
  int removed = 0;
  for (const auto& lab : *labs) {
    const auto marked = MarkedInstance(lab.description);
    if (!marked) continue;  // not created by ccm: never touched
    const std::string reason = OrphanReason(lab, *marked);
    if (reason.empty()) continue;
    orphaned.insert(lab.id);
    const auto key = std::make_pair(worker.id.value, lab.id);
    const Timestamp since = lab.created ? *lab.created : first_orphaned_.try_emplace(key, now).first->second;
    if (now - since < options_.grace) continue;
    if (auto s = RemoveCmlLab(cml_, ports::CmlTargetOf(worker), lab.id); !s) {
      ++metrics_.removal_failures;
      spdlog::warn("orphan sweep: worker {}: orphan lab {} (mark: instance {}) not removed: {}", worker.id.value,
                   lab.id, marked->value, s.error().message);
      continue;
    }
    ++metrics_.removed;
    ++removed;
    orphaned.erase(lab.id);
    spdlog::info("orphan sweep: worker {}: lab {} stopped, wiped and deleted; its mark names instance {}, which {}",
                 worker.id.value, lab.id, marked->value, reason);
  }
  std::erase_if(first_orphaned_,
                [&](const auto& e) { return e.first.first == worker.id.value && !orphaned.count(e.first.second); });
  return removed;
}

std::string OrphanSweep::OrphanReason(const ports::CmlLab& lab, const InstanceId& marked) {
  auto instance = store_.GetInstance(marked);
  if (!instance) {
    if (instance.error().code == ErrorCode::kNotFound) return "does not exist";
    spdlog::warn("orphan sweep: lab {}: instance {} not read, lab kept: {}", lab.id, marked.value,
                 instance.error().message);
    return "";
  }
  if (instance->state == InstanceState::kTerminated) return "is TERMINATED";
  if (instance->cml_lab_id && *instance->cml_lab_id != lab.id) return "has lab " + *instance->cml_lab_id;
  return "";
}

}  // namespace ccm::app
