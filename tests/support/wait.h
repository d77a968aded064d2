#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "domain/time.h"

namespace ccm::testing {

// Polls `check` every 50 ms until it holds or `timeout` passes; returns whether it held.
template <typename F>
bool Eventually(F check, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return check();
}

// `t` as the API writes times.
inline std::string Rfc3339(std::chrono::system_clock::time_point t) {
  return FormatRfc3339(
      FromUnixMillis(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count()));
}

}  // namespace ccm::testing
