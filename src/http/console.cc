#include "http/console.h"

#include <nlohmann/json.hpp>

#include "http/problem.h"

namespace ccm::http {

namespace {

std::string ContentTypeOf(const std::string& file) {
  auto ends = [&](std::string_view suffix) {
    return file.size() >= suffix.size() && file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".json")) return "application/json";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

// The headers of every console answer. The page is small and not versioned by name: the
// browser revalidates each time (no-cache), so a new ccm serves its new page at once.
void Secure(Response& r, const std::string& csp) {
  r.headers["Cache-Control"] = "no-cache";
  r.headers["Content-Security-Policy"] = csp;
  r.headers["X-Content-Type-Options"] = "nosniff";
  // The sign-in returns with ?code= in the address: it goes nowhere else.
  r.headers["Referrer-Policy"] = "no-referrer";
  r.headers["X-Frame-Options"] = "DENY";
}

}  // namespace

std::string OriginOf(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return {};
  const std::string s = url.substr(0, scheme);
  if (s != "http" && s != "https") return {};
  const auto end = url.find_first_of("/?#", scheme + 3);
  const std::string authority = url.substr(scheme + 3, end == std::string::npos ? std::string::npos : end - scheme - 3);
  if (authority.empty() || authority.find_first_of(" ;,'\"") != std::string::npos) return {};
  return s + "://" + authority;
}

void AddConsoleRoutes(Router& router, const ConsoleSettings& settings) {
  std::string connect = "'self'";
  if (settings.auth) {
    if (const std::string origin = OriginOf(settings.token_url); !origin.empty()) connect += " " + origin;
  }
  const std::string csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " +
                          connect + "; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";
  const nlohmann::json config = {{"auth", settings.auth},
                                 {"client_id", settings.client_id},
                                 {"authorize_url", settings.authorize_url},
                                 {"token_url", settings.token_url},
                                 {"roles_client", settings.roles_client},
                                 {"realm_roles", settings.realm_roles},
                                 {"timeouts",
                                  {{"instantiation_seconds", settings.instantiation_timeout_seconds},
                                   {"collecting_seconds", settings.collecting_timeout_seconds},
                                   {"grading_seconds", settings.grading_timeout_seconds}}}};
  router.Add("GET", "/ui", [csp](Request& req) {
    Response r;
    // "/ui" and "/ui/" reach this route alike: relative addresses in the page need the slash.
    const std::string& sent = req.raw_path.empty() ? req.path : req.raw_path;
    if (sent.empty() || sent.back() != '/') {
      r.status = 301;
      r.content_type = "text/plain; charset=utf-8";
      r.headers["Location"] = "/ui/";
      r.body = "see /ui/\n";
    } else {
      r.content_type = ContentTypeOf("index.html");
      r.body = ConsoleFiles().at("index.html");
    }
    Secure(r, csp);
    return r;
  });
  router.Add("GET", "/ui/{file}", [csp, body = config.dump()](Request& req) {
    const std::string& file = req.params["file"];
    Response r;
    if (file == "config.json") {
      r.body = body;
    } else {
      const auto& files = ConsoleFiles();
      auto it = files.find(file);
      if (it == files.end()) return ProblemResponse(404, "the console has no file " + file, req.path, "file");
      r.content_type = ContentTypeOf(file);
      r.body = it->second;
    }
    Secure(r, csp);
    return r;
  });
}

}  // namespace ccm::http
