#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "auth/jwt.h"
#include "http/message.h"

namespace ccm::http {

using Handler = std::function<Response(Request&)>;
// How a route's handler waits for what it writes (ServerOptions::queues_commit).
enum class Commits {
  kWaits,   // it commits on its own thread and waits there, or writes nothing
  kQueued,  // it queues its commit (Store::CommitThen) and answers once it settles, holding no
            // thread meanwhile
};
// Checks a bearer token. Errors: unauthenticated (401), unavailable (503: no keys to check it).
using Authenticator = std::function<Result<auth::Principal>(std::string_view token)>;

// The role a route needs, or nullopt for the public ones (/health/*, /openapi.json,
// /schemas, /schemas/*, and the console's page: /ui, /ui/*). POST /api/v1/events needs ccm.events.publish; /api/internal/* and replays
// ccm.admin; /metrics and other reads ccm.viewer; other writes ccm.operator.
std::optional<auth::Role> RequiredRole(const std::string& method, const std::string& pattern);

// Maps (method, path pattern) to a handler. Patterns are literal segments and `{name}`
// segments, which match one non-empty segment and land in Request::params. Thread-safe
// for Dispatch once all routes are added.
class Router {
 public:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
    Commits commits;
  };

  void Add(std::string method, std::string pattern, Handler handler, Commits commits = Commits::kWaits);
  // From now on every route but the public ones needs a bearer token that `authenticate`
  // accepts and that grants the route's role (RequiredRole): 401 without one, 403 without the
  // role, both problem+json, before the handler runs. Not thread-safe: call before serving.
  void RequireAuthentication(Authenticator authenticate) { authenticate_ = std::move(authenticate); }
  // Runs the matching handler: 400 problem when the (percent-decoded) path or a query
  // parameter is not UTF-8 (field "path", "query" or the parameter's name), 404 when no
  // pattern matches the path, 405 (with Allow) when one does but not for this method; 401
  // or 403 when authentication refuses.
  // A request already resolved (Resolve) runs the route found then, without matching again.
  Response Dispatch(Request& request) const;
  // Finds the route of `request` (HEAD: the GET route) and fills in its `route` and `params`,
  // as Dispatch does before it authenticates; null when none matches its path and method, or
  // the path is not UTF-8 (Dispatch answers those). The route found, or that none was, is kept
  // in the request (Request::route_index), so a second call, or Dispatch, does not match again.
  const Route* Resolve(Request& request) const;
  // Whether `request` goes to a route whose commits are queued: for
  // ServerOptions::queues_commit. Resolves the request on the way.
  bool QueuesCommit(Request& request) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  // Authenticates `request` for `route`: nullopt when it may go on (its subject set).
  std::optional<Response> Refuse(Request& request, const Route& route) const;

  std::vector<Route> routes_;
  Authenticator authenticate_;
};

}  // namespace ccm::http
