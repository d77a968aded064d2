#pragma once

#include <CLI/CLI.hpp>

namespace ccm::main {

// Adds `ccm events list|dead-letters|replay`, which talk to a running ccm over its API.
void AddEventsCommands(CLI::App& cli);

}  // namespace ccm::main
