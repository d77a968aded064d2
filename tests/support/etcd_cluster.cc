#include "support/etcd_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

#include "support/http_client.h"
#include "support/process.h"
#include "transport/http_connection.h"

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

namespace {

void Openssl(const std::string& args) {
  if (std::system(("openssl " + args + " >/dev/null 2>&1").c_str()) != 0)
    throw std::runtime_error("openssl " + args + " failed");
}

// A key and a certificate signed by `ca` (its .crt and .key) with the extensions `ext`.
void SignedCertificate(const std::string& dir, const std::string& name, const std::string& subject,
                       const std::string& ca, const std::string& ext) {
  const std::string base = dir + "/" + name;
  std::ofstream(base + ".ext") << ext;
  Openssl("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj " + subject + " -keyout " + base +
          ".key -out " + base + ".csr");
  Openssl("x509 -req -in " + base + ".csr -CA " + ca + ".crt -CAkey " + ca + ".key -set_serial " +
          std::to_string(std::rand() % 1000000 + 1) + " -days 1 -extfile " + base + ".ext -out " + base + ".crt");
}

void SelfSignedCa(const std::string& base, const std::string& cn) {
  Openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=" + cn +
          " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -keyout " + base +
          ".key -out " + base + ".crt");
}

// Whether the member at `url` answers /health with health "true", over TLS when `tls` is set.
bool Healthy(const std::string& url, const std::optional<EtcdTls>& tls) {
  if (!tls) {
    HttpClient client(url);
    auto health = client.Get("/health");
    return health.status == 200 && health.body.find("\"true\"") != std::string::npos;
  }
  transport::ConnectionOptions options;
  options.tls.ca_file = tls->ca_file;
  options.tls.cert_file = tls->client_cert;
  options.tls.key_file = tls->client_key;
  transport::Connection connection(std::move(options));
  transport::Request request;
  request.method = "GET";
  request.total_timeout = std::chrono::milliseconds(2000);
  const transport::Response health = connection.Send(url + "/health", request);
  return health.status == 200 && health.body.find("\"true\"") != std::string::npos;
}

}  // namespace

TestCertificates::TestCertificates(const std::string& dir) {
  std::filesystem::create_directories(dir);
  SelfSignedCa(dir + "/ca", "ccm-test-ca");
  SelfSignedCa(dir + "/other-ca", "ccm-other-ca");
  SignedCertificate(dir, "member", "/CN=etcd-member", dir + "/ca",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
                    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n");
  // No CN: known to etcd by its user and password alone.
  SignedCertificate(dir, "client", "/O=ccm", dir + "/ca",
                    "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n");
  // CN=ccm: with --client-cert-auth and no token, etcd takes the CN as the user.
  SignedCertificate(dir, "named-client", "/CN=ccm", dir + "/ca",
                    "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n");
  named_client_cert = dir + "/named-client.crt";
  named_client_key = dir + "/named-client.key";
  SignedCertificate(dir, "root-client", "/CN=root", dir + "/ca",
                    "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n");
  root_client_cert = dir + "/root-client.crt";
  root_client_key = dir + "/root-client.key";
  ca_file = dir + "/ca.crt";
  other_ca_file = dir + "/other-ca.crt";
  member_cert = dir + "/member.crt";
  member_key = dir + "/member.key";
  client_cert = dir + "/client.crt";
  client_key = dir + "/client.key";
}

EtcdCluster::EtcdCluster(const std::string& dir, int members) : EtcdCluster(dir, EtcdClusterOptions{members, {}, {}}) {}

EtcdCluster::EtcdCluster(const std::string& dir, const EtcdClusterOptions& options) {
  // A port is picked free, then bound by etcd: a test running beside this one may take it in
  // between. Then the members start again, all on new ports.
  for (int attempt = 1; !TryStart(dir, options); ++attempt)
    if (attempt == 5) throw std::runtime_error("etcd found its ports taken 5 times; see " + dir);
}

bool EtcdCluster::TryStart(const std::string& dir, const EtcdClusterOptions& options) {
  const int members = options.members;
  pids_.clear();
  client_urls_.clear();
  const std::string scheme = options.tls ? "https://" : "http://";
  std::vector<std::string> peer_urls;
  std::string initial;
  for (int n = 0; n < members; ++n) {
    client_urls_.push_back(scheme + "127.0.0.1:" + std::to_string(UnusedPort()));
    peer_urls.push_back("http://127.0.0.1:" + std::to_string(UnusedPort()));
    initial += (n ? "," : "") + ("m" + std::to_string(n)) + "=" + peer_urls.back();
  }
  const std::string token = "ccm-test-" + std::to_string(getpid()) + "-" + client_urls_.front().substr(scheme.size() + 10);
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
    if (options.tls) {
      argv.push_back("--client-cert-auth");
      argv.push_back("--trusted-ca-file=" + options.tls->ca_file);
      argv.push_back("--cert-file=" + options.tls->cert_file);
      argv.push_back("--key-file=" + options.tls->key_file);
    }
    argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
    const std::string log = dir + "/etcd-" + std::to_string(n) + ".log";
    pids_.push_back(Spawn(argv, {}, log));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int n = 0; n < members; ++n) {
    for (;;) {
      int status = 0;
      if (waitpid(pids_[n], &status, WNOHANG) == pids_[n]) {
        pids_[n] = -1;
        std::ifstream log(dir + "/etcd-" + std::to_string(n) + ".log");
        const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
        if (text.find("address already in use") != std::string::npos) {
          for (int m = 0; m < members; ++m) Kill(m);
          for (int m = 0; m < members; ++m) std::filesystem::remove_all(dir + "/etcd-" + std::to_string(m));
          return false;
        }
        throw std::runtime_error("etcd exited at start-up (is Debian's etcd-server installed?); see " + dir);
      }
      if (Healthy(client_urls_[n], options.tls)) break;
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("etcd member " + std::to_string(n) + " not healthy in 20 s; see " + dir);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return true;
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

void EtcdCluster::Pause(int n) {
  if (pids_[n] > 0) ::kill(pids_[n], SIGSTOP);
}

void EtcdCluster::Resume(int n) {
  if (pids_[n] > 0) ::kill(pids_[n], SIGCONT);
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
