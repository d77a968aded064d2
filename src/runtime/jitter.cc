#include "runtime/jitter.h"

#include <cstdint>
#include <random>

namespace ccm::runtime {

std::chrono::milliseconds Jittered(std::chrono::milliseconds d) {
  if (d.count() <= 1) return d;
  thread_local std::minstd_rand rng{std::random_device{}()};
  const auto half = d.count() / 2;
  return std::chrono::milliseconds(half + std::uniform_int_distribution<std::int64_t>(0, d.count() - half)(rng));
}

}  // namespace ccm::runtime
