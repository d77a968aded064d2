#pragma once

#include <CLI/CLI.hpp>

namespace ccm::main {

// Adds `ccm watch`, which follows a running ccm's GET /api/v1/watch stream and prints each
// change, reconnecting after the last one it printed when the stream ends.
void AddWatchCommand(CLI::App& cli);

}  // namespace ccm::main
