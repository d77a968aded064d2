#include "app/retention.h"

#include <spdlog/spdlog.h>

namespace ccm::app {

std::string RetentionMetricsText(const RetentionMetrics& m) {
  return "# HELP ccm_retention_removed_total Records removed past their retention.\n"
         "# TYPE ccm_retention_removed_total counter\n"
         "ccm_retention_removed_total{kind=\"instances\"} " +
         std::to_string(m.instances.load()) + "\nccm_retention_removed_total{kind=\"events\"} " +
         std::to_string(m.events.load()) + "\n";
}

Result<PurgeCounts> RetentionSweeper::SweepOnce() {
  PurgeCounts total;
  const Timestamp now = clock_.Now();
  for (int n = 0; n < options_.max_batches; ++n) {
    auto got = store_.Purge(now - options_.instances, now - options_.events, options_.batch);
    if (!got) {
      spdlog::warn("retention: {}", got.error().message);
      return got.error();
    }
    total.instances += got->instances;
    total.events += got->events;
    metrics_.instances += static_cast<std::uint64_t>(got->instances);
    metrics_.events += static_cast<std::uint64_t>(got->events);
    if (got->instances < options_.batch && got->events < options_.batch) break;
  }
  if (total.instances > 0 || total.events > 0)
    spdlog::info("retention: removed {} terminated instances and {} delivered events", total.instances, total.events);
  return total;
}

}  // namespace ccm::app
