// etcd as production runs it: a real member that serves only TLS and requires a client
// certificate signed by its CA (--client-cert-auth), with authentication on (a root user and
// a `ccm` user whose role may read and write /ccm...), and simple tokens that expire after
// two seconds of disuse. Certificates are made by the test with openssl.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>

#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "store/etcd/etcd_client.h"
#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace ccm {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using testing::Eventually;

constexpr int kTokenTtlSeconds = 2;
const std::string kCcmPassword = "ccm-etcd-secret";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class EtcdTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    certs_ = new testing::TestCertificates(dir_->File("pki"));
    testing::EtcdClusterOptions options;
    options.tls = testing::EtcdTls{certs_->ca_file, certs_->member_cert, certs_->member_key, certs_->client_cert,
                                   certs_->client_key};
    options.extra_args = {"--auth-token-ttl=" + std::to_string(kTokenTtlSeconds)};
    etcd_ = new testing::EtcdCluster(dir_->File("etcd"), options);
    // Users and roles with etcdctl (Debian's etcd-client), as docs/operations.md creates them.
    const std::string etcdctl = "ETCDCTL_API=3 etcdctl --endpoints " + etcd_->ClientUrls()[0] + " --cacert " +
                                certs_->ca_file + " --cert " + certs_->client_cert + " --key " + certs_->client_key + " ";
    for (const std::string& step : std::vector<std::string>{"user add root:root-secret", "role add root", "user grant-role root root",
                                   "user add ccm:" + kCcmPassword, "role add ccm",
                                   "role grant-permission ccm --prefix=true readwrite /ccm", "user grant-role ccm ccm",
                                   "auth enable"}) {
      FILE* p = popen((etcdctl + step + " 2>&1").c_str(), "r");
      std::string output;
      char buf[1024];
      for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) output.append(buf, n);
      if (pclose(p) != 0) throw std::runtime_error("etcdctl " + step + ": " + output);
    }
  }
  static void TearDownTestSuite() {
    delete etcd_;
    delete certs_;
    delete dir_;
  }

  // Client options for the member: its CA, the client certificate, and `user` (none if empty).
  static store::etcd::ClientOptions ClientOptions(const std::string& user, const std::string& password = kCcmPassword) {
    store::etcd::ClientOptions o;
    o.endpoints = etcd_->ClientUrls();
    o.ca_file = certs_->ca_file;
    o.cert_file = certs_->client_cert;
    o.key_file = certs_->client_key;
    o.username = user;
    o.password = user.empty() ? "" : password;
    return o;
  }

  // The settings of a `ccm serve` on the member under `prefix`, its password from a file.
  std::map<std::string, std::string> ServeSettings(const std::string& prefix) {
    const std::string password_file = work_.File("etcd-password");
    std::ofstream(password_file) << kCcmPassword << "\n";
    return {{"CCM_STORE", etcd_->StoreSetting()},
            {"CCM_ETCD_PREFIX", prefix},
            {"CCM_ETCD_CA_FILE", certs_->ca_file},
            {"CCM_ETCD_CERT_FILE", certs_->client_cert},
            {"CCM_ETCD_KEY_FILE", certs_->client_key},
            {"CCM_ETCD_USERNAME", "ccm"},
            {"CCM_ETCD_PASSWORD_FILE", password_file}};
  }

  // Runs `ccm serve` with `settings` as its YAML config until it exits (at most 20 s): its
  // exit code and everything it wrote.
  std::pair<int, std::string> ServeUntilExit(std::map<std::string, std::string> settings) {
    settings["CCM_LISTEN"] = "127.0.0.1:0";
    const std::string config = work_.File("ccm.yaml");
    {
      std::ofstream out(config);
      for (const auto& [k, v] : settings) out << k << ": '" << v << "'\n";
    }
    FILE* p = popen(("timeout 20 " + std::string(CCM_BINARY) + " serve --insecure-no-auth --config " + config + " 2>&1").c_str(),
                    "r");
    std::string output;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) output.append(buf, n);
    const int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
  }

  static testing::TempDir* dir_;
  static testing::TestCertificates* certs_;
  static testing::EtcdCluster* etcd_;
  testing::TempDir work_;
};

testing::TempDir* EtcdTls::dir_ = nullptr;
testing::TestCertificates* EtcdTls::certs_ = nullptr;
testing::EtcdCluster* EtcdTls::etcd_ = nullptr;

TEST_F(EtcdTls, ServeOnHttpsWithAPasswordCreatesAndReadsBackThroughTheApi) {
  const std::string log = work_.File("ccm.log");
  testing::CcmProcess ccm(work_.path(), ServeSettings("/ccm/serve"), false, log);
  testing::HttpClient api(ccm.BaseUrl());
  const json def = testing::SampleDefinitionBody(testing::ReadTestData("sample_lab_template.yaml"));
  auto created = api.PostJson("/api/v1/definitions", def);
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string definition = created.Json()["id"];
  const auto now = std::chrono::system_clock::now();
  auto instance = api.PostJson("/api/v1/instances", {{"definition_id", definition},
                                                     {"owner_id", "candidate-1"},
                                                     {"timeslot_start", testing::Rfc3339(now + 2h)},
                                                     {"timeslot_end", testing::Rfc3339(now + 3h)}});
  ASSERT_EQ(instance.status, 201) << instance.body;
  const std::string instance_id = instance.Json()["id"];

  // ccm's loops use its token every second, which keeps it alive: stop the process for
  // longer than the token lives, so that it expires. The next calls sign in again, unseen by
  // the callers.
  ::kill(ccm.pid(), SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(kTokenTtlSeconds + 2));
  ::kill(ccm.pid(), SIGCONT);
  auto read_def = api.Get("/api/v1/definitions/" + definition);
  EXPECT_EQ(read_def.status, 200) << read_def.body;
  EXPECT_EQ(read_def.Json().value("name", ""), "devasc-lab");
  auto read_instance = api.Get("/api/v1/instances/" + instance_id);
  EXPECT_EQ(read_instance.status, 200) << read_instance.body;
  EXPECT_EQ(read_instance.Json().value("owner_id", ""), "candidate-1");

  // The keys are in the TLS member, under the prefix, readable by the ccm user.
  store::etcd::Client reader(ClientOptions("ccm"));
  auto keys = reader.Range("/ccm/serve/", store::etcd::PrefixEnd("/ccm/serve/"), 0, true);
  ASSERT_TRUE(keys) << keys.error().message;
  EXPECT_GT(keys->count, 1);
  ccm.Kill(SIGTERM);
  EXPECT_EQ(ReadAll(log).find(kCcmPassword), std::string::npos) << "the etcd password reached the log";
}

TEST_F(EtcdTls, AMemberCertificateFromAnotherCaStopsTheStartNamingTheSetting) {
  auto settings = ServeSettings("/ccm/wrong-ca");
  settings["CCM_ETCD_CA_FILE"] = certs_->other_ca_file;
  auto [rc, output] = ServeUntilExit(settings);
  EXPECT_EQ(rc, 1) << output;
  EXPECT_NE(output.find("cannot use the store"), std::string::npos) << output;
  EXPECT_NE(output.find("CCM_ETCD_CA_FILE"), std::string::npos) << output;
  EXPECT_NE(output.find("certificate"), std::string::npos) << output;
}

TEST_F(EtcdTls, AWrongPasswordStopsTheStartWithoutShowingIt) {
  const std::string wrong = "not-the-password";
  auto settings = ServeSettings("/ccm/wrong-password");
  settings.erase("CCM_ETCD_PASSWORD_FILE");
  settings["CCM_ETCD_PASSWORD"] = wrong;
  auto [rc, output] = ServeUntilExit(settings);
  EXPECT_EQ(rc, 1) << output;
  EXPECT_NE(output.find("signing in as user 'ccm' failed"), std::string::npos) << output;
  EXPECT_NE(output.find("invalid user ID or password"), std::string::npos) << output;
  EXPECT_EQ(output.find(wrong), std::string::npos) << output;
}

TEST_F(EtcdTls, WithoutAClientCertificateTheMemberRefusesTheConnection) {
  auto settings = ServeSettings("/ccm/no-cert");
  settings.erase("CCM_ETCD_CERT_FILE");
  settings.erase("CCM_ETCD_KEY_FILE");
  auto [rc, output] = ServeUntilExit(settings);
  EXPECT_EQ(rc, 1) << output;
  EXPECT_NE(output.find("cannot use the store"), std::string::npos) << output;
  EXPECT_NE(output.find("client certificate"), std::string::npos) << output;

  // The same through the client: no answer without the certificate, whatever the password.
  auto options = ClientOptions("ccm");
  options.cert_file.clear();
  options.key_file.clear();
  store::etcd::Client client(options);
  auto r = client.Range("/ccm/x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
}

TEST_F(EtcdTls, AClientCertificateWithACommonNameServesWithThePasswordAndAloneAsItsUser) {
  // With a password, the token decides who calls, whatever the certificate's CN: signed in as
  // ccm with a certificate naming root, the keys of ccm and no others.
  auto options = ClientOptions("ccm");
  options.cert_file = certs_->root_client_cert;
  options.key_file = certs_->root_client_key;
  store::etcd::Client signed_in(options);
  auto put = signed_in.Txn({}, {store::etcd::PutOp("/ccm/named/a", "1")});
  ASSERT_TRUE(put) << put.error().message;
  EXPECT_EQ(signed_in.authentications(), 1u);
  auto not_root = signed_in.Txn({}, {store::etcd::PutOp("/other/a", "1")});
  ASSERT_FALSE(not_root);
  EXPECT_NE(not_root.error().message.find("permission denied"), std::string::npos) << not_root.error().message;

  // Without a user, etcd takes the CN (ccm) as the user: the same keys, and no others.
  options.cert_file = certs_->named_client_cert;
  options.key_file = certs_->named_client_key;
  options.username.clear();
  options.password.clear();
  store::etcd::Client by_certificate(options);
  auto read = by_certificate.Range("/ccm/named/a");
  ASSERT_TRUE(read) << read.error().message;
  ASSERT_EQ(read->kvs.size(), 1u);
  EXPECT_EQ(read->kvs[0].value, "1");
  EXPECT_EQ(by_certificate.authentications(), 0u);
  auto outside = by_certificate.Range("/other/a");
  ASSERT_FALSE(outside);
  EXPECT_NE(outside.error().message.find("permission denied"), std::string::npos) << outside.error().message;
}

TEST_F(EtcdTls, AKeyThatIsNotTheCertificatesIsNamedBeforeAnyHandshake) {
  auto options = ClientOptions("ccm");
  options.key_file = certs_->named_client_key;  // another certificate's key
  store::etcd::Client client(options);
  auto r = client.Range("/ccm/x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("CCM_ETCD_KEY_FILE (" + certs_->named_client_key + ") is not the key of "
                                   "CCM_ETCD_CERT_FILE"),
            std::string::npos)
      << r.error().message;
  // A certificate file without a certificate is named too.
  options.key_file = certs_->client_key;
  options.cert_file = certs_->client_key;
  store::etcd::Client no_certificate(options);
  auto refused = no_certificate.Range("/ccm/x");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("CCM_ETCD_CERT_FILE (" + certs_->client_key + ") holds no certificate"),
            std::string::npos)
      << refused.error().message;
}

TEST_F(EtcdTls, WithoutAUserEtcdRefusesAndWithOneTheExpiredTokenIsRenewed) {
  store::etcd::Client anonymous(ClientOptions(""));
  auto refused = anonymous.Range("/ccm/token/a");
  ASSERT_FALSE(refused) << "authentication is not on";

  store::etcd::Client client(ClientOptions("ccm"));
  auto put = client.Txn({}, {store::etcd::PutOp("/ccm/token/a", "1")});
  ASSERT_TRUE(put) << put.error().message;
  EXPECT_EQ(client.authentications(), 1u);
  // In use, the token lives on.
  for (int n = 0; n < 4; ++n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500 * kTokenTtlSeconds / 2));
    ASSERT_TRUE(client.Range("/ccm/token/a"));
  }
  EXPECT_EQ(client.authentications(), 1u);
  // Unused for longer than --auth-token-ttl, it expires: the next call signs in again and
  // succeeds.
  std::this_thread::sleep_for(std::chrono::seconds(kTokenTtlSeconds + 2));
  auto read = client.Range("/ccm/token/a");
  ASSERT_TRUE(read) << read.error().message;
  ASSERT_EQ(read->kvs.size(), 1u);
  EXPECT_EQ(read->kvs[0].value, "1");
  EXPECT_EQ(client.authentications(), 2u);

  // Outside the role's keys, a valid token does not help.
  auto outside = client.Range("/other");
  ASSERT_FALSE(outside);
  EXPECT_NE(outside.error().message.find("permission denied"), std::string::npos) << outside.error().message;
}

TEST_F(EtcdTls, TheWatchSeesChangesOverTlsAfterItsTokenExpired) {
  std::atomic<int> woken{0};
  store::etcd::Watch watch(ClientOptions("ccm"), "/ccm/watch/", [&] { ++woken; });
  watch.Start();
  ASSERT_TRUE(Eventually([&] { return watch.batches() >= 1; }, 5s)) << "the watch was not created";
  store::etcd::Client writer(ClientOptions("ccm"));
  ASSERT_TRUE(writer.Txn({}, {store::etcd::PutOp("/ccm/watch/a", "1")}));
  EXPECT_TRUE(Eventually([&] { return watch.batches() >= 2; }, 5s));
  std::this_thread::sleep_for(std::chrono::seconds(kTokenTtlSeconds + 2));
  ASSERT_TRUE(writer.Txn({}, {store::etcd::PutOp("/ccm/watch/b", "2")}));
  EXPECT_TRUE(Eventually([&] { return watch.batches() >= 3; }, 5s));
  watch.Stop();

  // A watch on keys its user may not read is cancelled by etcd and never reports a change.
  store::etcd::Watch outside(ClientOptions("ccm"), "/other/", [] {});
  outside.Start();
  std::this_thread::sleep_for(1500ms);
  ASSERT_TRUE(writer.Txn({}, {store::etcd::PutOp("/ccm/watch/c", "3")}));
  outside.Stop();
  EXPECT_EQ(outside.batches(), 0u);
}

TEST_F(EtcdTls, ReplicasElectALeaderOverTlsAndTheOtherTakesOver) {
  auto settings = ServeSettings("/ccm/replicas");
  settings["CCM_LEADER_TTL_SECONDS"] = "2";
  std::vector<std::unique_ptr<testing::TempDir>> dirs;
  std::vector<std::unique_ptr<testing::CcmProcess>> ccm;
  std::vector<std::unique_ptr<testing::HttpClient>> http;
  for (int n = 0; n < 2; ++n) {
    dirs.push_back(std::make_unique<testing::TempDir>());
    ccm.push_back(std::make_unique<testing::CcmProcess>(dirs[n]->path(), settings, false, dirs[n]->File("ccm.log")));
    http.push_back(std::make_unique<testing::HttpClient>(ccm[n]->BaseUrl()));
  }
  auto leader = [&](const std::set<int>& alive) {
    int found = -1, leaders = 0;
    for (int n : alive) {
      auto r = http[n]->Get("/health/ready");
      if (r.status == 200 && r.Json().value("leader", false)) {
        found = n;
        ++leaders;
      }
    }
    return leaders == 1 ? found : -1;
  };
  ASSERT_TRUE(Eventually([&] { return leader({0, 1}) >= 0; }, 10s));
  const int first = leader({0, 1});
  const int other = 1 - first;
  // A definition made through the follower is served by the leader (one store, over TLS).
  const json def = testing::SampleDefinitionBody(testing::ReadTestData("sample_lab_template.yaml"));
  auto created = http[other]->PostJson("/api/v1/definitions", def);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(http[first]->Get("/api/v1/definitions/" + created.Json()["id"].get<std::string>()).status, 200);

  ccm[first]->Kill(SIGKILL);
  EXPECT_TRUE(Eventually([&] { return leader({other}) == other; }, 10s)) << ReadAll(dirs[other]->File("ccm.log"));
}

}  // namespace
}  // namespace ccm
