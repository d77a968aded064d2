#include "http/router.h"

#include "http/problem.h"

namespace ccm::http {

namespace {

std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '/') {
      ++pos;
      continue;
    }
    const size_t end = std::min(path.find('/', pos), path.size());
    out.push_back(path.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

bool Match(const Router::Route& route, const std::vector<std::string_view>& parts,
           std::map<std::string, std::string>* params) {
  if (route.segments.size() != parts.size()) return false;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& seg = route.segments[i];
    if (seg.size() > 2 && seg.front() == '{' && seg.back() == '}') {
      if (params) (*params)[seg.substr(1, seg.size() - 2)] = std::string(parts[i]);
    } else if (seg != parts[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

void Router::Add(std::string method, std::string pattern, Handler handler) {
  Route r{std::move(method), std::move(pattern), {}, std::move(handler)};
  for (auto s : Split(r.pattern)) r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

Response Router::Dispatch(Request& request) const {
  const auto parts = Split(request.path);
  std::string allow;
  for (const Route& r : routes_) {
    if (!Match(r, parts, nullptr)) continue;
    if (r.method == request.method) {
      Match(r, parts, &request.params);
      return r.handler(request);
    }
    if (!allow.empty()) allow += ", ";
    allow += r.method;
  }
  if (allow.empty())
    return ProblemResponse(404, "Not Found", "no route for " + request.path, request.path, "");
  Response resp = ProblemResponse(405, "Method Not Allowed", request.method + " is not allowed on " + request.path,
                                  request.path, "");
  resp.headers["Allow"] = allow;
  return resp;
}

}  // namespace ccm::http
