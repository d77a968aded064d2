#pragma once

#include <chrono>

namespace ccm::runtime {

// A wait drawn uniformly from [d/2, d] ("equal jitter"): a fleet of lablets that failed
// against one remote at once (a worker's outage) does not retry it in lockstep, and none
// retries sooner than half the backoff. Thread-safe.
std::chrono::milliseconds Jittered(std::chrono::milliseconds d);

}  // namespace ccm::runtime
