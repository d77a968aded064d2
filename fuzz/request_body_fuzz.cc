// Fuzz target: the JSON request bodies of every route that takes one, through the real router,
// handlers and a SQLite store in a temporary folder. The first byte picks the route; the rest
// is the body. Invariant beyond "no crash": no answer is a 500, and every refusal is a
// problem+json body that names its status.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compose/composition.h"
#include "http/api.h"
#include "os/clock.h"
#include "ports/assessment_platform.h"
#include "store/sqlite/sqlite_store.h"

namespace {

using namespace ccm;

struct NoPlatform : ports::AssessmentPlatform {
  Status TriggerCollection(const ports::CollectionRequest&) override { return Error::Unavailable("no platform"); }
};

// The service, once per process, wired as `ccm serve` wires it.
struct World {
  std::unique_ptr<store::SqliteStore> store;
  os::SystemClock clock;
  os::UuidV7Generator ids;
  NoPlatform platform;
  std::unique_ptr<compose::Composition> composition;
  http::Router router;

  World() {
    char dir[] = "/tmp/ccm-fuzz-XXXXXX";
    if (!mkdtemp(dir)) std::abort();
    store = std::move(store::SqliteStore::Open({std::string(dir) + "/ccm.db"}).value());
    compose::Settings settings;
    settings.source = "fuzz";
    composition = std::make_unique<compose::Composition>(
        compose::Adapters{.store = *store, .outbox = *store, .clock = clock, .ids = ids, .platform = platform},
        settings);
    http::AddApiRoutes(router, composition->Api());
  }
};

const std::vector<std::pair<std::string, std::string>> kRoutes = {
    {"POST", "/api/v1/definitions"},
    {"POST", "/api/v1/instances"},
    {"POST", "/api/v1/workers"},
    {"POST", "/api/v1/instances/x/collect"},
    {"POST", "/api/internal/instances/x/schedule"},
    {"POST", "/api/internal/instances/x/transition"},
    {"POST", "/api/internal/workers/x/transition"},
    {"POST", "/api/internal/instances/x/grading-result"},
    {"POST", "/api/v1/events"},
    {"POST", "/api/v1/events/dead-letters/replay"},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  if (size == 0) return 0;
  const auto& [method, path] = kRoutes[data[0] % kRoutes.size()];
  http::Request r;
  r.method = method;
  r.path = path;
  r.headers["content-type"] = path == "/api/v1/events" ? "application/cloudevents+json" : "application/json";
  r.body.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  const http::Response resp = world.router.Dispatch(r);
  if (resp.status >= 500) std::abort();
  if (resp.status >= 400) {
    const auto problem = nlohmann::json::parse(resp.body, nullptr, false);
    if (!problem.is_object() || problem.value("status", 0) != resp.status) std::abort();
  }
  return 0;
}
