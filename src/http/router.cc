#include "http/router.h"

#include "http/problem.h"

#include <cctype>

#include "domain/utf8.h"
#include "trace/trace_context.h"

#include <spdlog/spdlog.h>

namespace ccm::http {

namespace {

const std::string kGet = "GET";

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

// The part of the request line that is not text, or nullopt: ids and names from the path and
// the query end up in answers, events and store keys, all of which must be UTF-8.
std::optional<Error> NotUtf8(const Request& request) {
  if (!domain::IsValidUtf8(request.path))
    return Error::InvalidArgument("the path is not UTF-8 once percent-decoded", "path");
  for (const auto& [key, value] : request.query) {
    if (!domain::IsValidUtf8(key))
      return Error::InvalidArgument("a query parameter name is not UTF-8 once percent-decoded", "query");
    if (!domain::IsValidUtf8(value))
      return Error::InvalidArgument("query parameter " + key + " is not UTF-8 once percent-decoded", key);
  }
  return std::nullopt;
}

}  // namespace

std::optional<auth::Role> RequiredRole(const std::string& method, const std::string& pattern) {
  auto starts = [&](std::string_view prefix) { return pattern.rfind(prefix, 0) == 0; };
  if (starts("/health/") || pattern == "/openapi.json" || pattern == "/asyncapi.yaml" || pattern == "/schemas" ||
      starts("/schemas/") || pattern == "/ui" || starts("/ui/"))
    return std::nullopt;
  if (method == "POST" && pattern == "/api/v1/events") return auth::Role::kEventsPublish;
  if (starts("/api/internal/") || pattern.find("/replay") != std::string::npos) return auth::Role::kAdmin;
  if (method == "GET" || method == "HEAD") return auth::Role::kViewer;
  return auth::Role::kOperator;
}

std::optional<Response> Router::Refuse(Request& request, const Route& route) const {
  const auto role = RequiredRole(route.method, route.pattern);
  if (!role) return std::nullopt;
  auto unauthorized = [&](const std::string& detail, const std::string& challenge) {
    Response r = ProblemResponse(401, detail, request.path, "authorization");
    r.headers["WWW-Authenticate"] = challenge;
    return r;
  };
  const std::string_view header = request.Header("authorization");
  constexpr std::string_view kScheme = "bearer ";
  std::string scheme(header.substr(0, std::min(header.size(), kScheme.size())));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != kScheme || header.size() == kScheme.size())
    return unauthorized("a bearer token is required", "Bearer realm=\"ccm\"");
  auto principal = authenticate_(header.substr(kScheme.size()));
  if (!principal) {
    if (principal.error().code == ErrorCode::kUnauthenticated)
      return unauthorized(principal.error().message, "Bearer realm=\"ccm\", error=\"invalid_token\"");
    return ErrorResponse(principal.error(), request.path);
  }
  if (!principal->Has(*role))
    return ProblemResponse(403, principal->subject + " lacks the role " + std::string(auth::ToString(*role)) + " for " +
                               route.method + " " + route.pattern,
                           request.path, "authorization");
  request.subject = principal->subject;
  request.principal = std::move(principal.value());
  return std::nullopt;
}

void Router::Add(std::string method, std::string pattern, Handler handler, Commits commits) {
  Route r{std::move(method), std::move(pattern), {}, std::move(handler), commits};
  for (auto s : Split(r.pattern)) r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

namespace {

std::optional<trace::TraceContext> RequestTrace(const Request& request) {
  const auto tp = request.headers.find("traceparent");
  if (tp == request.headers.end()) return std::nullopt;
  const auto ts = request.headers.find("tracestate");
  auto parent = trace::Parse(tp->second, ts == request.headers.end() ? std::string_view() : ts->second);
  if (!parent) {
    spdlog::debug("{} {}: traceparent '{}' is not a valid W3C traceparent; ignored", request.method, request.path,
                  tp->second.substr(0, 64));
    return std::nullopt;
  }
  return parent->Child();
}

}  // namespace

namespace {

// The path's segments, each percent-decoded: /instances/a%2Fb names "a/b".
std::vector<std::string> Segments(const Request& request) {
  // Split on the path as sent, then decoded.
  std::vector<std::string> decoded;
  for (auto part : Split(request.raw_path.empty() ? request.path : request.raw_path))
    decoded.push_back(request.raw_path.empty() ? std::string(part) : PercentDecode(part, false));
  return decoded;
}

// HEAD is served by the GET route (the server sends its headers without the body).
const std::string& RouteMethod(const Request& request) { return request.method == "HEAD" ? kGet : request.method; }

}  // namespace

const Router::Route* Router::Resolve(Request& request) const {
  if (request.route_index == Request::kNoRoute) return nullptr;
  if (request.route_index > 0 && request.route_index <= routes_.size()) return &routes_[request.route_index - 1];
  // A miss is kept too: a request the server resolved to pick its pool, answered 404 or 405,
  // is not matched again before Dispatch lists the methods its path has.
  request.route_index = Request::kNoRoute;
  if (NotUtf8(request)) return nullptr;
  const std::vector<std::string> decoded = Segments(request);
  const std::vector<std::string_view> parts(decoded.begin(), decoded.end());
  const std::string& method = RouteMethod(request);
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const Route& r = routes_[i];
    if (r.method != method || !Match(r, parts, nullptr)) continue;
    request.route = r.pattern;
    request.params.clear();
    Match(r, parts, &request.params);
    request.route_index = i + 1;
    return &r;
  }
  return nullptr;
}

bool Router::QueuesCommit(Request& request) const {
  const Route* route = Resolve(request);
  return route && route->commits == Commits::kQueued;
}

Response Router::Dispatch(Request& request) const {
  if (auto bad = NotUtf8(request)) return ErrorResponse(*bad, "");
  if (const Route* r = Resolve(request)) {
    if (authenticate_)
      if (auto refused = Refuse(request, *r)) return *refused;
    // W3C Trace Context: a valid `traceparent` makes what the request does a span of the
    // caller's trace (an invalid one is ignored, as the spec asks).
    trace::Scope scope(RequestTrace(request));
    return r->handler(request);
  }
  // No route for this method: 405 naming those the path has, or 404 when it has none.
  const std::vector<std::string> decoded = Segments(request);
  const std::vector<std::string_view> parts(decoded.begin(), decoded.end());
  std::string allow;
  for (const Route& r : routes_) {
    if (!Match(r, parts, nullptr)) continue;
    if (!allow.empty()) allow += ", ";
    allow += r.method;
    if (r.method == kGet) allow += ", HEAD";
  }
  if (allow.empty())
    return ProblemResponse(404, "no route for " + request.path, request.path, "");
  Response resp = ProblemResponse(405, request.method + " is not allowed on " + request.path,
                                  request.path, "");
  resp.headers["Allow"] = allow;
  return resp;
}

}  // namespace ccm::http
