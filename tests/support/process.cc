#include "support/process.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ccm::testing {

CcmProcess::CcmProcess(const std::string& work_dir, const std::map<std::string, std::string>& env) {
  const std::string ready = work_dir + "/ready";
  std::filesystem::remove(ready);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    setenv("CCM_LISTEN", "127.0.0.1:0", 0);
    setenv("CCM_LOG_LEVEL", "warn", 0);
    execl(CCM_BINARY, CCM_BINARY, "serve", "--ready-file", ready.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(ready);
    std::string address;
    if (in >> address && !address.empty()) {
      base_url_ = "http://" + address;
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("ccm exited at start-up");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
  throw std::runtime_error("ccm did not start in 10 s");
}

CcmProcess::~CcmProcess() { Kill(); }

void CcmProcess::Kill(int signal) {
  if (pid_ <= 0) return;
  ::kill(pid_, signal);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace ccm::testing
