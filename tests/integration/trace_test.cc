// W3C Trace Context through ccm: an API request's or an inbound event's `traceparent` parents
// what ccm does for it; a lablet records its trace, and its events (CloudEvents Distributed
// Tracing extension) and its calls to other services (the `traceparent` header) join it.
#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "clients/http_event_sink.h"
#include "clients/http_post.h"
#include "ports/event_sink.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "support/fake_server.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/stack.h"
#include "support/world.h"
#include "trace/trace_context.h"
#include "wire/aggregates.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::HttpClient;
using testing::HttpResult;

// The spec's examples (W3C Trace Context, 3.2.2 and 3.3.1).
const std::string kCallerTrace = "0af7651916cd43dd8448eb211c80319c";
const std::string kCallerSpan = "b7ad6b7169203331";
const std::string kCallerParent = "00-" + kCallerTrace + "-" + kCallerSpan + "-01";
const std::string kOtherTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string kOtherParent = "00-" + kOtherTrace + "-00f067aa0ba902b7-01";
const std::string kStructured = "application/cloudevents+json";

std::string TraceIdOf(const std::string& traceparent) {
  auto c = trace::Parse(traceparent);
  return c ? c->trace_id : "invalid: " + traceparent;
}

class Tracing : public ::testing::Test {
 protected:
  Tracing() : http_(stack_.BaseUrl()) {
    const auto seed = testing::SeedLab(http_, testing::ReadTestData("sample_lab_template.yaml"));
    def_ = seed.definition_id;
    worker_ = seed.worker_id;
  }

  HttpResult Create(const std::map<std::string, std::string>& headers) {
    json body = {{"definition_id", def_}, {"owner_id", "c"}, {"timeslot_start", "2026-12-01T09:00:00Z"},
                 {"timeslot_end", "2026-12-01T10:00:00Z"}};
    std::map<std::string, std::string> all = headers;
    all["Content-Type"] = "application/json";
    return http_.Send("POST", "/api/v1/instances", body.dump(), all);
  }
  HttpResult Move(const std::string& id, const std::string& to, const std::map<std::string, std::string>& headers = {}) {
    std::map<std::string, std::string> all = headers;
    all["Content-Type"] = "application/json";
    return http_.Send("POST", "/api/internal/instances/" + id + "/transition", json{{"to", to}}.dump(), all);
  }
  json Get(const std::string& id) { return http_.Get("/api/v1/instances/" + id).Json(); }
  // The last event of `type` about `id`, as published.
  json Last(const std::string& id, const std::string& type) {
    json found;
    const json page = http_.Get("/api/v1/events?limit=500&subject=" + id).Json();  // outlives the loop
    for (const auto& record : page["items"])
      if (record["event"]["type"] == type) found = record["event"];
    return found;
  }

  testing::Stack stack_{testing::StoreKind::kMemory};
  HttpClient http_;
  std::string def_, worker_;
};

TEST_F(Tracing, ALabletCreatedWithATraceparentJoinsItsTraceAndItsEventsToo) {
  HttpResult r = Create({{"traceparent", kCallerParent}, {"tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"}});
  ASSERT_EQ(r.status, 201) << r.body;
  const json created = r.Json();
  EXPECT_EQ(created["trace_id"], kCallerTrace);
  // A span of ccm's own, child of the caller's, parents the lablet's later work.
  const std::string own = created["traceparent"];
  EXPECT_EQ(TraceIdOf(own), kCallerTrace);
  EXPECT_EQ(own.substr(0, 3), "00-");
  EXPECT_NE(trace::Parse(own)->span_id, kCallerSpan);
  EXPECT_EQ(created["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
  // Stored: it reads back.
  const std::string id = created["id"];
  EXPECT_EQ(Get(id)["traceparent"], own);
  EXPECT_EQ(Get(id)["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");

  const json pending = Last(id, "ccm.lablet.instance.pending");
  ASSERT_TRUE(pending.is_object());
  const auto span = trace::Parse(pending.value("traceparent", ""));
  ASSERT_TRUE(span) << pending;
  EXPECT_EQ(span->trace_id, kCallerTrace);
  EXPECT_NE(span->span_id, kCallerSpan);
  EXPECT_NE(span->span_id, trace::Parse(own)->span_id);  // a span of its own
  EXPECT_EQ(pending["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
}

TEST_F(Tracing, WithoutAValidTraceparentALabletBeginsItsOwnTrace) {
  std::vector<std::string> traces;
  for (const std::string& invalid : {std::string(), "00-00000000000000000000000000000000-" + kCallerSpan + "-01",
                                     "ff-" + kCallerTrace + "-" + kCallerSpan + "-01", std::string("garbage")}) {
    std::map<std::string, std::string> headers;
    if (!invalid.empty()) headers["traceparent"] = invalid;
    HttpResult r = Create(headers);
    ASSERT_EQ(r.status, 201) << invalid << ": " << r.body;  // never a 400: the header is optional
    const json created = r.Json();
    ASSERT_TRUE(created["trace_id"].is_string()) << created;
    EXPECT_NE(created["trace_id"], kCallerTrace);
    EXPECT_EQ(TraceIdOf(created["traceparent"]), created["trace_id"]);
    EXPECT_TRUE(created["tracestate"].is_null());
    EXPECT_EQ(TraceIdOf(Last(created["id"], "ccm.lablet.instance.pending")["traceparent"]), created["trace_id"]);
    traces.push_back(created["trace_id"]);
  }
  std::sort(traces.begin(), traces.end());
  EXPECT_EQ(std::unique(traces.begin(), traces.end()), traces.end()) << "each lablet has a trace of its own";
}

TEST_F(Tracing, ALaterRequestsEventsJoinItsTraceWhileTheLabletKeepsItsFirst) {
  const json created = Create({{"traceparent", kCallerParent}}).Json();
  const std::string id = created["id"];
  HttpResult scheduled = http_.Send("POST", "/api/internal/instances/" + id + "/schedule",
                                    json{{"worker_id", worker_}}.dump(),
                                    {{"Content-Type", "application/json"}, {"traceparent", kOtherParent}});
  ASSERT_EQ(scheduled.status, 200) << scheduled.body;
  EXPECT_EQ(TraceIdOf(Last(id, "ccm.lablet.instance.scheduled")["traceparent"]), kOtherTrace);
  EXPECT_EQ(Get(id)["trace_id"], kCallerTrace);
  EXPECT_EQ(Get(id)["traceparent"], created["traceparent"]);
  // A request without one: the lablet's trace.
  ASSERT_EQ(Move(id, "INSTANTIATING").status, 200);
  EXPECT_EQ(TraceIdOf(Last(id, "ccm.lablet.instance.provisioning.started")["traceparent"]), kCallerTrace);
}

TEST_F(Tracing, AnInboundEventsTraceParentsWhatItCauses) {
  const std::string id = Create({{"traceparent", kCallerParent}}).Json()["id"];
  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", worker_}}).status, 200);
  for (const char* to : {"INSTANTIATING", "RUNNING", "COLLECTING"}) ASSERT_EQ(Move(id, to).status, 200) << to;

  // Structured mode: the extension attribute.
  json event = {{"specversion", "1.0"}, {"id", "e-1"}, {"source", "assessment"},
                {"type", "assessment.collection.completed"}, {"datacontenttype", "application/json"},
                {"traceparent", kOtherParent}, {"tracestate", "rojo=00f067aa0ba902b7"},
                {"data", {{"instance_id", id}, {"collection_id", "c-1"}}}};
  HttpResult r = http_.Post("/api/v1/events", event.dump(), kStructured);
  ASSERT_EQ(r.status, 202) << r.body;
  const json grading = Last(id, "ccm.lablet.instance.grading.started");
  EXPECT_EQ(TraceIdOf(grading["traceparent"]), kOtherTrace);
  EXPECT_EQ(grading["tracestate"], "rojo=00f067aa0ba902b7");
  EXPECT_EQ(Get(id)["trace_id"], kCallerTrace);  // the lablet keeps its own

  // An invalid traceparent is ignored, not refused: the lablet's trace is used.
  json failed = {{"specversion", "1.0"}, {"id", "e-2"}, {"source", "assessment"},
                 {"type", "assessment.grading.failed"}, {"datacontenttype", "application/json"},
                 {"traceparent", "00-" + kOtherTrace + "-0000000000000000-01"},
                 {"data", {{"instance_id", id}, {"error_code", "engine_down"}, {"error_message", "down"}}}};
  r = http_.Post("/api/v1/events", failed.dump(), kStructured);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(TraceIdOf(Last(id, "ccm.lablet.instance.stopping")["traceparent"]), kCallerTrace);
}

TEST_F(Tracing, ABinaryModeEventsTraceIsItsTraceparentHeader) {
  const std::string id = Create({}).Json()["id"];
  ASSERT_EQ(http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", worker_}}).status, 200);
  for (const char* to : {"INSTANTIATING", "RUNNING", "COLLECTING"}) ASSERT_EQ(Move(id, to).status, 200) << to;
  HttpResult r = http_.Send("POST", "/api/v1/events", json{{"instance_id", id}, {"collection_id", "c"}}.dump(),
                            {{"Content-Type", "application/json"},
                             {"ce-specversion", "1.0"},
                             {"ce-id", "bin-1"},
                             {"ce-source", "assessment"},
                             {"ce-type", "assessment.collection.completed"},
                             {"traceparent", kOtherParent}});
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(TraceIdOf(Last(id, "ccm.lablet.instance.grading.started")["traceparent"]), kOtherTrace);
}

TEST_F(Tracing, ALabletStoredBeforeTracesGetsANewTraceWhenNextWorkedOn) {
  const std::string id = Create({}).Json()["id"];
  // As stored before traces were kept: no traceparent member at all.
  auto stored = stack_.store->GetInstance(domain::InstanceId{id});
  ASSERT_TRUE(stored);
  json old = wire::ToJson(*stored);
  for (const char* key : {"trace_id", "traceparent", "tracestate"}) old.erase(key);
  auto read = wire::InstanceFromJson(old);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(read->traceparent, "");
  EXPECT_EQ(read->tracestate, "");
  ports::Changes changes;
  changes.instances.push_back(*read);
  ASSERT_TRUE(stack_.store->Commit(changes));
  EXPECT_TRUE(Get(id)["trace_id"].is_null());
  EXPECT_TRUE(Get(id)["traceparent"].is_null());

  // A reconciler's move (no request, no trace on this thread) begins a trace and records it.
  ASSERT_EQ(trace::Current(), nullptr);
  auto moved = stack_.instances->Schedule(domain::InstanceId{id}, domain::WorkerId{worker_}, "scheduler");
  ASSERT_TRUE(moved) << moved.error().message;
  const json now = Get(id);
  ASSERT_TRUE(now["trace_id"].is_string()) << now;
  EXPECT_EQ(TraceIdOf(Last(id, "ccm.lablet.instance.scheduled")["traceparent"]), now["trace_id"]);
  // And keeps it.
  ASSERT_TRUE(stack_.instances->Transition(domain::InstanceId{id}, domain::InstanceState::kInstantiating, "test",
                                           "instantiator", std::nullopt));
  EXPECT_EQ(Get(id)["trace_id"], now["trace_id"]);
  EXPECT_EQ(TraceIdOf(Last(id, "ccm.lablet.instance.provisioning.started")["traceparent"]), now["trace_id"]);
}

// A remote that records the trace headers of each request.
struct HeaderRecorder {
  std::mutex mu;
  std::vector<std::map<std::string, std::string>> seen;
  testing::FakeServer server{[this](http::Request& r) {
    std::lock_guard lock(mu);
    std::map<std::string, std::string> h;
    for (const char* name : {"traceparent", "tracestate", "ce-traceparent"})
      if (auto it = r.headers.find(name); it != r.headers.end()) h[name] = it->second;
    seen.push_back(h);
    http::Response resp;
    resp.status = 202;
    return resp;
  }};
  std::map<std::string, std::string> Last() {
    std::lock_guard lock(mu);
    return seen.empty() ? std::map<std::string, std::string>{} : seen.back();
  }
};

TEST(TracingCalls, AnOutboundCallIsAChildSpanOfTheCurrentTrace) {
  HeaderRecorder remote;
  clients::HttpPoster poster;
  const auto post = [&](const std::map<std::string, std::string>& headers = {}) {
    return poster.Post(remote.server.Url() + "/api/v1/collections", headers, "{}", std::chrono::seconds(2),
                       std::chrono::seconds(5));
  };
  ASSERT_EQ(post().status, 202);
  EXPECT_EQ(remote.Last().count("traceparent"), 0u) << "no trace, no header";
  {
    trace::Scope scope(*trace::Parse(kCallerParent, "congo=t61rcWkgMzE"));
    ASSERT_EQ(post().status, 202);
    const auto sent = trace::Parse(remote.Last()["traceparent"]);
    ASSERT_TRUE(sent);
    EXPECT_EQ(sent->trace_id, kCallerTrace);
    EXPECT_NE(sent->span_id, kCallerSpan);
    EXPECT_EQ(remote.Last()["tracestate"], "congo=t61rcWkgMzE");
    // A caller's own header is kept.
    ASSERT_EQ(post({{"traceparent", kOtherParent}}).status, 202);
    EXPECT_EQ(remote.Last()["traceparent"], kOtherParent);
  }
}

TEST(TracingCalls, TheSinkSendsTheEventsTraceAsTheTraceparentHeader) {
  HeaderRecorder sink;
  json event = {{"specversion", "1.0"}, {"id", "1"}, {"source", "ccm"}, {"type", "ccm.lablet.instance.pending"},
                {"traceparent", kCallerParent}, {"tracestate", "congo=t61rcWkgMzE"}, {"data", json::object()}};
  const ports::OutboxEvent stored{"1", "i-1", "ccm.lablet.instance.pending", {}, event.dump()};
  for (auto mode : {cloudevents::Mode::kStructured, cloudevents::Mode::kBinary}) {
    clients::HttpEventSink out({sink.server.Url(), mode});
    ASSERT_EQ(out.Send(std::span(&stored, 1)).kind, ports::DeliveryOutcome::kDelivered);
    EXPECT_EQ(sink.Last()["traceparent"], kCallerParent);
    EXPECT_EQ(sink.Last()["tracestate"], "congo=t61rcWkgMzE");
  }
  EXPECT_EQ(sink.Last()["ce-traceparent"], kCallerParent) << "binary mode: the attribute as well";
  // Only the event's own members count: one in its data does not; one that is not a string,
  // or is named again with a value that is not, is absent; an event that does not parse has none.
  clients::HttpEventSink structured({sink.server.Url(), cloudevents::Mode::kStructured});
  const auto headers_for = [&](const std::string& text) {
    const ports::OutboxEvent e{"2", "i-1", "ccm.lablet.instance.pending", {}, text};
    EXPECT_EQ(structured.Send(std::span(&e, 1)).kind, ports::DeliveryOutcome::kDelivered) << text;
    return sink.Last();
  };
  json nested = event;
  nested.erase("traceparent");
  nested.erase("tracestate");
  nested["data"] = {{"traceparent", kCallerParent}, {"list", {{{"traceparent", kCallerParent}}}}};
  EXPECT_EQ(headers_for(nested.dump()).count("traceparent"), 0u);
  json number = event;
  number["traceparent"] = 7;
  EXPECT_EQ(headers_for(number.dump()).count("traceparent"), 0u);
  const std::string twice = R"({"id":"2","traceparent":")" + kCallerParent + R"(","traceparent":{"a":1}})";
  EXPECT_EQ(headers_for(twice).count("traceparent"), 0u);
  const std::string last = R"({"id":"2","traceparent":["x"],"tracestate":"rojo=00f067aa0ba902b7","traceparent":")" +
                           kOtherParent + R"("})";
  EXPECT_EQ(headers_for(last)["traceparent"], kOtherParent);
  EXPECT_EQ(sink.Last()["tracestate"], "rojo=00f067aa0ba902b7");
  EXPECT_EQ(headers_for(event.dump().substr(0, event.dump().size() - 1)).count("traceparent"), 0u);
  EXPECT_EQ(headers_for("[" + event.dump() + "]").count("traceparent"), 0u);  // not the event's own object
  EXPECT_EQ(headers_for(R"({"id":"2","traceparent":[")" + kCallerParent + R"("]})").count("traceparent"), 0u);
  // Binary mode reads them from the parsed event's attributes, by the same rules.
  clients::HttpEventSink binary({sink.server.Url(), cloudevents::Mode::kBinary});
  const auto binary_headers_for = [&](const json& e) {
    const ports::OutboxEvent stored_event{"2", "i-1", "ccm.lablet.instance.pending", {}, e.dump()};
    EXPECT_EQ(binary.Send(std::span(&stored_event, 1)).kind, ports::DeliveryOutcome::kDelivered) << e.dump();
    return sink.Last();
  };
  EXPECT_EQ(binary_headers_for(number).count("traceparent"), 0u);
  EXPECT_EQ(sink.Last()["ce-traceparent"], "7");
  json state_only = event;
  state_only.erase("traceparent");
  EXPECT_EQ(binary_headers_for(state_only).count("traceparent"), 0u);
  EXPECT_EQ(binary_headers_for(event)["tracestate"], "congo=t61rcWkgMzE");
  // A batch carries several traces: no header.
  clients::HttpEventSink batch({sink.server.Url(), cloudevents::Mode::kBatch});
  ASSERT_EQ(batch.Send(std::span(&stored, 1)).kind, ports::DeliveryOutcome::kDelivered);
  EXPECT_EQ(sink.Last().count("traceparent"), 0u);
}

// ccm as a process with cml-sim: the calls to CML for a lablet, and all its events, are in the
// trace of the request that created it.
TEST(TracingWorld, CmlCallsAndEventsOfALabletJoinTheTraceItWasCreatedIn) {
  testing::World world({}, {{"CCM_LISTEN", "127.0.0.1:0"}});
  world.AddWorker("w1", 32);
  const std::string definition = world.AddDefinition();
  const auto now = std::chrono::system_clock::now();
  json body = {{"definition_id", definition},
               {"owner_id", "candidate-1"},
               {"timeslot_start", testing::Rfc3339(now - std::chrono::seconds(60))},
               {"timeslot_end", testing::Rfc3339(now + std::chrono::seconds(600))}};
  HttpResult r = world.http->Send("POST", "/api/v1/instances", body.dump(),
                                  {{"Content-Type", "application/json"}, {"traceparent", kCallerParent}});
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.Json()["id"];
  ASSERT_TRUE(testing::Eventually([&] { return world.InState(id, "RUNNING"); }, std::chrono::seconds(30)))
      << world.Instance(id);

  const json requests = HttpClient(world.cml->BaseUrl()).Get("/sim/requests").Json();
  int lab_calls = 0;
  for (const auto& req : requests) {
    const std::string path = req["path"];
    if (path.find("/labs") == std::string::npos && path.find("/import") == std::string::npos) continue;
    if (path == "/api/v0/labs") continue;  // the orphan sweep's listing: no lablet's work
    ++lab_calls;
    EXPECT_EQ(TraceIdOf(req.value("traceparent", "")), kCallerTrace) << req;
  }
  EXPECT_GE(lab_calls, 2) << requests;  // import and start at least

  std::vector<std::string> types;
  for (const auto& record : world.Events(id)) {
    types.push_back(record["type"]);
    EXPECT_EQ(TraceIdOf(record["event"].value("traceparent", "")), kCallerTrace) << record;
  }
  EXPECT_EQ(types, (std::vector<std::string>{"ccm.lablet.instance.pending", "ccm.lablet.instance.scheduled",
                                             "ccm.lablet.instance.provisioning.started",
                                             "ccm.lablet.instance.running"}));
}

}  // namespace
}  // namespace ccm
