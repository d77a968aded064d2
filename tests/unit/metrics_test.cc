// The metric families of src/metrics/ as their text exposition shows them: label values stay
// within their bounded sets whatever a client sends.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <prometheus/text_serializer.h>

namespace ccm::metrics {
namespace {

using namespace std::chrono_literals;

std::string Text(prometheus::Registry& registry) { return prometheus::TextSerializer().Serialize(registry.Collect()); }

bool Has(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

TEST(HttpMetrics, LabelsTheRouteTemplateAndMethodAndTheStatusClass) {
  prometheus::Registry registry;
  HttpMetrics m(registry);
  http::Request req;
  req.method = "GET";
  req.path = "/api/v1/workers/w-1";
  req.route = "/api/v1/workers/{id}";
  http::Response resp;
  resp.status = 204;
  m.Observe(req, resp, 3ms);
  resp.status = 503;
  m.Observe(req, resp, 3ms);
  const std::string text = Text(registry);
  EXPECT_TRUE(Has(text, R"(ccm_http_requests_total{code="2xx",method="GET",route="/api/v1/workers/{id}"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_http_requests_total{code="5xx",method="GET",route="/api/v1/workers/{id}"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_http_request_duration_seconds_count{method="GET",route="/api/v1/workers/{id}"} 2)"))
      << text;
  EXPECT_TRUE(Has(text, R"(ccm_http_request_duration_seconds_bucket{method="GET",route="/api/v1/workers/{id}",le="0.0025"} 0)"))
      << text;
  EXPECT_TRUE(Has(text, R"(ccm_http_request_duration_seconds_bucket{method="GET",route="/api/v1/workers/{id}",le="0.005"} 2)"))
      << text;
  EXPECT_EQ(text.find("w-1"), std::string::npos) << "the path as sent is no label";
}

TEST(HttpMetrics, AnUnmatchedRouteAndAnUnknownMethodHaveOneLabelEach) {
  prometheus::Registry registry;
  HttpMetrics m(registry);
  http::Response resp;
  resp.status = 404;
  for (const char* method : {"BREW", "PROPFIND", "get"}) {
    http::Request req;
    req.method = method;
    req.path = std::string("/made/up/") + method;
    m.Observe(req, resp, 1ms);
  }
  const std::string text = Text(registry);
  EXPECT_TRUE(Has(text, R"(ccm_http_requests_total{code="4xx",method="other",route="unmatched"} 3)")) << text;
  EXPECT_EQ(text.find("BREW"), std::string::npos);
  EXPECT_EQ(text.find("/made/up"), std::string::npos);
}

TEST(RemoteCallMetrics, CountsEachOutcomeAndTimesTheCallsMade) {
  prometheus::Registry registry;
  RemoteCallMetrics m(registry);
  const app::RemoteTag cml = m.Tag("cml");
  cml.Observe(app::RemoteOutcomeOf(200, false), 20ms);
  cml.Observe(app::RemoteOutcomeOf(404, false), 20ms);
  cml.Observe(app::RemoteOutcomeOf(502, false), 20ms);
  cml.Observe(app::RemoteOutcomeOf(0, true), 20ms);
  cml.Observe(app::RemoteOutcome::kCircuitOpen, 0ms);
  app::RemoteTag{}.Observe(app::RemoteOutcome::kOk, 1ms);  // no observer: nothing, no crash
  const std::string text = Text(registry);
  for (const char* outcome : {"ok", "http_4xx", "http_5xx", "transport", "circuit_open"})
    EXPECT_TRUE(Has(text, std::string(R"(ccm_remote_requests_total{outcome=")") + outcome + R"(",remote="cml"} 1)"))
        << outcome << "\n" << text;
  // The refusal of an open breaker made no call: four are timed.
  EXPECT_TRUE(Has(text, R"(ccm_remote_request_duration_seconds_count{remote="cml"} 4)")) << text;
}

TEST(LoopMetrics, AddsStepsAndErrorsPerLoop) {
  prometheus::Registry registry;
  LoopMetrics m(registry);
  m.Ran("scheduler", 3, 0, 2ms);
  m.Ran("scheduler", 2, 1, 2ms);
  const std::string text = Text(registry);
  EXPECT_TRUE(Has(text, R"(ccm_reconciler_steps_total{loop="scheduler"} 5)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_reconciler_errors_total{loop="scheduler"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_reconciler_run_duration_seconds_count{loop="scheduler"} 2)")) << text;
}

TEST(Metrics, TextHasBuildInfoAndTheProcessMetrics) {
  Metrics m("9.9.9");
  const std::string text = m.Text();
  EXPECT_TRUE(Has(text, R"(ccm_build_info{version="9.9.9"} 1)")) << text;
  for (const char* family : {"process_cpu_seconds_total counter", "process_resident_memory_bytes gauge",
                             "process_open_fds gauge", "process_max_fds gauge", "process_start_time_seconds gauge"})
    EXPECT_NE(text.find(std::string("# TYPE ") + family + "\n"), std::string::npos) << family << "\n" << text;
}

}  // namespace
}  // namespace ccm::metrics
