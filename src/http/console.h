#pragma once

#include <map>
#include <string>

#include "http/router.h"

namespace ccm::http {

// What the console page needs to know to sign in, served as /ui/config.json.
struct ConsoleSettings {
  // Whether the API asks for bearer tokens; false (--insecure-no-auth): the page signs nobody in.
  bool auth = true;
  std::string client_id = "ccm-operators";  // the public OIDC client of the page (PKCE, no secret)
  std::string authorize_url;              // the issuer's authorization endpoint (a page the browser goes to)
  std::string token_url;                  // the issuer's token endpoint (the page calls it: CSP connect-src)
  // Where the access token holds the roles, as the API reads them (AUTH_CLIENT_ID,
  // AUTH_REALM_ROLES): the page shows only the actions they allow (the API checks anyway).
  std::string roles_client = "ccm";
  bool realm_roles = false;
  // The time-outs past which a lablet is stuck in its state, in seconds (0: none known):
  // INSTANTIATION_TIMEOUT_SECONDS (SCHEDULED, INSTANTIATING), COLLECTING_TIMEOUT_SECONDS
  // (COLLECTING), GRADING_TIMEOUT_SECONDS (GRADING).
  int instantiation_timeout_seconds = 0;
  int collecting_timeout_seconds = 0;
  int grading_timeout_seconds = 0;
};

// Adds the operator console, public (the page holds no data; every call it makes to the API
// carries the signed-in user's token): GET /ui redirects to /ui/, which answers index.html;
// GET /ui/{file} one of the built-in files of src/console with its Content-Type, and
// /ui/config.json `settings`. Every answer carries Cache-Control: no-cache and a strict
// Content-Security-Policy: scripts, styles and images from ccm only, connections to ccm and
// to the token endpoint's origin only, no framing. An unknown file is 404 problem+json.
void AddConsoleRoutes(Router& router, const ConsoleSettings& settings);

// The origin ("scheme://host[:port]") of an http(s) URL, or "" when it is none.
std::string OriginOf(const std::string& url);

// The console's files (src/console/*, built in), by file name.
const std::map<std::string, std::string>& ConsoleFiles();

}  // namespace ccm::http
