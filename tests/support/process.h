#pragma once

#include <csignal>
#include <map>
#include <string>

namespace ccm::testing {

// `ccm serve` as a child process, for tests that kill it. The path of the binary comes from
// the build (CCM_BINARY).
class CcmProcess {
 public:
  // Starts `ccm serve` with these environment settings added and waits until it listens.
  // Throws when it does not start within 10 s.
  CcmProcess(const std::string& work_dir, const std::map<std::string, std::string>& env);
  ~CcmProcess();  // SIGKILL if still running
  CcmProcess(const CcmProcess&) = delete;
  CcmProcess& operator=(const CcmProcess&) = delete;

  std::string BaseUrl() const { return base_url_; }
  // Sends `signal` and waits for the process to end.
  void Kill(int signal = SIGKILL);

 private:
  int pid_ = -1;
  std::string base_url_;
};

}  // namespace ccm::testing
