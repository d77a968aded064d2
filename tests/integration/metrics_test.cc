// /metrics of a real ccm process (with cml-sim as its CML worker), scraped over HTTP and
// parsed as the Prometheus text format: the families an operator alerts on exist, with
// bounded label values, and their counters move when the event they count happens.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <sstream>

#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/raw_socket.h"
#include "support/temp_dir.h"
#include "support/test_sink.h"
#include "support/wait.h"
#include "support/world.h"

namespace ccm {
namespace {

using testing::Eventually;
using testing::World;
using Labels = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

// One scrape: its samples and the type of each family (from `# TYPE`).
struct Scrape {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;
  std::vector<std::string> type_lines;  // every family named, in order (a duplicate is a fault)

  // The value of the sample `name` whose labels include `want`, or -1 when there is none.
  double Value(const std::string& name, const Labels& want = {}) const {
    for (const auto& s : samples) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : want)
        if (auto it = s.labels.find(k); it == s.labels.end() || it->second != v) match = false;
      if (match) return s.value;
    }
    return -1;
  }
  // Every value the label `label` takes in the samples of `name`.
  std::set<std::string> LabelValues(const std::string& name, const std::string& label) const {
    std::set<std::string> out;
    for (const auto& s : samples)
      if (s.name == name && s.labels.count(label)) out.insert(s.labels.at(label));
    return out;
  }
};

// Parses the text format 0.0.4: `name{k="v",...} value` lines and `# TYPE name type` lines.
// A line it cannot read fails the test.
Scrape Parse(const std::string& text) {
  Scrape out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream f(line.substr(7));
      std::string name, type;
      f >> name >> type;
      out.types[name] = type;
      out.type_lines.push_back(name);
      continue;
    }
    if (line[0] == '#') continue;
    Sample s;
    size_t at = line.find_first_of("{ ");
    s.name = line.substr(0, at);
    if (at != std::string::npos && line[at] == '{') {
      ++at;
      while (line[at] != '}') {
        const size_t eq = line.find("=\"", at);
        EXPECT_NE(eq, std::string::npos) << line;
        if (eq == std::string::npos) return out;
        std::string value;
        size_t i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) value += line[i] == '\\' ? line[++i] : line[i];
        s.labels[line.substr(at, eq - at)] = value;
        at = i + 1;
        if (line[at] == ',') ++at;
      }
      ++at;
    }
    s.value = std::stod(line.substr(at + 1));
    out.samples.push_back(std::move(s));
  }
  return out;
}

Scrape ScrapeOf(World& world) {
  const auto got = world.http->Get("/metrics");
  EXPECT_EQ(got.status, 200);
  return Parse(got.body);
}

TEST(Metrics, TheExpositionNamesEachFamilyOnceWithBuildInfoAndProcessMetrics) {
  World world({}, {{"CCM_LISTEN", "127.0.0.1:0"}});
  const auto got = world.http->Get("/metrics");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.ContentType().rfind("text/plain; version=0.0.4", 0), 0u) << got.ContentType();
  const Scrape m = Parse(got.body);
  // Hand-written families and the registry's share one exposition: none may appear twice.
  std::set<std::string> seen;
  for (const auto& name : m.type_lines) EXPECT_TRUE(seen.insert(name).second) << name << " is typed twice";

  EXPECT_EQ(m.types.at("ccm_build_info"), "gauge");
  EXPECT_EQ(m.Value("ccm_build_info"), 1);
  const auto versions = m.LabelValues("ccm_build_info", "version");
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_FALSE(versions.begin()->empty());

  EXPECT_EQ(m.types.at("process_cpu_seconds_total"), "counter");
  EXPECT_GE(m.Value("process_cpu_seconds_total"), 0);
  EXPECT_GT(m.Value("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GT(m.Value("process_open_fds"), 3);
  EXPECT_GE(m.Value("process_max_fds"), m.Value("process_open_fds"));
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const double started = m.Value("process_start_time_seconds");
  EXPECT_LE(started, now + 2);
  EXPECT_GT(started, now - 300) << "ccm started within the test";
  EXPECT_EQ(m.Value("ccm_leader"), 1);
}

TEST(Metrics, HttpRequestsAreCountedByRouteTemplateMethodAndStatusClass) {
  World world({}, {{"CCM_LISTEN", "127.0.0.1:0"}});
  const std::string worker = world.AddWorker("w1", 32);
  const Scrape before = ScrapeOf(world);
  const Labels unmatched{{"route", "unmatched"}, {"method", "GET"}, {"code", "4xx"}};
  const Labels by_id{{"route", "/api/v1/workers/{id}"}, {"method", "GET"}, {"code", "2xx"}};
  const Labels missing_id{{"route", "/api/v1/workers/{id}"}, {"method", "GET"}, {"code", "4xx"}};

  EXPECT_EQ(world.http->Get("/no/such/route").status, 404);
  EXPECT_EQ(world.http->Get("/no/other/route").status, 404);
  EXPECT_EQ(world.http->Get("/api/v1/workers/" + worker).status, 200);
  EXPECT_EQ(world.http->Get("/api/v1/workers/no-such-worker").status, 404);
  {
    const std::string base = world.ccm->BaseUrl();
    testing::RawSocket s(static_cast<std::uint16_t>(std::stoi(base.substr(base.rfind(':') + 1))));
    ASSERT_TRUE(s.Send("HEAD /api/v1/workers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    EXPECT_NE(s.ReadUntilClosed(std::chrono::seconds(10)).find(" 200 "), std::string::npos);
  }

  const Scrape after = ScrapeOf(world);
  EXPECT_EQ(after.types.at("ccm_http_requests_total"), "counter");
  EXPECT_EQ(after.types.at("ccm_http_request_duration_seconds"), "histogram");
  auto delta = [&](const Labels& l) {
    return after.Value("ccm_http_requests_total", l) - std::max(0.0, before.Value("ccm_http_requests_total", l));
  };
  // The path as sent never becomes a label: both 404s count under "unmatched", both workers
  // under the route's template.
  EXPECT_EQ(delta(unmatched), 2);
  EXPECT_EQ(delta(by_id), 1);
  EXPECT_EQ(delta(missing_id), 1);
  EXPECT_EQ(after.LabelValues("ccm_http_requests_total", "route").count("/no/such/route"), 0u);
  EXPECT_GE(after.Value("ccm_http_requests_total", {{"route", "/api/v1/workers"}, {"method", "HEAD"}, {"code", "2xx"}}), 1);
  // The duration histogram has the same labels but the status class.
  EXPECT_GE(after.Value("ccm_http_request_duration_seconds_count", {{"route", "/api/v1/workers/{id}"}, {"method", "GET"}}),
            2);
  EXPECT_GE(after.Value("ccm_http_request_duration_seconds_bucket",
                        {{"route", "/api/v1/workers/{id}"}, {"method", "GET"}, {"le", "+Inf"}}),
            2);
  for (const auto& code : after.LabelValues("ccm_http_requests_total", "code"))
    EXPECT_TRUE(code == "1xx" || code == "2xx" || code == "3xx" || code == "4xx" || code == "5xx") << code;
}

TEST(Metrics, CmlCallsAndReconcilerStepsAndErrorsAreCounted) {
  // The first two imports fail (500): each counts as a CML http_5xx and an instantiator error.
  World world({"--fail-imports", "2"}, {{"CCM_LISTEN", "127.0.0.1:0"}});
  world.AddWorker("w1", 32);
  const std::string id =
      world.AddInstance(world.AddDefinition(), 1, std::chrono::seconds(0), std::chrono::seconds(3600), false);
  ASSERT_TRUE(Eventually([&] { return world.InState(id, "RUNNING"); })) << world.Instance(id);

  const Scrape m = ScrapeOf(world);
  EXPECT_EQ(m.types.at("ccm_remote_requests_total"), "counter");
  EXPECT_EQ(m.types.at("ccm_remote_request_duration_seconds"), "histogram");
  EXPECT_GE(m.Value("ccm_remote_requests_total", {{"remote", "cml"}, {"outcome", "ok"}}), 2);  // import, start
  EXPECT_GE(m.Value("ccm_remote_requests_total", {{"remote", "cml"}, {"outcome", "http_5xx"}}), 2);
  EXPECT_GE(m.Value("ccm_remote_request_duration_seconds_count", {{"remote", "cml"}}), 4);
  for (const auto& outcome : m.LabelValues("ccm_remote_requests_total", "outcome"))
    EXPECT_TRUE(std::set<std::string>({"ok", "http_4xx", "http_5xx", "transport", "circuit_open"}).count(outcome))
        << outcome;

  EXPECT_GE(m.Value("ccm_reconciler_steps_total", {{"loop", "scheduler"}}), 1);
  EXPECT_GE(m.Value("ccm_reconciler_steps_total", {{"loop", "instantiator"}}), 1);
  EXPECT_GE(m.Value("ccm_reconciler_errors_total", {{"loop", "instantiator"}}), 2);
  EXPECT_EQ(m.Value("ccm_reconciler_errors_total", {{"loop", "scheduler"}}), 0);
  EXPECT_GE(m.Value("ccm_reconciler_run_duration_seconds_count", {{"loop", "stopper"}}), 1);
  EXPECT_EQ(m.LabelValues("ccm_reconciler_steps_total", "loop"),
            (std::set<std::string>{"instantiator", "lab-poller", "pod-assigner", "scaler", "scheduler", "stopper"}));
}

TEST(Metrics, AnUnreachableSinkCountsTransportFailuresAndOpensTheBreakerAsALabel) {
  // A port nothing listens on: every delivery fails to connect.
  const std::uint16_t closed_port = testing::FreePort();
  World world({}, {{"CCM_LISTEN", "127.0.0.1:0"},
                   {"CLOUDEVENTS_SINK_URL", "http://127.0.0.1:" + std::to_string(closed_port) + "/events"}});
  world.AddWorker("w1", 32);  // an event to deliver
  ASSERT_TRUE(Eventually([&] {
    return ScrapeOf(world).Value("ccm_sink_breaker_state", {{"state", "open"}}) == 1;
  })) << world.http->Get("/metrics").body;
  const Scrape m = ScrapeOf(world);
  EXPECT_EQ(m.types.at("ccm_sink_breaker_state"), "gauge");
  EXPECT_EQ(m.Value("ccm_sink_breaker_state", {{"state", "closed"}}), 0);
  EXPECT_EQ(m.Value("ccm_sink_breaker_state", {{"state", "half_open"}}), 0);
  EXPECT_GE(m.Value("ccm_remote_requests_total", {{"remote", "sink"}, {"outcome", "transport"}}), 1);
  EXPECT_EQ(m.Value("ccm_remote_requests_total", {{"remote", "sink"}, {"outcome", "ok"}}), -1);
}

// Two replicas on one etcd: each counts its own calls to etcd and to the sink, and the gauges
// read from the shared store are the same on both (so rules take their max, not their sum).
TEST(Metrics, ReplicasOnEtcdCountTheirOwnCallsAndReportTheStoreAlike) {
  testing::TempDir side;
  testing::EtcdCluster etcd(side.File("etcd"), 1);
  testing::TestSink sink(0);
  const std::map<std::string, std::string> env{
      {"CCM_STORE", etcd.StoreSetting()},
      {"CCM_LEADER_TTL_SECONDS", "2"},
      {"CLOUDEVENTS_SINK_URL", "http://127.0.0.1:" + std::to_string(sink.port()) + "/events"}};
  testing::TempDir a_dir, b_dir;
  testing::CcmProcess a(a_dir.path(), env, false, a_dir.File("ccm.log"));
  testing::CcmProcess b(b_dir.path(), env, false, b_dir.File("ccm.log"));
  testing::HttpClient a_http(a.BaseUrl()), b_http(b.BaseUrl());
  auto scrape = [](testing::HttpClient& http) { return Parse(http.Get("/metrics").body); };
  ASSERT_TRUE(Eventually([&] { return scrape(a_http).Value("ccm_leader") + scrape(b_http).Value("ccm_leader") == 1; }));
  ASSERT_EQ(a_http.PostJson("/api/v1/workers", testing::WorkerBody("w1", "https://w1.example", 8)).status, 201);
  // Delivered by whichever leads: its sink calls succeed, and the outbox empties.
  ASSERT_TRUE(Eventually([&] {
    return scrape(a_http).Value("ccm_outbox_depth") == 0 && scrape(b_http).Value("ccm_outbox_depth") == 0 &&
           scrape(a_http).Value("ccm_events_published_total") >= 1;
  }));
  const Scrape ma = scrape(a_http), mb = scrape(b_http);
  for (const auto* m : {&ma, &mb}) EXPECT_GE(m->Value("ccm_remote_requests_total", {{"remote", "etcd"}, {"outcome", "ok"}}), 1);
  EXPECT_GE(std::max(ma.Value("ccm_remote_requests_total", {{"remote", "sink"}, {"outcome", "ok"}}),
                     mb.Value("ccm_remote_requests_total", {{"remote", "sink"}, {"outcome", "ok"}})),
            1);
  EXPECT_EQ(ma.Value("ccm_events_published_total"), mb.Value("ccm_events_published_total"));
  EXPECT_EQ(ma.Value("ccm_events_dead_letters"), mb.Value("ccm_events_dead_letters"));
}

}  // namespace
}  // namespace ccm
