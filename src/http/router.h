#pragma once

#include <functional>
#include <string>
#include <vector>

#include "http/message.h"

namespace ccm::http {

using Handler = std::function<Response(Request&)>;

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
  };

  void Add(std::string method, std::string pattern, Handler handler);
  // Runs the matching handler: 404 problem when no pattern matches the path, 405 (with
  // Allow) when one does but not for this method.
  Response Dispatch(Request& request) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace ccm::http
