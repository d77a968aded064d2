#pragma once

#include <functional>
#include <memory>
#include <string>

#include "compose/composition.h"
#include "http/api.h"
#include "http/console.h"
#include "http/server.h"
#include "metrics/metrics.h"
#include "os/clock.h"
#include "ports/assessment_platform.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "store/memory/memory_store.h"
#include "store/sqlite/sqlite_store.h"
#include "support/temp_dir.h"

namespace ccm::testing {

// An Assessment Platform that never answers.
struct Unreachable : ports::AssessmentPlatform {
  Status TriggerCollection(const ports::CollectionRequest&) override {
    return Error::Unavailable("assessment platform POST /api/v1/collections: Couldn't connect to server");
  }
};

// Where a Stack keeps its state.
enum class StoreKind {
  kSqlite,  // a SQLite file in the stack's temporary folder (DbPath), as `ccm serve` keeps it
  kMemory,  // a MemoryStore: faster, for tests that never read the file (no DbPath)
};

// Puts a store of a test's own in front of the one a Stack opened (it owns that one then).
using StoreWrap = std::function<std::unique_ptr<ports::Store>(std::unique_ptr<ports::Store>)>;

// The whole service in-process: a store (SQLite unless told otherwise), the use cases wired
// as `ccm serve` wires them (compose::Composition, without background work) and the HTTP
// server on a free loopback port.
struct Stack {
  TempDir dir;
  StoreKind kind;
  std::unique_ptr<ports::Store> store;
  ports::Outbox* outbox = nullptr;  // the same store's outbox
  os::SystemClock clock;
  os::UuidV7Generator ids;
  metrics::Metrics metrics{"test"};  // what /metrics serves: the outbox and the receiver's counters
  std::unique_ptr<ports::AssessmentPlatform> platform;
  std::unique_ptr<compose::Composition> composition;
  // The composition's use cases.
  app::EventFactory* events = nullptr;
  app::DefinitionService* definitions = nullptr;
  app::InstanceService* instances = nullptr;
  app::WorkerService* workers = nullptr;
  app::EventService* event_service = nullptr;
  app::EventReceiver* receiver = nullptr;
  app::CollectionService* collection = nullptr;
  app::PodService* pods = nullptr;
  http::Router router;
  std::unique_ptr<http::Server> server;

  // `platform` stands for the Assessment Platform; null gives one that is never reachable.
  // With `authenticate`, every route but the public ones needs a bearer token it accepts.
  explicit Stack(std::unique_ptr<ports::AssessmentPlatform> assessment_platform = nullptr,
                 app::CollectionService::Options collection_options = {}, http::Authenticator authenticate = nullptr,
                 app::WatchOptions watch = {})
      : Stack(StoreKind::kSqlite, std::move(assessment_platform), collection_options, std::move(authenticate),
              std::move(watch)) {}
  // `watch`: GET /api/v1/watch's limits (its render is the server's own). `wrap`: what the
  // use cases see of the store instead of it (the outbox stays the store's own).
  explicit Stack(StoreKind store_kind, std::unique_ptr<ports::AssessmentPlatform> assessment_platform = nullptr,
                 app::CollectionService::Options collection_options = {}, http::Authenticator authenticate = nullptr,
                 app::WatchOptions watch = {}, const StoreWrap& wrap = nullptr)
      : kind(store_kind), platform(std::move(assessment_platform)) {
    if (kind == StoreKind::kMemory) {
      auto s = std::make_unique<store::MemoryStore>();
      outbox = s.get();
      store = std::move(s);
    } else {
      auto s = store::SqliteStore::Open({dir.File("ccm.db")});
      if (!s) throw std::runtime_error(s.error().message);
      outbox = s->get();
      store = std::move(s.value());
    }
    if (wrap) store = wrap(std::move(store));
    if (!platform) platform = std::make_unique<Unreachable>();
    compose::Settings settings;
    settings.source = "ccm-test";
    settings.collection = collection_options;
    settings.watch = std::move(watch);
    composition = std::make_unique<compose::Composition>(
        compose::Adapters{.store = *store, .outbox = *outbox, .clock = clock, .ids = ids, .platform = *platform},
        settings);
    events = &composition->events();
    definitions = &composition->definitions();
    instances = &composition->instances();
    workers = &composition->workers();
    event_service = &composition->event_service();
    receiver = &composition->receiver();
    collection = &composition->collection();
    pods = &composition->pods();
    metrics.Watch({.outbox = [this] { return outbox->GetOutboxStats(); },
                   .receive = &composition->counters().receive,
                   .watch = [this] { return composition->watch().counts(); }});
    http::AddApiRoutes(router, composition->Api({}, [this] { return metrics.Text(); }));
    http::AddConsoleRoutes(router, {});  // as ccm serve: every route it serves is documented and checked
    if (authenticate) router.RequireAuthentication(std::move(authenticate));
    http::ServerOptions options;
    options.port = 0;
    options.handler_threads = 8;
    // As ccm serve on a store that commits off the caller's thread.
    options.queues_commit = [this](http::Request& r) { return router.QueuesCommit(r); };
    server = std::make_unique<http::Server>(options, [this](http::Request& r) { return router.Dispatch(r); });
    if (auto started = server->Start(); !started) throw std::runtime_error(started.error().message);
  }
  ~Stack() { server->Stop(); }

  std::string BaseUrl() const { return "http://127.0.0.1:" + std::to_string(server->port()); }
  // The SQLite file. Throws for a stack on the memory store, which has none.
  std::string DbPath() const {
    if (kind != StoreKind::kSqlite) throw std::logic_error("a Stack on the memory store has no database file");
    return dir.File("ccm.db");
  }
};

}  // namespace ccm::testing
