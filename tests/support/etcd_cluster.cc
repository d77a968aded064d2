#include "support/etcd_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "support/http_client.h"

namespace ccm::testing {

int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    throw std::runtime_error("no free port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

EtcdCluster::EtcdCluster(const std::string& dir, int members) {
  std::vector<std::string> peer_urls;
  std::string initial;
  for (int n = 0; n < members; ++n) {
    client_urls_.push_back("http://127.0.0.1:" + std::to_string(UnusedPort()));
    peer_urls.push_back("http://127.0.0.1:" + std::to_string(UnusedPort()));
    initial += (n ? "," : "") + ("m" + std::to_string(n)) + "=" + peer_urls.back();
  }
  const std::string token = "ccm-test-" + std::to_string(getpid()) + "-" + client_urls_.front().substr(17);
  for (int n = 0; n < members; ++n) {
    std::filesystem::create_directories(dir);
    const std::string name = "m" + std::to_string(n);
    std::vector<std::string> argv = {"etcd",
                                     "--name=" + name,
                                     "--data-dir=" + dir + "/etcd-" + std::to_string(n),
                                     "--listen-client-urls=" + client_urls_[n],
                                     "--advertise-client-urls=" + client_urls_[n],
                                     "--listen-peer-urls=" + peer_urls[n],
                                     "--initial-advertise-peer-urls=" + peer_urls[n],
                                     "--initial-cluster=" + initial,
                                     "--initial-cluster-state=new",
                                     "--initial-cluster-token=" + token,
                                     "--max-txn-ops=1024",
                                     "--heartbeat-interval=50",
                                     "--election-timeout=500"};
    const std::string log = dir + "/etcd-" + std::to_string(n) + ".log";
    const int pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execvp("etcd", args.data());
      _exit(127);
    }
    pids_.push_back(pid);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int n = 0; n < members; ++n) {
    HttpClient client(client_urls_[n]);
    for (;;) {
      int status = 0;
      if (waitpid(pids_[n], &status, WNOHANG) == pids_[n]) {
        pids_[n] = -1;
        throw std::runtime_error("etcd exited at start-up (is Debian's etcd-server installed?); see " + dir);
      }
      auto health = client.Get("/health");
      if (health.status == 200 && health.body.find("\"true\"") != std::string::npos) break;
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("etcd member " + std::to_string(n) + " not healthy in 20 s; see " + dir);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

EtcdCluster::~EtcdCluster() {
  for (size_t n = 0; n < pids_.size(); ++n) Kill(static_cast<int>(n));
}

std::string EtcdCluster::StoreSetting() const {
  std::string s = "etcd:";
  for (size_t n = 0; n < client_urls_.size(); ++n) s += (n ? "," : "") + client_urls_[n];
  return s;
}

void EtcdCluster::Kill(int n) {
  if (pids_[n] <= 0) return;
  ::kill(pids_[n], SIGKILL);
  int status = 0;
  waitpid(pids_[n], &status, 0);
  pids_[n] = -1;
}

int EtcdCluster::Leader() const {
  for (size_t n = 0; n < client_urls_.size(); ++n) {
    if (pids_[n] <= 0) continue;
    HttpClient client(client_urls_[n]);
    auto status = client.Post("/v3/maintenance/status", "{}");
    auto j = status.Json();
    if (status.status != 200 || !j.is_object()) continue;
    if (j.value("leader", "") == j["header"].value("member_id", "")) return static_cast<int>(n);
  }
  return -1;
}

}  // namespace ccm::testing
