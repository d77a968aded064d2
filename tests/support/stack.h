#pragma once

#include <memory>
#include <string>

#include "app/collection.h"
#include "app/services.h"
#include "http/api.h"
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

// The whole service in-process: a store (SQLite unless told otherwise), the use cases and the
// HTTP server on a free loopback port.
struct Stack {
  TempDir dir;
  StoreKind kind;
  std::unique_ptr<ports::Store> store;
  ports::Outbox* outbox = nullptr;  // the same store's outbox
  os::SystemClock clock;
  os::UuidV7Generator ids;
  std::unique_ptr<app::EventFactory> events;
  std::unique_ptr<app::DefinitionService> definitions;
  std::unique_ptr<app::InstanceService> instances;
  std::unique_ptr<app::WorkerService> workers;
  std::unique_ptr<app::EventService> event_service;
  app::ReceiveMetrics receive_metrics;
  metrics::Metrics metrics{"test"};  // what /metrics serves: the outbox and the receiver's counters
  std::unique_ptr<app::EventReceiver> receiver;
  std::unique_ptr<ports::AssessmentPlatform> platform;
  std::unique_ptr<app::CollectionService> collection;
  std::unique_ptr<app::PodService> pods;
  http::Router router;
  std::unique_ptr<http::Server> server;

  // `platform` stands for the Assessment Platform; null gives one that is never reachable.
  // With `authenticate`, every route but the public ones needs a bearer token it accepts.
  explicit Stack(std::unique_ptr<ports::AssessmentPlatform> assessment_platform = nullptr,
                 app::CollectionService::Options collection_options = {}, http::Authenticator authenticate = nullptr)
      : Stack(StoreKind::kSqlite, std::move(assessment_platform), collection_options, std::move(authenticate)) {}
  explicit Stack(StoreKind store_kind, std::unique_ptr<ports::AssessmentPlatform> assessment_platform = nullptr,
                 app::CollectionService::Options collection_options = {}, http::Authenticator authenticate = nullptr)
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
    events = std::make_unique<app::EventFactory>(ids, "ccm-test");
    app::Deps deps{*store, clock, ids, *events};
    definitions = std::make_unique<app::DefinitionService>(deps);
    instances = std::make_unique<app::InstanceService>(deps);
    workers = std::make_unique<app::WorkerService>(deps);
    receiver = std::make_unique<app::EventReceiver>(deps, app::EventReceiver::Options{}, receive_metrics);
    event_service = std::make_unique<app::EventService>(*store, *outbox, clock, nullptr);
    metrics.Watch({.outbox = [this] { return outbox->GetOutboxStats(); }, .receive = &receive_metrics});
    if (!platform) platform = std::make_unique<Unreachable>();
    collection = std::make_unique<app::CollectionService>(deps, *platform, collection_options);
    pods = std::make_unique<app::PodService>(*store, "ccm");
    http::AddApiRoutes(router,
                       {*definitions, *instances, *workers, *store, *event_service, *receiver, *collection, *pods, {},
                        [this] { return metrics.Text(); }});
    if (authenticate) router.RequireAuthentication(std::move(authenticate));
    http::ServerOptions options;
    options.port = 0;
    options.handler_threads = 8;
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
