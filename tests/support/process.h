#pragma once

#include <chrono>
#include <csignal>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ccm::testing {

// Starts `argv` (argv[0] a path, or a name looked up in PATH) with `env` added to this
// process's environment, its stdout and stderr to `output_file` when one is given, killed
// when this process dies. Returns its pid. Everything the child needs is made before fork,
// and the child calls only async-signal-safe functions until exec: a test process has threads,
// and one of them may hold the allocator's lock at the moment of fork (a child that then
// allocated would wait for it for ever and never start). Throws when fork fails.
int Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
          const std::string& output_file);

// A child process that writes host:port to a ready file once it listens (ccm and the
// simulators do), for tests that start, stop or kill it.
class ChildProcess {
 public:
  // Starts `argv` with `env` added (Spawn) and waits for `ready_file`. Throws when it does not
  // start within 30 s. With `output_file`, its stdout and stderr go there.
  ChildProcess(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
               const std::string& ready_file, const std::string& output_file = "");
  ~ChildProcess();  // SIGTERM if still running, then SIGKILL after 5 s
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  std::string BaseUrl() const { return base_url_; }
  // The process id, -1 once it has ended and been waited for.
  int pid() const { return pid_; }
  // Whether it still runs (a process that has ended is waited for, so never a zombie).
  bool Running();
  // Sends `signal` and waits for the process to end.
  void Kill(int signal = SIGKILL);
  // Sends `signal` and returns at once.
  void Signal(int signal);
  // Waits up to `timeout` for the process to end: its exit code (128 + n when signal n ended
  // it), or -1 when it still runs.
  int WaitForExit(std::chrono::milliseconds timeout);

 private:
  int pid_ = -1;
  std::string base_url_;
};

// `ccm serve` (the binary of this build, CCM_BINARY) with these settings added. Without
// `authenticated`, it runs with --insecure-no-auth (for tests about something else).
class CcmProcess : public ChildProcess {
 public:
  CcmProcess(const std::string& work_dir, const std::map<std::string, std::string>& env, bool authenticated = false,
             const std::string& output_file = "");
};

// Runs `ccm ARGS` (a shell word list) to its end; returns its exit code and its standard
// output and error, interleaved.
std::pair<int, std::string> RunCcm(const std::string& args);

}  // namespace ccm::testing
