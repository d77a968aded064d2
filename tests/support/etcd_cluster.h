#pragma once

#include <string>
#include <vector>

namespace ccm::testing {

// Real etcd members (Debian's etcd-server, `etcd` on the PATH) on loopback ports, with their
// data under `dir`, for the tests of the etcd store. Each member writes its log to
// dir/etcd-N.log.
class EtcdCluster {
 public:
  // Starts `members` members as one new cluster and waits until every one answers.
  // Throws when etcd is missing or the cluster is not healthy within 20 s.
  explicit EtcdCluster(const std::string& dir, int members = 1);
  ~EtcdCluster();  // kills every member still running
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  const std::vector<std::string>& ClientUrls() const { return client_urls_; }
  // The CCM_STORE setting that names every member.
  std::string StoreSetting() const;
  // Kills member `n` with SIGKILL.
  void Kill(int n);
  // The leader member's index, or -1 when none answers.
  int Leader() const;

 private:
  std::vector<int> pids_;
  std::vector<std::string> client_urls_;
};

// A TCP port nothing listens on right now.
int UnusedPort();

}  // namespace ccm::testing
