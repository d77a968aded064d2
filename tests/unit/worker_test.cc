#include "domain/worker.h"

#include <gtest/gtest.h>

#include <set>

#include "domain/definition.h"
#include "domain/lifecycle.h"
#include "support/fixtures.h"

namespace ccm::domain {
namespace {

LabletDefinition Def(int ports, int nodes = 2, Resources r = {4, 8, 10}) {
  LabletDefinition d;
  d.id = {"def"};
  d.version = "1.0.0";
  d.resource_requirements = r;
  d.license_affinity = {LicenseType::kEnterprise, LicenseType::kPersonal};
  d.node_count = nodes;
  for (int i = 0; i < ports; ++i) d.port_template.push_back({"serial_" + std::to_string(i + 1), "serial"});
  return d;
}

Worker RunningWorker(LicenseType licence = LicenseType::kEnterprise, int max_nodes = 100) {
  WorkerDraft d = ccm::testing::MakeWorkerDraft("w1", {32, 128, 500}, max_nodes);
  d.license_type = licence;
  auto w = NewWorker(d, {"w1"}, FromUnixMillis(0), "test");
  EXPECT_TRUE(w);
  return *w;
}

TEST(Worker, AllocatesTheLowestFreePortsAndReusesReleasedOnes) {
  Worker w = RunningWorker();
  auto a = w.Allocate({"a"}, Def(3));
  auto b = w.Allocate({"b"}, Def(2));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, (PortMap{{"serial_1", 2000}, {"serial_2", 2001}, {"serial_3", 2002}}));
  EXPECT_EQ(*b, (PortMap{{"serial_1", 2003}, {"serial_2", 2004}}));
  w.ReleasePorts({"a"});
  auto c = w.Allocate({"c"}, Def(4));
  ASSERT_TRUE(c);
  EXPECT_EQ(*c, (PortMap{{"serial_1", 2000}, {"serial_2", 2001}, {"serial_3", 2002}, {"serial_4", 2005}}));
}

TEST(Worker, NeverHandsOutAPortTwiceUntilExhaustedThenSaysSo) {
  Worker w = RunningWorker();
  w.port_range_start = 3000;
  w.port_range_end = 3009;  // 10 ports
  w.capacity = {1000, 1000, 1000};
  std::set<int> seen;
  for (int i = 0; i < 5; ++i) {
    auto p = w.Allocate({"i" + std::to_string(i)}, Def(2, 1, {1, 1, 0}));
    ASSERT_TRUE(p) << p.error().message;
    for (const auto& [_, port] : *p) EXPECT_TRUE(seen.insert(port).second) << port;
  }
  auto full = w.Allocate({"last"}, Def(1, 1, {1, 1, 0}));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(full.error().message.find("ports exhausted: 0 free in 3000-3009"), std::string::npos)
      << full.error().message;
  EXPECT_FALSE(w.reservations.count("last"));
}

TEST(Worker, ChecksEachResourceAndNamesTheShortOne) {
  Worker w = RunningWorker();
  ASSERT_TRUE(w.Allocate({"a"}, Def(0, 2, {30, 8, 10})));
  auto cpu = w.CheckFits(Def(0, 2, {4, 8, 10}));
  ASSERT_FALSE(cpu);
  EXPECT_NE(cpu.error().message.find("not enough cpu: 2 cores free, 4 needed"), std::string::npos)
      << cpu.error().message;
  EXPECT_NE(w.CheckFits(Def(0, 2, {1, 200, 0})).error().message.find("memory"), std::string::npos);
  EXPECT_NE(w.CheckFits(Def(0, 2, {1, 1, 600})).error().message.find("storage"), std::string::npos);
  EXPECT_NE(w.CheckFits(Def(0, 99, {1, 1, 0})).error().message.find("node limit"), std::string::npos);
  EXPECT_TRUE(w.CheckFits(Def(0, 2, {2, 8, 10})));
}

TEST(Worker, PersonalLicenceCapsNodesAtTwenty) {
  Worker w = RunningWorker(LicenseType::kPersonal, 100);
  EXPECT_EQ(w.EffectiveMaxNodes(), 20);
  ASSERT_TRUE(w.Allocate({"a"}, Def(0, 15, {1, 1, 0})));
  auto over = w.Allocate({"b"}, Def(0, 6, {1, 1, 0}));
  ASSERT_FALSE(over);
  EXPECT_NE(over.error().message.find("node limit: 5 nodes free, 6 needed"), std::string::npos);
  EXPECT_TRUE(w.Allocate({"c"}, Def(0, 5, {1, 1, 0})));
}

TEST(Worker, RefusesWhenNotRunningOrLicenceNotInAffinity) {
  Worker w = RunningWorker(LicenseType::kEvaluation);
  auto licence = w.CheckFits(Def(1));
  ASSERT_FALSE(licence);
  EXPECT_NE(licence.error().message.find("EVALUATION"), std::string::npos);
  Worker d = RunningWorker();
  ASSERT_TRUE(d.MoveTo(WorkerState::kDraining, FromUnixMillis(1), "scale down", "test"));
  auto draining = d.CheckFits(Def(1));
  ASSERT_FALSE(draining);
  EXPECT_NE(draining.error().message.find("DRAINING"), std::string::npos);
}

TEST(Worker, ReleasingGivesBackExactlyWhatWasTaken) {
  Worker w = RunningWorker();
  ASSERT_TRUE(w.Allocate({"a"}, Def(2, 3, {4, 8, 10})));
  ASSERT_TRUE(w.Allocate({"b"}, Def(1, 2, {2, 4, 5})));
  EXPECT_EQ(w.Allocated(), (Reservation{{6, 12, 15}, 5}));
  w.ReleaseCapacity({"a"});
  EXPECT_EQ(w.Allocated(), (Reservation{{2, 4, 5}, 2}));
  EXPECT_EQ(w.ActiveInstances(), 2);  // a still holds ports
  w.ReleasePorts({"a"});
  w.ReleasePorts({"a"});  // twice is harmless
  EXPECT_EQ(w.ActiveInstances(), 1);
  EXPECT_EQ(w.FreePorts(), 8000 - 1);
  EXPECT_FALSE(w.Allocate({"b"}, Def(1)));  // b holds an allocation already
}

TEST(Worker, StopsOnlyWithoutActiveInstances) {
  Worker w = RunningWorker();
  ASSERT_TRUE(w.Allocate({"a"}, Def(1)));
  ASSERT_TRUE(w.MoveTo(WorkerState::kDraining, FromUnixMillis(1), "drain", "test"));
  auto busy = w.MoveTo(WorkerState::kStopping, FromUnixMillis(2), "stop", "test");
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(w.state, WorkerState::kDraining);
  w.ReleaseCapacity({"a"});
  w.ReleasePorts({"a"});
  ASSERT_TRUE(w.MoveTo(WorkerState::kStopping, FromUnixMillis(3), "stop", "test"));
  auto illegal = w.MoveTo(WorkerState::kRunning, FromUnixMillis(4), "", "test");
  ASSERT_FALSE(illegal);
  EXPECT_EQ(illegal.error().message, "worker is STOPPING and cannot move to RUNNING; allowed: STOPPED");
  EXPECT_EQ(w.state_history.size(), 4u);  // PROVISIONING, RUNNING, DRAINING, STOPPING
}

TEST(NewWorker, NamesTheBadField) {
  const std::pair<void (*)(WorkerDraft&), const char*> cases[] = {
      {[](WorkerDraft& d) { d.name = ""; }, "name"},
      {[](WorkerDraft& d) { d.hostname = ""; }, "hostname"},
      {[](WorkerDraft& d) { d.cml_url = "ftp://x"; }, "cml_url"},
      {[](WorkerDraft& d) { d.capacity.cpu_cores = 0; }, "capacity.cpu_cores"},
      {[](WorkerDraft& d) { d.capacity.memory_gb = 0; }, "capacity.memory_gb"},
      {[](WorkerDraft& d) { d.capacity.storage_gb = -1; }, "capacity.storage_gb"},
      {[](WorkerDraft& d) { d.max_nodes = 0; }, "capacity.max_nodes"},
      {[](WorkerDraft& d) { d.port_range_start = 0; }, "port_range.start"},
      {[](WorkerDraft& d) { d.port_range_end = 1000; }, "port_range.end"},
      {[](WorkerDraft& d) { d.initial_state = WorkerState::kDraining; }, "state"},
  };
  for (const auto& [mutate, field] : cases) {
    WorkerDraft d = ccm::testing::MakeWorkerDraft("w", {1, 1, 1}, 1);
    mutate(d);
    auto w = NewWorker(d, {"w"}, FromUnixMillis(0), "t");
    ASSERT_FALSE(w) << field;
    EXPECT_EQ(w.error().field, field);
  }
}

TEST(Worker, IsIdleFromWhenItsLastInstanceGivesEverythingBack) {
  Worker w = RunningWorker();
  EXPECT_EQ(w.idle_since, FromUnixMillis(0));  // registered RUNNING with nothing on it
  LabletInstance a, b;
  a.id = {"a"};
  b.id = {"b"};
  a.state = b.state = InstanceState::kRunning;
  ASSERT_TRUE(w.Allocate(a.id, Def(1)));
  ASSERT_TRUE(w.Allocate(b.id, Def(1)));
  a.worker_id = b.worker_id = w.id;
  ASSERT_TRUE(MoveInstance(a, &w, InstanceState::kStopping, FromUnixMillis(5), "", "t"));
  ASSERT_TRUE(MoveInstance(a, &w, InstanceState::kStopped, FromUnixMillis(6), "", "t"));
  ASSERT_TRUE(MoveInstance(a, &w, InstanceState::kArchived, FromUnixMillis(7), "", "t"));
  ASSERT_TRUE(MoveInstance(a, &w, InstanceState::kTerminated, FromUnixMillis(8), "", "t"));
  EXPECT_EQ(w.idle_since, FromUnixMillis(0));  // b still holds its share
  ASSERT_TRUE(MoveInstance(b, &w, InstanceState::kStopping, FromUnixMillis(9), "", "t"));
  ASSERT_TRUE(MoveInstance(b, &w, InstanceState::kStopped, FromUnixMillis(10), "", "t"));
  ASSERT_TRUE(MoveInstance(b, &w, InstanceState::kArchived, FromUnixMillis(11), "", "t"));
  EXPECT_EQ(w.idle_since, FromUnixMillis(0));  // ARCHIVED keeps its ports
  ASSERT_TRUE(MoveInstance(b, &w, InstanceState::kTerminated, FromUnixMillis(12), "", "t"));
  EXPECT_EQ(w.idle_since, FromUnixMillis(12));
  EXPECT_EQ(w.ActiveInstances(), 0);
}

TEST(Worker, ARequestedWorkerTakesTheMachineItIsGiven) {
  Worker w = RequestedWorker({"w9"}, "cml-enterprise", FromUnixMillis(0));
  EXPECT_TRUE(w.scaled_up);
  EXPECT_EQ(w.state, WorkerState::kPending);
  EXPECT_EQ(w.template_name, "cml-enterprise");
  WorkerDraft machine = ccm::testing::MakeWorkerDraft("cloud-1", {16, 64, 100}, 40);
  machine.cml_url = "ftp://cloud-1";
  auto bad = w.Provisioned(machine);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "cml_url");
  EXPECT_TRUE(w.cml_url.empty());  // nothing taken from a refused machine
  machine.cml_url = "https://cloud-1";
  ASSERT_TRUE(w.Provisioned(machine));
  EXPECT_EQ(w.hostname, "cloud-1.example");
  EXPECT_EQ(w.capacity.cpu_cores, 16);
  EXPECT_EQ(w.max_nodes, 40);
  EXPECT_EQ(w.name, "scaled-w9");
}

TEST(WorkerCmlUrl, AcceptsAnHttpOrHttpsUrlWithAHostAndOptionalPortAndPath) {
  for (const char* url : {"http://cml1", "https://cml1.lab.example.com", "https://cml1:8443", "http://10.0.0.5/",
                          "https://10.0.0.5:443/base", "https://[fd00::5]", "https://[fd00::5]:8443/"})
    EXPECT_TRUE(CheckCmlUrl(url)) << url;
}

TEST(WorkerCmlUrl, RefusesEachBrokenRuleNamingTheFieldAndTheRule) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "http:// or https://"},
      {"ftp://cml1", "http:// or https://"},
      {"file:///etc/passwd", "http:// or https://"},
      {"gopher://cml1:70/", "http:// or https://"},
      {"HTTPS://cml1", "http:// or https://"},
      {"cml1:443", "http:// or https://"},
      {"https://", "must name a host"},
      {"https:///api", "must name a host"},
      {"https://:443", "must name a host"},
      {"https://admin:secret@cml1", "credentials"},
      {"https://admin@cml1", "credentials"},
      {"https://cml1#x", "fragment"},
      {"https://cml1/a?b=c", "query"},
      {"https://cml1:0", "port from 1 to 65535"},
      {"https://cml1:65536", "port from 1 to 65535"},
      {"https://cml1:", "port from 1 to 65535"},
      {"https://cml1:44x", "port from 1 to 65535"},
      {"https://cml 1", "whitespace"},
      {"https://cml1\n", "whitespace"},
      {"https://cml1\\@evil", "backslashes"},
      {"https://cml%31", "host of letters"},
      {"https://[fd00::5", "closing ]"},
      {"https://[fd00::5]x", "only a port"},
      {"https://[zz]", "IPv6 host"},
  };
  for (const auto& [url, rule] : cases) {
    auto s = CheckCmlUrl(url);
    ASSERT_FALSE(s) << url;
    EXPECT_EQ(s.error().field, "cml_url") << url;
    EXPECT_NE(s.error().message.find(rule), std::string::npos) << url << ": " << s.error().message;
  }
  EXPECT_FALSE(CheckCmlUrl("https://" + std::string(2100, 'a')));
}

TEST(WorkerCmlUrl, RegistrationAndTheProvidersMachineFollowTheSameRule) {
  WorkerDraft d = ccm::testing::MakeWorkerDraft("w", {1, 1, 1}, 1);
  d.cml_url = "https://admin:secret@cml1";
  auto w = NewWorker(d, {"w"}, FromUnixMillis(0), "t");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().field, "cml_url");
  Worker requested = RequestedWorker({"w9"}, "cml-enterprise", FromUnixMillis(0));
  auto s = requested.Provisioned(d);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().field, "cml_url");
}

TEST(WorkerCmlUrl, HostIsLowerCaseWithoutBracketsOrPort) {
  EXPECT_EQ(CmlUrlHost("https://CML1.Lab.Example.com:8443/x"), "cml1.lab.example.com");
  EXPECT_EQ(CmlUrlHost("https://[FD00::5]:443"), "fd00::5");
  EXPECT_EQ(CmlUrlHost("https://u@cml1"), "");
}

TEST(WorkerCmlUrl, AllowListTakesSuffixesAndExactHosts) {
  const CmlUrlAllowList allow{{".lab.example.com", "10.0.0.5", "CML-Edge"}};
  for (const char* ok : {"https://cml1.lab.example.com", "https://a.b.LAB.example.com:8443", "http://10.0.0.5:80",
                         "https://cml-edge/"})
    EXPECT_TRUE(allow.Check(ok)) << ok;
  for (const char* refused : {"https://lab.example.com", "https://evillab.example.com", "https://cml1.lab.example.com.evil",
                              "http://10.0.0.50", "http://169.254.169.254", "https://cml-edge.other"}) {
    auto s = allow.Check(refused);
    ASSERT_FALSE(s) << refused;
    EXPECT_EQ(s.error().field, "cml_url");
    EXPECT_NE(s.error().message.find("CML_URL_ALLOW"), std::string::npos) << s.error().message;
  }
  EXPECT_FALSE(allow.Check("https://u:p@cml1.lab.example.com"));  // the URL rule comes first
  EXPECT_TRUE(CmlUrlAllowList{}.Check("https://anything"));       // no list: every host
}

constexpr const char* kPem =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUQ2Vy\n"
    "dGlmaWNhdGU=\n"
    "-----END CERTIFICATE-----\n";

TEST(WorkerCaPem, AcceptsOneOrMoreCertificateBlocks) {
  EXPECT_TRUE(CheckCaPem(kPem));
  EXPECT_TRUE(CheckCaPem(std::string(kPem) + "\r\n" + kPem));
  WorkerDraft d = ccm::testing::MakeWorkerDraft("w", {1, 1, 1}, 1);
  d.cml_ca_pem = kPem;
  auto w = NewWorker(d, {"w"}, FromUnixMillis(0), "t");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->cml_ca_pem, kPem);
}

TEST(WorkerCaPem, RefusesWhatIsNotACertificateBundle) {
  const std::string begin = "-----BEGIN CERTIFICATE-----\n";
  const std::string end = "-----END CERTIFICATE-----\n";
  for (const std::string& pem : std::vector<std::string>{
           std::string("   \n"), std::string("/etc/ssl/certs/ca.pem"), "junk\n" + std::string(kPem),
        std::string(kPem) + "junk", begin + "QUJD\n", begin + end, begin + "QUJ\n" + end, begin + "QU*D\n" + end,
        begin + "QQ==QUJD\n" + end, std::string("-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n"),
        begin + std::string(kMaxCmlCaPemBytes, 'A') + end}) {
    auto s = CheckCaPem(pem);
    ASSERT_FALSE(s) << pem.substr(0, 80);
    EXPECT_EQ(s.error().field, "cml_ca_pem");
  }
  WorkerDraft d = ccm::testing::MakeWorkerDraft("w", {1, 1, 1}, 1);
  d.cml_ca_pem = "not a pem";
  auto w = NewWorker(d, {"w"}, FromUnixMillis(0), "t");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().field, "cml_ca_pem");
}

}  // namespace
}  // namespace ccm::domain
