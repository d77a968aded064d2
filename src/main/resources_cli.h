#pragma once

#include <CLI/CLI.hpp>

namespace ccm::main {

// Adds `ccm instances list|get|create|delete|collect|assign-pod`, `ccm workers
// list|get|create|delete|drain` and `ccm definitions list|get|create|delete`, which call a
// running ccm's API (main/api_client.h: options, output formats, exit codes). Each verb's
// callback ends the program by throwing CLI::RuntimeError with its exit code.
void AddResourceCommands(CLI::App& cli);

}  // namespace ccm::main
