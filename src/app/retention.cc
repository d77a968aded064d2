#include "app/retention.h"

#include <spdlog/spdlog.h>

namespace ccm::app {

Result<ports::PurgeCounts> RetentionSweeper::SweepOnce() {
  ports::PurgeCounts total;
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
