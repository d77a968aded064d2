// Publishing and delivery figures for docs/benchmarks.md:
//  1. what writing an event into the outbox adds to a durable state change (p50, p99 of
//     single commits with and without the event);
//  2. events per second the dispatcher delivers to a local sink in each mode (the sink
//     answers 202 after reading the body, over loopback HTTP, on its network thread): 60,000
//     events in structured and binary mode, 200,000 in batch mode, with one lane (one request
//     in flight at a time) and with several (DispatcherOptions::concurrency, the setting
//     CLOUDEVENTS_SINK_CONCURRENCY). Each event carries a trace (the Distributed Tracing
//     extension), as ccm's own do, and so each request the trace's headers.
//
// ccm_delivery_bench                    both figures; delivery with 1 lane and with 8 (the default)
// ccm_delivery_bench 1 2 4 8            delivery only, with each number of lanes given
// ccm_delivery_bench --sink-ms=2 1 4 8  the same against a sink that answers after 2 ms
//                                       (a sink across a network), a tenth of the events
// ccm_delivery_bench --mode=structured 4  one mode only (structured, binary or batch), as
//                                       for a profile of that mode's delivery
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "app/dispatcher.h"
#include "app/events.h"
#include "clients/http_event_sink.h"
#include "http/server.h"
#include "os/clock.h"
#include "ports/store.h"
#include "store/sqlite/sqlite_store.h"
#include "trace/trace_context.h"

using namespace ccm;
using Clock = std::chrono::steady_clock;

namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/ccm-delivery-XXXXXX";
  return mkdtemp(tmpl);
}

domain::LabletInstance Instance(const std::string& id) {
  domain::LabletInstance i;
  i.id = {id};
  i.definition_id = {"def"};
  i.definition_version = "1.0.0";
  i.owner_id = "candidate";
  i.created_at = FromUnixMillis(0);
  return i;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

void PublishOverhead() {
  const std::string dir = TempDir();
  auto store = std::move(store::SqliteStore::Open({dir + "/ccm.db"}).value());
  os::SystemClock clock;
  os::UuidV7Generator ids;
  app::EventFactory events(ids, "ccm");
  constexpr int kSamples = 2000;
  for (bool with_event : {false, true}) {
    std::vector<double> us;
    for (int n = 0; n < kSamples; ++n) {
      domain::LabletInstance i = Instance((with_event ? "e" : "p") + std::to_string(n));
      ports::Changes c;
      const auto start = Clock::now();
      c.instances = {i};
      if (with_event) c.events = {events.InstanceCreated(i)};
      if (!store->Commit(c)) std::abort();
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    std::printf("durable commit of a new instance %-18s p50 %7.1f us  p99 %7.1f us\n",
                with_event ? "with its event:" : "without an event:", Percentile(us, 0.5), Percentile(us, 0.99));
  }
}

void Delivery(cloudevents::Mode mode, const char* name, int count, int lanes, int sink_ms) {
  const std::string dir = TempDir();
  auto store = std::move(store::SqliteStore::Open({dir + "/ccm.db"}).value());
  os::SystemClock clock;
  os::UuidV7Generator ids;
  app::EventFactory events(ids, "ccm");
  // Each event in a trace, as ccm's own are (the request or the lablet that caused it), so
  // that each delivery carries the trace's headers.
  trace::Scope traced(trace::NewRoot());
  for (int written = 0; written < count;) {
    ports::Changes c;
    for (int k = 0; k < 1000 && written < count; ++k, ++written)
      c.events.push_back(events.InstanceCreated(Instance("i" + std::to_string(written % 5000))));
    if (!store->Commit(c)) std::abort();
  }
  http::ServerOptions so;
  so.port = 0;
  so.handler_threads = std::max(2, lanes);  // the sink takes as many requests at once as are sent
  // A sink that answers at once does so on the network thread that read the request, as a
  // receiver that only acknowledges would, rather than through a handler pool and back: the
  // figure is the dispatcher's, and the sink shares the two cores with it.
  if (sink_ms == 0) so.inline_paths = {"/"};
  http::Server sink_server(so, [sink_ms](http::Request&) {
    if (sink_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sink_ms));
    http::Response r;
    r.status = 202;
    return r;
  });
  if (!sink_server.Start()) std::abort();
  clients::HttpEventSinkOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(sink_server.port()) + "/";
  o.mode = mode;
  o.batch_size = 500;
  clients::HttpEventSink sink(o);
  app::DispatcherOptions d;
  d.round_size = mode == cloudevents::Mode::kBatch ? 5000 : 1000;
  d.concurrency = lanes;
  app::DispatchMetrics metrics;
  app::Dispatcher dispatcher(*store, *store, sink, clock, d, metrics);
  const auto start = Clock::now();
  int delivered = 0;
  while (delivered < count) {
    auto n = dispatcher.RunOnce();
    if (!n) std::abort();
    delivered += *n;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("delivery, %-10s %2d lane%s %7d events in %5.2f s: %8.0f events/s\n", name, lanes, lanes == 1 ? " " : "s",
              count, seconds, count / seconds);
  sink_server.Stop();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> lanes;
  int sink_ms = 0;
  std::string only;  // one mode's name, or every mode
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--sink-ms=", 0) == 0) {
      sink_ms = std::atoi(arg.c_str() + 10);
      continue;
    }
    const bool mode = arg.rfind("--mode=", 0) == 0;
    if (mode) only = arg.substr(7);
    const int n = mode ? 0 : std::atoi(argv[i]);
    if (mode ? only != "structured" && only != "binary" && only != "batch" : n < 1) {
      std::fprintf(stderr,
                   "usage: %s [--sink-ms=MS] [--mode=structured|binary|batch] [LANES...]  (each a number of lanes, at "
                   "least 1)\n",
                   argv[0]);
      return 2;
    }
    if (mode) continue;
    lanes.push_back(n);
  }
  if (lanes.empty()) {
    if (sink_ms == 0) PublishOverhead();
    lanes = {1, 8};
  }
  const int scale = sink_ms > 0 ? 10 : 1;
  if (sink_ms > 0) std::printf("a sink that answers after %d ms\n", sink_ms);
  for (int n : lanes) {
    if (only.empty() || only == "structured")
      Delivery(cloudevents::Mode::kStructured, "structured", 60000 / scale, n, sink_ms);
    if (only.empty() || only == "binary") Delivery(cloudevents::Mode::kBinary, "binary", 60000 / scale, n, sink_ms);
    if (only.empty() || only == "batch") Delivery(cloudevents::Mode::kBatch, "batch", 200000 / scale, n, sink_ms);
  }
  return 0;
}
