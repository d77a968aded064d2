#pragma once

#include <chrono>
#include <csignal>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ccm::testing {

// A child process that writes host:port to a ready file once it listens (ccm and the
// simulators do), for tests that start, stop or kill it.
class ChildProcess {
 public:
  // Starts `argv` with `env` added and waits for `ready_file`. Throws when it does not
  // start within 10 s. With `output_file`, its stdout and stderr go there.
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
