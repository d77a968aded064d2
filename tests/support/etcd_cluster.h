#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ccm::testing {

// PEM files made in `dir` with the openssl command: a CA, a member certificate for 127.0.0.1
// and localhost signed by it (server and client use: etcd's gateway presents it to its own
// gRPC server), a client certificate signed by it (subject O=ccm and no CN), client
// certificates whose CN is the user `ccm` (named_client_*) and the user `root`
// (root_client_*), and a second CA that signed none of them. Throws when openssl fails.
struct TestCertificates {
  explicit TestCertificates(const std::string& dir);
  std::string ca_file, member_cert, member_key, client_cert, client_key, named_client_cert, named_client_key,
      root_client_cert, root_client_key, other_ca_file;
};

// How a cluster serves its clients: TLS with a required client certificate, when set.
struct EtcdTls {
  std::string ca_file;      // --trusted-ca-file: verifies client certificates
  std::string cert_file;    // the member's certificate and key
  std::string key_file;
  std::string client_cert;  // what the health check presents
  std::string client_key;
};

struct EtcdClusterOptions {
  int members = 1;
  std::optional<EtcdTls> tls;          // https:// client URLs with --client-cert-auth
  std::vector<std::string> extra_args;  // e.g. --auth-token-ttl=2
};

// Real etcd members (Debian's etcd-server, `etcd` on the PATH) on loopback ports, with their
// data under `dir`, for the tests of the etcd store. Each member writes its log to
// dir/etcd-N.log.
class EtcdCluster {
 public:
  // Starts `members` members as one new cluster and waits until every one answers.
  // Throws when etcd is missing or the cluster is not healthy within 20 s.
  explicit EtcdCluster(const std::string& dir, int members = 1);
  EtcdCluster(const std::string& dir, const EtcdClusterOptions& options);
  ~EtcdCluster();  // kills every member still running
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  const std::vector<std::string>& ClientUrls() const { return client_urls_; }
  // The CCM_STORE setting that names every member.
  std::string StoreSetting() const;
  // Kills member `n` with SIGKILL.
  void Kill(int n);
  // Stops member `n` with SIGSTOP, or lets it go on with SIGCONT: while stopped, its
  // connections are accepted by the kernel and never answered (a member that hangs).
  void Pause(int n);
  void Resume(int n);
  // The leader member's index, or -1 when none answers (plain http:// clusters only).
  int Leader() const;

 private:
  // Starts the members on ports picked free; false when one exited because another process
  // took its port first (every member is stopped and forgotten then). Throws on other failures.
  bool TryStart(const std::string& dir, const EtcdClusterOptions& options);

  std::vector<int> pids_;
  std::vector<std::string> client_urls_;
};

// A TCP port nothing listens on right now.
int UnusedPort();

}  // namespace ccm::testing
