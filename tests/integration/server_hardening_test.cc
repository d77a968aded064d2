// `ccm serve` under hostile input and a hostile host, each tested against the real process:
// malformed HTTP framing, running out of descriptors, a second process on the same SQLite
// file, a full disk, and timeslots from another era.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "support/http_client.h"
#include "support/jwt_mint.h"
#include "support/process.h"
#include "support/raw_socket.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"
#include "support/wait.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::HttpClient;
using testing::RawSocket;
using namespace std::chrono_literals;

std::uint16_t PortOf(const std::string& base_url) {
  return static_cast<std::uint16_t>(std::stoi(base_url.substr(base_url.rfind(':') + 1)));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `ccm serve` started through bash with `ulimit_args` applied first (ulimit -n 128: soft
// and hard; ulimit -Sn 256: soft only), its output in `log`.
std::unique_ptr<testing::ChildProcess> CcmWithUlimit(const testing::TempDir& dir, const std::string& ulimit_args,
                                                    const std::string& log) {
  return std::make_unique<testing::ChildProcess>(
      std::vector<std::string>{"/bin/bash", "-c", "ulimit " + ulimit_args + " && exec \"$@\"", "ccm", CCM_BINARY,
                               "serve", "--ready-file", dir.File("ready"), "--insecure-no-auth"},
      std::map<std::string, std::string>{{"CCM_LISTEN", "127.0.0.1:0"},
                                         {"CCM_LOG_LEVEL", "info"},
                                         {"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                         {"CCM_RECONCILERS", "false"},
                                         {"CCM_DRAIN_GRACE_MS", "0"}},
      dir.File("ready"), log);
}

// The process whose command line names `ready_file` (unique to a test), or -1.
int PidOf(const std::string& ready_file) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFile(entry.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(" serve ") != std::string::npos && cmdline.find(ready_file) != std::string::npos)
      return std::stoi(name);
  }
  return -1;
}

// CPU time (user + system) the process has used so far.
std::chrono::milliseconds CpuTime(int pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
  std::string field;
  long ticks = 0;
  for (int n = 3; n <= 15 && fields >> field; ++n)
    if (n == 14 || n == 15) ticks += std::stol(field);  // utime, stime
  return std::chrono::milliseconds(ticks * 1000 / sysconf(_SC_CLK_TCK));
}

// One request on a fresh connection: what came back before the server closed it, or within
// `wait`.
std::string RawRequest(std::uint16_t port, const std::string& bytes, std::chrono::milliseconds wait = 10s) {
  RawSocket s(port);
  s.Send(bytes);
  return s.ReadUntilClosed(wait);
}

constexpr const char* kLiveProbe = "GET /health/live HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

// A definition of one small node; its id.
std::string CreateDefinition(HttpClient& http) {
  json def = {{"name", "lab"}, {"version", "1.0.0"}, {"lab_yaml", "nodes: [{id: n0, label: r1}]"},
              {"resource_requirements", {{"cpu_cores", 1}, {"memory_gb", 1}}}, {"license_affinity", {"ENTERPRISE"}},
              {"max_duration_minutes", 60}, {"created_by", "test"}};
  auto created = http.PostJson("/api/v1/definitions", def);
  EXPECT_EQ(created.status, 201) << created.body;
  return created.Json().value("id", "");
}

TEST(ServerHardening, TheSoftDescriptorLimitIsRaisedToTheHardOne) {
  testing::TempDir dir;
  auto ccm = CcmWithUlimit(dir, "-Sn 256", dir.File("ccm.log"));
  const int pid = PidOf(dir.File("ready"));
  ASSERT_GT(pid, 0);
  const std::string limits = ReadFile("/proc/" + std::to_string(pid) + "/limits");
  std::istringstream lines(limits);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream values(line.substr(std::string("Max open files").size()));
    std::string soft, hard;
    values >> soft >> hard;
    EXPECT_EQ(soft, hard) << line;
    EXPECT_NE(soft, "256") << line;
    return;
  }
  ADD_FAILURE() << "no Max open files in " << limits;
}

// At the descriptor limit, accept fails with EMFILE while the connection stays queued: the
// server must wait for a descriptor, not spin, and keep answering once it has one.
TEST(ServerHardening, OutOfDescriptorsTheServerWaitsInsteadOfSpinning) {
  testing::TempDir dir;
  auto ccm = CcmWithUlimit(dir, "-n 128", dir.File("ccm.log"));
  const std::uint16_t port = PortOf(ccm->BaseUrl());
  const int pid = PidOf(dir.File("ready"));
  ASSERT_GT(pid, 0);
  // The connection limit leaves room for the rest under 128 descriptors, and says so.
  EXPECT_TRUE(testing::Eventually(
      [&] { return ReadFile(dir.File("ccm.log")).find("at most 64 connections") != std::string::npos; }, 5s))
      << ReadFile(dir.File("ccm.log"));

  // More connections than descriptors, all held open and silent.
  std::vector<std::unique_ptr<RawSocket>> held;
  for (int n = 0; n < 200; ++n) held.push_back(std::make_unique<RawSocket>(port));
  std::this_thread::sleep_for(300ms);
  const auto cpu_before = CpuTime(pid);
  std::this_thread::sleep_for(2s);
  const auto cpu = CpuTime(pid) - cpu_before;
  EXPECT_LT(cpu, 500ms) << "the process used " << cpu.count() << " ms of CPU in 2 s with nothing to do";

  // A probe still gets an answer: 200, or 503 with Retry-After while every slot is taken.
  const auto start = std::chrono::steady_clock::now();
  const std::string live = RawRequest(port, kLiveProbe, 40s);
  EXPECT_TRUE(live.rfind("HTTP/1.1 200", 0) == 0 ||
              (live.rfind("HTTP/1.1 503", 0) == 0 && live.find("Retry-After:") != std::string::npos))
      << "after " << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count()
      << " s: '" << live << "'\n" << ReadFile(dir.File("ccm.log"));

  // Once the crowd leaves, it serves again.
  held.clear();
  EXPECT_TRUE(testing::Eventually(
      [&] { return RawRequest(port, kLiveProbe, 2s).rfind("HTTP/1.1 200", 0) == 0; },
      20s));
}

// Framing that would let a client and ccm (or a proxy in front of it) disagree on where a
// request ends gets a 400 problem, and the connection is closed.
TEST(ServerHardening, MalformedFramingGets400BeforeTheConnectionCloses) {
  testing::TempDir dir;
  testing::CcmProcess ccm(dir.path(), {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")}, {"CCM_RECONCILERS", "false"}});
  const std::uint16_t port = PortOf(ccm.BaseUrl());
  const std::string post = "POST /api/v1/definitions HTTP/1.1\r\nHost: a\r\n";
  struct Case {
    const char* name;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"Content-Length then Transfer-Encoding",
       post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {"Transfer-Encoding then Content-Length",
       post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
      {"a non-chunked Transfer-Encoding then Content-Length",
       post + "Transfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}"},
      {"Transfer-Encoding whose last coding is not chunked",
       post + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"},
      {"differing duplicate Content-Length", post + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} "},
      {"signed Content-Length (+)", post + "Content-Length: +2\r\n\r\n{}"},
      {"signed Content-Length (-)", post + "Content-Length: -2\r\n\r\n{}"},
      {"non-numeric Content-Length", post + "Content-Length: 2x\r\n\r\n{}"},
      {"bare LF after the request line", "GET /health/live HTTP/1.1\nHost: a\r\n\r\n"},
      {"bare LF ending the header block", "GET /health/live HTTP/1.1\r\nHost: a\r\n\n"},
      {"bare LF everywhere", "GET /health/live HTTP/1.1\nHost: a\n\n"},
      {"NUL in a header value", std::string("GET /health/live HTTP/1.1\r\nHost: a\r\nX-A: b") + '\0' + "c\r\n\r\n"},
      {"NUL in a header name", std::string("GET /health/live HTTP/1.1\r\nHost: a\r\nX") + '\0' + "A: b\r\n\r\n"},
      {"HTTP/0.9 request line", "GET /health/live\r\n\r\n"},
      {"HTTP/0.9 request line alone", "GET /\r\n"},
      {"obs-fold", "GET /health/live HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"},
      {"obs-fold of a Transfer-Encoding", post + "Transfer-Encoding: gzip\r\n chunked\r\n\r\n0\r\n\r\n"},
  };
  for (const auto& c : cases) {
    bool timed_out = false;
    RawSocket s(port);
    s.Send(c.bytes);
    s.ShutdownWrite();  // so that the server, having answered, need not wait for more
    const std::string answer = s.ReadUntilClosed(10s, &timed_out);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << c.name << ": '" << answer << "'";
    EXPECT_NE(answer.find("application/problem+json"), std::string::npos) << c.name;
    EXPECT_NE(answer.find("malformed HTTP request"), std::string::npos) << c.name << ": " << answer;
    EXPECT_FALSE(timed_out) << c.name << ": the connection stayed open";
  }
  // The same bytes, well framed, are served.
  EXPECT_EQ(RawRequest(port, kLiveProbe).rfind("HTTP/1.1 200", 0), 0u);
  // A chunked body reaches the handler, which finds the definition incomplete.
  const std::string chunked = RawRequest(
      port, post + "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                   "2\r\n{}\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.rfind("HTTP/1.1 400", 0), 0u) << chunked;
  EXPECT_EQ(chunked.find("malformed HTTP request"), std::string::npos) << chunked;
}

TEST(ServerHardening, Every503CarriesRetryAfter) {
  // Tokens cannot be checked while the issuer's keys cannot be fetched: 503.
  testing::TempDir dir;
  const std::uint16_t nobody = testing::FreePort();
  testing::CcmProcess ccm(dir.path(),
                          {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                           {"CCM_RECONCILERS", "false"},
                           {"AUTH_JWKS_URL", "http://127.0.0.1:" + std::to_string(nobody) + "/certs"},
                           {"AUTH_ISSUER", "https://issuer.test"}},
                          true);
  testing::SigningKey key("RS256", "k1");
  HttpClient http(ccm.BaseUrl());
  http.SetBearer(key.Sign(testing::GoodClaims({"ccm.viewer"})));
  auto r = http.Get("/api/v1/instances");
  ASSERT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.headers["retry-after"], "1");
}

// The exit status and output of `argv` run to its end (at most `wait`).
struct Exit {
  int status = -1;  // exit code, or -1 when it did not exit within the wait
  std::string output;
};

Exit RunToExit(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
               const std::string& output_file, std::chrono::milliseconds wait) {
  const pid_t pid = testing::Spawn(argv, env, output_file);
  Exit out;
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      out.output = ReadFile(output_file);
      return out;
    }
    std::this_thread::sleep_for(20ms);
  }
  out.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  out.output = ReadFile(output_file);
  return out;
}

TEST(ServerHardening, ASecondProcessOnTheSameSqliteFileIsRefused) {
  testing::TempDir dir;
  const std::map<std::string, std::string> env = {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")},
                                                  {"CCM_RECONCILERS", "false"},
                                                  {"CCM_LISTEN", "127.0.0.1:0"}};
  auto first = std::make_unique<testing::CcmProcess>(dir.path(), env);
  const int first_pid = PidOf(dir.File("ready"));
  ASSERT_GT(first_pid, 0);
  testing::TempDir other;
  const Exit second = RunToExit({CCM_BINARY, "serve", "--insecure-no-auth", "--ready-file", other.File("ready")}, env,
                                other.File("out"), 10s);
  EXPECT_NE(second.status, -1) << "the second process kept running: " << second.output;
  EXPECT_NE(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("is in use by another process (pid " + std::to_string(first_pid) + ")"),
            std::string::npos)
      << second.output;
  EXPECT_FALSE(std::filesystem::exists(other.File("ready"))) << "the second process listened";
  // The first one is undisturbed; once it has stopped, the file is free.
  HttpClient http(first->BaseUrl());
  EXPECT_EQ(http.Get("/health/ready").status, 200);
  first.reset();
  testing::CcmProcess next(dir.path(), env);
  EXPECT_EQ(HttpClient(next.BaseUrl()).Get("/health/ready").status, 200);
}

// A small tmpfs, mounted for one test and unmounted after it.
class SmallDisk {
 public:
  SmallDisk(const std::string& path, const char* size) : path_(path) {
    std::filesystem::create_directories(path);
    mounted_ = mount("tmpfs", path.c_str(), "tmpfs", 0, (std::string("size=") + size).c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  // Writes a file until the disk is full.
  void Fill(const std::string& file) {
    std::ofstream out(file, std::ios::binary);
    const std::string block(4096, 'x');
    while (out.write(block.data(), block.size()) && out.flush()) {
    }
  }

 private:
  std::string path_;
  bool mounted_ = false;
};

TEST(ServerHardening, ReadinessTurns503WhileWritesFailForLackOfDisk) {
  testing::TempDir dir;
  SmallDisk disk(dir.File("disk"), "4m");
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root (CAP_SYS_ADMIN)";
  testing::CcmProcess ccm(dir.path(),
                          {{"CCM_STORE", "sqlite:" + dir.File("disk/ccm.db")}, {"CCM_RECONCILERS", "false"}});
  HttpClient http(ccm.BaseUrl());
  const std::string def_id = CreateDefinition(http);
  const auto now = std::chrono::system_clock::now();
  auto create = [&](int n) {
    return http.PostJson("/api/v1/instances", {{"definition_id", def_id},
                                               {"owner_id", "c" + std::to_string(n)},
                                               {"timeslot_start", testing::Rfc3339(now + 1h)},
                                               {"timeslot_end", testing::Rfc3339(now + 2h)}});
  };
  ASSERT_EQ(create(0).status, 201);
  ASSERT_EQ(http.Get("/health/ready").status, 200);

  disk.Fill(dir.File("disk/filler"));
  // The WAL grows with every commit: soon one finds no room.
  testing::HttpResult refused;
  for (int n = 1; n < 200 && refused.status != 503; ++n) {
    auto r = create(n);
    ASSERT_TRUE(r.status == 201 || r.status == 503) << r.status << " " << r.body;
    if (r.status == 503) refused = r;
  }
  ASSERT_EQ(refused.status, 503) << "no write failed on a full disk";
  EXPECT_EQ(refused.headers["retry-after"], "1");
  auto ready = http.Get("/health/ready");
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_EQ(ready.headers["retry-after"], "1");
  EXPECT_NE(ready.body.find("disk space"), std::string::npos) << ready.body;
  // Still full: readiness stays off, though it retries.
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(http.Get("/health/ready").status, 503);

  std::filesystem::remove(dir.File("disk/filler"));
  EXPECT_TRUE(testing::Eventually([&] { return http.Get("/health/ready").status == 200; }, 10s));
  EXPECT_EQ(create(1000).status, 201);
}

TEST(ServerHardening, TimeslotsFromAnotherEraAreRefused) {
  testing::TempDir dir;
  testing::CcmProcess ccm(dir.path(), {{"CCM_STORE", "sqlite:" + dir.File("ccm.db")}, {"CCM_RECONCILERS", "false"}});
  HttpClient http(ccm.BaseUrl());
  const std::string def_id = CreateDefinition(http);
  auto create = [&](const std::string& start, const std::string& end) {
    return http.PostJson("/api/v1/instances", {{"definition_id", def_id},
                                               {"owner_id", "c"},
                                               {"timeslot_start", start},
                                               {"timeslot_end", end}});
  };
  for (const auto& [start, end, field] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"0000-01-01T09:00:00Z", "0000-01-01T10:00:00Z", "timeslot_start"},
           {"9999-12-31T09:00:00Z", "9999-12-31T10:00:00Z", "timeslot_start"},
           {"1970-01-01T00:00:00Z", "1970-01-01T00:30:00Z", "timeslot_start"}}) {
    auto r = create(start, end);
    EXPECT_EQ(r.status, 400) << start << ": " << r.body;
    EXPECT_EQ(r.Json()["field"], field) << start << ": " << r.body;
    EXPECT_EQ(r.ContentType(), "application/problem+json");
  }
  const auto now = std::chrono::system_clock::now();
  EXPECT_EQ(create(testing::Rfc3339(now + 24h), testing::Rfc3339(now + 25h)).status, 201);
}

}  // namespace
}  // namespace ccm
