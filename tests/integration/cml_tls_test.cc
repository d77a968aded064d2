// A worker's cml_url and CA over real HTTP, and the CML client against a real TLS server
// whose certificate is self-signed.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <csignal>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "clients/cml_client.h"
#include "ports/cml.h"
#include "support/db_snapshot.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/stack.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::HttpClient;
using testing::HttpResult;

json WorkerBody(const std::string& cml_url) {
  return {{"name", "w1"},
          {"hostname", "w1.example"},
          {"cml_url", cml_url},
          {"license_type", "ENTERPRISE"},
          {"capacity", {{"cpu_cores", 32}, {"memory_gb", 128}, {"storage_gb", 500}, {"max_nodes", 40}}},
          {"state", "RUNNING"}};
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A self-signed certificate for 127.0.0.1 (its own CA), made with the openssl command.
struct SelfSigned {
  std::string cert_file, key_file, pem;

  SelfSigned(const testing::TempDir& dir, const std::string& name) {
    cert_file = dir.File(name + ".crt");
    key_file = dir.File(name + ".key");
    const std::string command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
                                " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                                key_file + " -out " + cert_file + " 2>/dev/null";
    if (std::system(command.c_str()) != 0) throw std::runtime_error("openssl req failed");
    pem = ReadFile(cert_file);
  }
};

// A fake CML over TLS on a free loopback port: POST /api/v0/authenticate answers a token,
// GET /api/v0/labs answers no labs, anything else 404; one request per connection. A client
// that refuses the certificate ends the connection in or right after the handshake, unanswered.
// (`openssl s_server -www` answers GET only: a POST, as authenticate is, waits unanswered.)
class TlsCml {
 public:
  TlsCml(const std::string& cert_file, const std::string& key_file) : ctx_(SSL_CTX_new(TLS_server_method())) {
    if (!ctx_ || SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      throw std::runtime_error("TLS context");
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("listen");
    port_ = ntohs(addr.sin_port);
    // A client that refuses the certificate hangs up during the handshake: writing to it then
    // must fail with EPIPE, not end the test process with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TlsCml() {
    stop_ = true;
    thread_.join();
    close(fd_);
    SSL_CTX_free(ctx_);
  }
  TlsCml(const TlsCml&) = delete;
  TlsCml& operator=(const TlsCml&) = delete;

  std::string Url(const std::string& host = "127.0.0.1") const { return "https://" + host + ":" + std::to_string(port_); }
  // How many requests came in whole (a client that refused the certificate sends none).
  int Requests() const { return requests_; }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int conn = accept(fd_, nullptr, nullptr);
      if (conn < 0) continue;
      timeval tv{2, 0};
      setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, conn);
      if (SSL_accept(ssl) == 1 && Answer(ssl)) SSL_shutdown(ssl);
      ERR_clear_error();
      SSL_free(ssl);
      close(conn);
    }
  }

  // Reads one request, counts it, and answers it (counted first, so that a client that has
  // its answer finds it counted); false when no whole request came.
  bool Answer(SSL* ssl) {
    std::string request;
    char buf[4096];
    size_t body_needed = std::string::npos;
    while (true) {
      const auto head_end = request.find("\r\n\r\n");
      if (head_end != std::string::npos && body_needed == std::string::npos) {
        body_needed = 0;
        std::string head = request.substr(0, head_end);
        for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (auto at = head.find("content-length:"); at != std::string::npos)
          body_needed = std::stoul(head.substr(at + 15));
        body_needed += head_end + 4;
      }
      if (body_needed != std::string::npos && request.size() >= body_needed) break;
      const int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) return false;
      request.append(buf, static_cast<size_t>(n));
    }
    ++requests_;
    std::string status = "404 Not Found", body = "{}";
    if (request.rfind("POST /api/v0/authenticate ", 0) == 0) status = "200 OK", body = "\"tls-token\"";
    else if (request.rfind("GET /api/v0/labs?", 0) == 0) status = "200 OK", body = "[]";
    const std::string answer = "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    SSL_write(ssl, answer.data(), static_cast<int>(answer.size()));
    return true;
  }

  SSL_CTX* ctx_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

clients::CmlOptions Options(const std::string& ca_file = "") {
  clients::CmlOptions o;
  o.username = "admin";
  o.password = "cml-secret";
  o.ca_file = ca_file;
  o.connect_timeout = std::chrono::milliseconds(2000);
  o.total_timeout = std::chrono::milliseconds(5000);
  return o;
}

// Whether `s` failed on the certificate, not on an HTTP answer.
bool RefusedTheCertificate(const Status& s) {
  return !s && s.error().code == ErrorCode::kUnavailable &&
         s.error().message.find("POST /api/v0/authenticate") != std::string::npos &&
         (s.error().message.find("SSL") != std::string::npos ||
          s.error().message.find("certificate") != std::string::npos) &&
         s.error().message.find("HTTP ") == std::string::npos;
}

Status ListOn(clients::CmlClient& cml, const ports::CmlTarget& target) {
  auto labs = cml.ListLabs(target);
  if (!labs) return labs.error();
  EXPECT_TRUE(labs->empty());
  return {};
}

TEST(CmlTls, EachBadCmlUrlGetsA400NamingTheFieldAndWritesNothing) {
  testing::Stack stack;
  HttpClient http(stack.BaseUrl());
  const std::pair<std::string, std::string> cases[] = {
      {"ftp://cml1.example", "http:// or https://"},
      {"file:///etc/passwd", "http:// or https://"},
      {"gopher://127.0.0.1:6379/_x", "http:// or https://"},
      {"cml1.example", "http:// or https://"},
      {"https://", "must name a host"},
      {"https://:8443/", "must name a host"},
      {"https://admin:secret@cml1.example", "credentials"},
      {"https://admin@cml1.example", "credentials"},
      {"https://cml1.example/#frag", "fragment"},
      {"https://cml1.example/?x=1", "query"},
      {"https://cml1.example:0", "port from 1 to 65535"},
      {"https://cml1.example:99999", "port from 1 to 65535"},
      {"https://cml1.example\\@evil", "backslashes"},
      {"https://cml1 .example", "whitespace"},
  };
  for (const auto& [url, rule] : cases) {
    const std::string before = testing::DbSnapshot(stack.DbPath());
    HttpResult r = http.PostJson("/api/v1/workers", WorkerBody(url));
    EXPECT_EQ(r.status, 400) << url << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json") << url;
    EXPECT_EQ(r.Json().value("field", ""), "cml_url") << url << ": " << r.body;
    EXPECT_NE(r.Json().value("detail", "").find(rule), std::string::npos) << url << ": " << r.body;
    EXPECT_EQ(testing::DbSnapshot(stack.DbPath()), before) << url;
  }
  EXPECT_EQ(http.PostJson("/api/v1/workers", WorkerBody("https://cml1.example:8443/base")).status, 201);
}

TEST(CmlTls, ACaPemIsCheckedAtRegistrationStoredAndShown) {
  testing::Stack stack;
  HttpClient http(stack.BaseUrl());
  for (const std::string& bad : {std::string("/etc/ssl/certs/ca-certificates.crt"), std::string("not pem"),
                                 std::string("-----BEGIN CERTIFICATE-----\nQUJD\n")}) {
    const std::string before = testing::DbSnapshot(stack.DbPath());
    json body = WorkerBody("https://cml1.example");
    body["cml_ca_pem"] = bad;
    HttpResult r = http.PostJson("/api/v1/workers", body);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.Json().value("field", ""), "cml_ca_pem") << r.body;
    EXPECT_EQ(testing::DbSnapshot(stack.DbPath()), before);
  }
  testing::TempDir dir;
  SelfSigned cert(dir, "cml");
  json body = WorkerBody("https://cml1.example");
  body["cml_ca_pem"] = cert.pem;
  HttpResult created = http.PostJson("/api/v1/workers", body);
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.Json()["id"];
  EXPECT_EQ(http.Get("/api/v1/workers/" + id).Json()["cml_ca_pem"], cert.pem);
}

TEST(CmlTls, TheAllowListRefusesOtherHostsAtRegistration) {
  testing::TempDir dir;
  testing::CcmProcess ccm(dir.path(), {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                       {"CCM_RECONCILERS", "false"},
                                       {"CML_URL_ALLOW", ".lab.example.com,10.0.0.5"}});
  HttpClient http(ccm.BaseUrl());
  for (const std::string url : {"https://cml1.example.com", "https://lab.example.com", "http://169.254.169.254",
                                "http://127.0.0.1:8080", "https://cml1.lab.example.com.evil.net"}) {
    HttpResult r = http.PostJson("/api/v1/workers", WorkerBody(url));
    EXPECT_EQ(r.status, 400) << url << ": " << r.body;
    EXPECT_EQ(r.Json().value("field", ""), "cml_url") << r.body;
    EXPECT_NE(r.Json().value("detail", "").find("CML_URL_ALLOW"), std::string::npos) << r.body;
  }
  EXPECT_EQ(http.Get("/api/v1/workers").Json()["items"].size(), 0u);
  EXPECT_EQ(http.PostJson("/api/v1/workers", WorkerBody("https://cml1.lab.example.com")).status, 201);
  EXPECT_EQ(http.PostJson("/api/v1/workers", WorkerBody("http://10.0.0.5:8080")).status, 201);
}

TEST(CmlTls, ASelfSignedCmlIsRefusedWithoutItsCaAndAcceptedWithIt) {
  testing::TempDir dir;
  SelfSigned cert(dir, "cml");
  TlsCml server(cert.cert_file, cert.key_file);

  clients::CmlClient system_store(Options());
  const Status refused = ListOn(system_store, {server.Url()});
  EXPECT_TRUE(RefusedTheCertificate(refused)) << (refused ? "accepted" : refused.error().message);
  EXPECT_EQ(server.Requests(), 0);  // refused before any request, and so the password, was sent

  clients::CmlClient with_pem(Options());
  const Status accepted = ListOn(with_pem, {server.Url(), cert.pem});
  EXPECT_TRUE(accepted) << accepted.error().message;
  EXPECT_EQ(server.Requests(), 2);  // authenticate, then the labs
  // The same client, the same URL without the worker's CA: refused again.
  EXPECT_TRUE(RefusedTheCertificate(ListOn(with_pem, {server.Url()})));

  clients::CmlClient with_file(Options(cert.cert_file));  // CML_CA_FILE
  const Status by_file = ListOn(with_file, {server.Url()});
  EXPECT_TRUE(by_file) << by_file.error().message;
}

TEST(CmlTls, TheCaDoesNotExcuseAnotherCaOrAWrongName) {
  testing::TempDir dir;
  SelfSigned cert(dir, "cml");
  SelfSigned other(dir, "other");
  TlsCml server(cert.cert_file, cert.key_file);

  clients::CmlClient cml(Options(cert.cert_file));
  // A worker's own CA replaces CML_CA_FILE: another CA does not verify this server.
  EXPECT_TRUE(RefusedTheCertificate(ListOn(cml, {server.Url(), other.pem})));
  // The certificate names 127.0.0.1 only: verified by its CA, but not for "localhost".
  clients::CmlClient by_pem(Options());
  EXPECT_TRUE(RefusedTheCertificate(ListOn(by_pem, {server.Url("localhost"), cert.pem})));
  // Refused before any request: the name is checked once the handshake is done, before the
  // request is sent.
  EXPECT_EQ(server.Requests(), 0);
}

}  // namespace
}  // namespace ccm
