#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "auth/jwt.h"

namespace ccm::http {

// A request as handlers see it, independent of the HTTP library.
struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // without the query, percent-decoded
  std::map<std::string, std::string> query;    // decoded query parameters (last one wins)
  std::map<std::string, std::string> headers;  // names in lower case
  std::map<std::string, std::string> params;   // path parameters filled in by the router
  std::string body;
  std::string subject;  // who the verified bearer token names; empty without authentication
  // The verified caller and its roles; nullopt without authentication (--insecure-no-auth),
  // when nobody is known to hold any role.
  std::optional<auth::Principal> principal = std::nullopt;
  // The path as sent, still percent-encoded: the router splits it into segments before it
  // decodes each, so that %2F is a slash inside a segment. Empty: split `path`.
  std::string raw_path = {};
  // The pattern of the route that matched ("/api/v1/instances/{id}"), set by the router;
  // empty when none did. Labels metrics and the access log without unbounded values.
  std::string route = {};
  // This request's id: the client's X-Request-Id when it is a short token, else one the
  // server made. Sent back in X-Request-Id and named in the access log.
  std::string id = {};

  // The header's value, or "" when absent. `name` in lower case.
  std::string_view Header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::map<std::string, std::string> headers;
  std::string body;
};

// Decodes %XX escapes (and '+' as space when `plus_as_space`). Malformed escapes are kept.
std::string PercentDecode(std::string_view in, bool plus_as_space);

// Splits "a=1&b=x%20y" into decoded pairs.
std::map<std::string, std::string> ParseQuery(std::string_view query);

}  // namespace ccm::http
