#pragma once

#include <functional>

#include <map>
#include <string>

#include "app/collection.h"
#include "app/event_service.h"
#include "app/overview.h"
#include "app/pods.h"
#include "app/receiver.h"
#include "app/services.h"
#include "app/watch.h"
#include "http/router.h"
#include "ports/outbox.h"
#include "ports/store.h"

namespace ccm::http {

// The services the REST API exposes. Not owned.
struct ApiServices {
  app::DefinitionService& definitions;
  app::InstanceService& instances;
  app::WorkerService& workers;
  ports::Store& store;  // readiness only
  app::EventService& events;
  app::EventReceiver& receiver;
  app::CollectionService& collection;
  app::PodService& pods;
  // Whether this replica runs the background work (leader election); none: always.
  std::function<bool()> leading = {};
  // The exposition /metrics serves (Prometheus text format 0.0.4), or the error that a scrape
  // answers; none: /metrics is not served.
  std::function<Result<std::string>()> metrics = {};
  // Whether this replica is draining (stopping gracefully): readiness answers 503 from then
  // on, so that load balancers send it nothing new; none: never.
  std::function<bool()> draining = {};
  // The outbox as a live feed (GET /api/v1/watch); none: the route answers 503.
  app::WatchHub* watch = nullptr;
  // GET /api/v1/overview; none: the route answers 503.
  app::OverviewService* overview = nullptr;
};

// Adds every route of the REST API (/api/v1, /api/internal, /health, /openapi.json). Two
// queue their commits (Commits::kQueued) and answer once they settle, holding no thread
// meanwhile: POST /api/v1/events (a batch's events one after the other) and a move (POST
// /api/internal/instances/{id}/transition).
void AddApiRoutes(Router& router, ApiServices services);

// One outbox record as GET /api/v1/watch sends it: a Server-Sent Event whose id is its seq,
// whose event is its CloudEvent type and whose data is the record as GET /api/v1/events lists it.
std::string WatchFrame(const ports::OutboxRecord& record);

// The OpenAPI 3.1 document of those routes (src/http/openapi.json, built in).
const std::string& OpenApiDocument();
// The AsyncAPI document of the events ccm publishes and receives (docs/asyncapi.yaml).
const std::string& AsyncApiDocument();
// The JSON Schemas of the events' data (docs/schemas/*.json, built in), by file name; served at
// GET /schemas/{file} and named by each published event's dataschema.
const std::map<std::string, std::string>& EventSchemas();

}  // namespace ccm::http
