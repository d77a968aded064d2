#include "support/process.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace ccm::testing {

int Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
          const std::string& output_file) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_entries;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    if (!env.contains(entry.substr(0, entry.find('=')))) env_entries.push_back(entry);
  }
  for (const auto& [k, v] : env) env_entries.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_entries) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int out_fd =
      output_file.empty() ? -1 : open(output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int pid = fork();
  if (pid < 0) {
    if (out_fd >= 0) close(out_fd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test killed on timeout leaves no process behind
    if (out_fd >= 0) {
      dup2(out_fd, 1);  // the copies do not carry O_CLOEXEC
      dup2(out_fd, 2);
    }
    execvpe(args[0], args.data(), envp.data());
    _exit(127);
  }
  if (out_fd >= 0) close(out_fd);
  return pid;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                           const std::string& ready_file, const std::string& output_file) {
  std::filesystem::remove(ready_file);
  pid_ = Spawn(argv, env, output_file);
  // A bound for a loaded machine running a sanitizer build, not a claim about how fast ccm
  // starts.
  constexpr int kStartSeconds = 30;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kStartSeconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(ready_file);
    std::string address;
    if (in >> address && !address.empty()) {
      base_url_ = "http://" + address;
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error(argv[0] + " exited at start-up");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
  throw std::runtime_error(argv[0] + " did not start in " + std::to_string(kStartSeconds) + " s");
}

ChildProcess::~ChildProcess() {
  // SIGTERM first, so that the process ends as it does in production (and writes its coverage
  // data in a coverage build); SIGKILL if it has not ended within 5 s.
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill(SIGKILL);
}

bool ChildProcess::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == 0) return true;
  pid_ = -1;
  return false;
}

void ChildProcess::Kill(int signal) {
  if (pid_ <= 0) return;
  ::kill(pid_, signal);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void ChildProcess::Signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

int ChildProcess::WaitForExit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

namespace {
std::map<std::string, std::string> WithDefaults(std::map<std::string, std::string> env) {
  env.emplace("CCM_LISTEN", "127.0.0.1:0");
  env.emplace("CCM_LOG_LEVEL", "warn");
  // No load balancer watches a test's process: the drain's grace would only make every stop
  // (the destructor's SIGTERM) wait. The drain tests set their own.
  env.emplace("CCM_DRAIN_GRACE_MS", "0");
  return env;
}
}  // namespace

namespace {
std::vector<std::string> CcmArgs(const std::string& work_dir, bool authenticated) {
  std::vector<std::string> argv = {CCM_BINARY, "serve", "--ready-file", work_dir + "/ready"};
  if (!authenticated) argv.push_back("--insecure-no-auth");
  return argv;
}
}  // namespace

CcmProcess::CcmProcess(const std::string& work_dir, const std::map<std::string, std::string>& env, bool authenticated,
                       const std::string& output_file)
    : ChildProcess(CcmArgs(work_dir, authenticated), WithDefaults(env), work_dir + "/ready", output_file) {}

std::pair<int, std::string> RunCcm(const std::string& args) {
  std::string out;
  FILE* p = popen((std::string(CCM_BINARY) + " " + args + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("cannot run " + std::string(CCM_BINARY));
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

}  // namespace ccm::testing
