// The metric families of src/metrics/ as their text exposition shows them: label values stay
// within their bounded sets whatever a client sends.
#include "metrics/metrics.h"
#include "ports/observers.h"
#include "ports/outbox.h"

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
  const ports::RemoteTag cml = m.Tag("cml");
  cml.Observe(ports::RemoteOutcomeOf(200, false), 20ms);
  cml.Observe(ports::RemoteOutcomeOf(404, false), 20ms);
  cml.Observe(ports::RemoteOutcomeOf(502, false), 20ms);
  cml.Observe(ports::RemoteOutcomeOf(0, true), 20ms);
  cml.Observe(ports::RemoteOutcome::kCircuitOpen, 0ms);
  ports::RemoteTag{}.Observe(ports::RemoteOutcome::kOk, 1ms);  // no observer: nothing, no crash
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
  const auto got = m.Text();
  ASSERT_TRUE(got) << got.error().message;
  const std::string& text = *got;
  EXPECT_TRUE(Has(text, R"(ccm_build_info{version="9.9.9"} 1)")) << text;
  for (const char* family : {"process_cpu_seconds_total counter", "process_resident_memory_bytes gauge",
                             "process_open_fds gauge", "process_max_fds gauge", "process_start_time_seconds gauge"})
    EXPECT_NE(text.find(std::string("# TYPE ") + family + "\n"), std::string::npos) << family << "\n" << text;
}

std::string Text(const std::vector<prometheus::MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

TEST(AppFamilies, TheOutboxAndTheDispatcherBecomeTheirFamilies) {
  app::DispatchMetrics dispatch;
  dispatch.delivered = 7;
  dispatch.breaker_state = 1;  // open
  dispatch.ObserveLatency(20ms);
  dispatch.ObserveLatency(2000ms);
  const std::string text =
      Text(AppFamilies({.dispatch = &dispatch}, ports::OutboxStats{.published = 12, .pending = 3, .dead = 1, .held = 2}, {}));
  EXPECT_TRUE(Has(text, "# TYPE ccm_outbox_depth gauge")) << text;
  EXPECT_TRUE(Has(text, "ccm_outbox_depth 3")) << text;
  EXPECT_TRUE(Has(text, "# TYPE ccm_events_published_total counter")) << text;
  EXPECT_TRUE(Has(text, "ccm_events_published_total 12")) << text;
  EXPECT_TRUE(Has(text, "ccm_events_dead_letters 1")) << text;
  EXPECT_TRUE(Has(text, "ccm_outbox_held_events 2")) << text;
  EXPECT_TRUE(Has(text, "ccm_events_delivered_total 7")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_sink_breaker_state{state="open"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_sink_breaker_state{state="closed"} 0)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_sink_breaker_state{state="half_open"} 0)")) << text;
  EXPECT_TRUE(Has(text, "# TYPE ccm_event_delivery_latency_seconds histogram")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_event_delivery_latency_seconds_bucket{le="0.01"} 0)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_event_delivery_latency_seconds_bucket{le="0.025"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_event_delivery_latency_seconds_bucket{le="2.5"} 2)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_event_delivery_latency_seconds_bucket{le="60"} 2)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_event_delivery_latency_seconds_bucket{le="+Inf"} 2)")) << text;
  EXPECT_TRUE(Has(text, "ccm_event_delivery_latency_seconds_count 2")) << text;
  EXPECT_TRUE(Has(text, "ccm_event_delivery_latency_seconds_sum 2.02")) << text;
  EXPECT_TRUE(Has(text, "ccm_leader 1")) << "no election: this replica leads\n" << text;
  EXPECT_EQ(text.find("ccm_events_received_total"), std::string::npos) << "no receiver given";
  EXPECT_EQ(text.find("ccm_pod_assignments_total"), std::string::npos) << "no lifecycle given";
}

TEST(AppFamilies, LeadershipReceiptsLifecycleAndRetentionBecomeTheirFamilies) {
  app::ReceiveMetrics receive;
  receive.applied = 4;
  receive.rejected = 1;
  app::LifecycleMetrics lifecycle;
  const Timestamp now = Timestamp{} + 1000h;
  // The store's counts name only the states that have instances: the others count 0.
  lifecycle.Observe({{domain::InstanceState::kRunning, {1, now - 90s}}});
  lifecycle.grading_timeouts = 2;
  app::CollectionService::Metrics collection;
  collection.refused = 5;
  app::OrphanSweepMetrics orphans;
  orphans.removed = 6;
  app::RetentionMetrics retention;
  retention.instances = 8;
  const std::string text = Text(AppFamilies({.receive = &receive,
                                             .lifecycle = &lifecycle,
                                             .collection = &collection,
                                             .orphans = &orphans,
                                             .retention = &retention,
                                             .leading = [] { return false; }},
                                            std::nullopt, now));
  EXPECT_TRUE(Has(text, "ccm_leader 0")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_events_received_total{outcome="applied"} 4)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_events_received_total{outcome="rejected"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_events_received_total{outcome="stale"} 0)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_instances{state="RUNNING"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_instances{state="PENDING"} 0)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_instance_oldest_in_state_seconds{state="RUNNING"} 90)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_instance_oldest_in_state_seconds{state="PENDING"} 0)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_lifecycle_timeouts_total{stage="grading"} 2)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_collection_requests_total{outcome="refused"} 5)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_pod_assignments_total{outcome="assigned"} 0)")) << text;
  EXPECT_TRUE(Has(text, "ccm_orphan_labs_removed_total 6")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_retention_removed_total{kind="instances"} 8)")) << text;
  EXPECT_TRUE(Has(text, R"(ccm_retention_removed_total{kind="events"} 0)")) << text;
  EXPECT_EQ(text.find("ccm_outbox_depth"), std::string::npos) << "no outbox statistics given";
}

TEST(AppCollector, ReadsTheStoreAtEachScrapeAndFailsTheScrapeWhenItCannotBeRead) {
  // The outbox statistics as a store answers them, or its failure.
  ports::OutboxStats stats;
  bool fail = false;
  auto outbox = [&stats, &fail]() -> Result<ports::OutboxStats> {
    if (fail) return Error::Unavailable("store down");
    return stats;
  };
  Metrics m("9.9.9");
  m.Watch({.outbox = outbox});
  stats.pending = 3;
  auto text = m.Text();
  ASSERT_TRUE(text) << text.error().message;
  EXPECT_TRUE(Has(*text, "ccm_outbox_depth 3")) << *text;
  stats.pending = 4;
  EXPECT_TRUE(Has(*m.Text(), "ccm_outbox_depth 4"));
  fail = true;
  text = m.Text();
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error().code, ErrorCode::kUnavailable);
  // Collect, which cannot fail, leaves the outbox out and keeps the rest.
  const std::string collected = Text(AppCollector({.outbox = outbox}).Collect());
  EXPECT_EQ(collected.find("ccm_outbox_depth"), std::string::npos) << collected;
  EXPECT_TRUE(Has(collected, "ccm_leader 1")) << collected;
}

}  // namespace
}  // namespace ccm::metrics
