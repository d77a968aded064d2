#pragma once

#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "transport/http_connection.h"

// The one way the `ccm` commands call a running ccm: a base URL and a bearer token, GET,
// POST and DELETE with JSON bodies, the documented exit codes, and errors printed from the
// problem+json body.
namespace ccm::main {

// The exit codes of every `ccm` command that calls a running ccm (documented in the README,
// "The ccm command", and in `ccm --help`). Scripts may rely on them.
enum ExitCode : int {
  kExitOk = 0,            // the call succeeded
  kExitFailed = 1,        // it failed another way: a 5xx, an answer that is not JSON, TLS
  kExitUsage = 2,         // the command line is wrong (nothing was sent)
  kExitNotFound = 3,      // 404
  kExitRefused = 4,       // 409, 412, 428: a conflict or a precondition not met
  kExitInvalid = 5,       // 400, 413, 415, 422: the input was refused
  kExitDenied = 6,        // 401, 403: no valid token, or not the role
  kExitUnreachable = 7,   // no answer: connection refused, unreachable, timed out
};

// The exit code of an HTTP answer with `status` (2xx: kExitOk).
int ExitCodeForStatus(long status);
// The exit code of a request that got no HTTP answer.
int ExitCodeForFailure(transport::Failure failure);

// The text of --help's footer: the exit codes and the environment.
std::string ExitCodesHelp();

// How every command reaches ccm and prints: set by --url, --token, -o on the noun
// (`ccm instances --url U list` and `ccm instances list --url U` both work).
struct ClientOptions {
  std::string url = "http://127.0.0.1:8080";  // --url, env CCM_URL
  std::string token;                           // --token, env CCM_TOKEN; empty: none sent
  std::string output = "table";                // -o: table, json or yaml
};

// Adds --url, --token and -o/--output to `noun`. `with_output` false for commands that print
// no document.
void AddClientOptions(CLI::App& noun, ClientOptions& options, bool with_output = true);

// What a call returned: exit_code kExitOk and the parsed JSON body on a 2xx, else the
// exit code of the failure (already printed on stderr).
struct ApiResult {
  int exit_code = kExitFailed;
  long status = 0;
  nlohmann::json body;  // null when the answer had no body
  bool ok() const { return exit_code == kExitOk; }
};

// A query string's pairs, in order; pairs with an empty value are not sent.
using Query = std::vector<std::pair<std::string, std::string>>;

// Calls one route of a running ccm. Not thread-safe (one keep-alive connection).
class ApiClient {
 public:
  // `who` prefixes every error printed ("ccm instances get").
  ApiClient(const ClientOptions& options, std::string who, std::ostream& err);

  // Sends `method` `path` (beginning with /api/) with `query` escaped, `body` as JSON when
  // it is not null, and `headers` (empty values are not sent). On a 2xx that is JSON (or
  // empty), returns it with kExitOk. Else prints one error on `err` and returns its exit
  // code: from problem+json, "<who>: <status> <title>: <detail>" and then the `field`, the
  // `code` and each entry of an `errors` list when the body has them; from a transport
  // failure, the URL and the reason.
  ApiResult Call(const std::string& method, const std::string& path, const Query& query = {},
                 const nlohmann::json& body = nullptr, const transport::Headers& headers = {});

  // GETs a list route page by page: one page with `all` false, else every page, following
  // `next` as ?after=. Returns {"items": [...], "next": <the last page's next>}.
  ApiResult List(const std::string& path, Query query, bool all);

 private:
  ClientOptions options_;
  std::string who_;
  std::ostream& err_;
  transport::Connection connection_;
};

// Prints the problem+json `body` of a failed call with `status` on `err` (as Call does).
void PrintProblem(std::ostream& err, const std::string& who, long status, const std::string& body);

// Escapes each path segment of an id given on the command line.
std::string Segment(const std::string& id);

}  // namespace ccm::main
