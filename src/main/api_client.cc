#include "main/api_client.h"

#include <algorithm>
#include <chrono>
#include <ostream>

namespace ccm::main {

using nlohmann::json;

int ExitCodeForStatus(long status) {
  if (status >= 200 && status < 300) return kExitOk;
  switch (status) {
    case 404: return kExitNotFound;
    case 409:
    case 412:
    case 428: return kExitRefused;
    case 400:
    case 413:
    case 415:
    case 422: return kExitInvalid;
    case 401:
    case 403: return kExitDenied;
    default: return kExitFailed;
  }
}

int ExitCodeForFailure(transport::Failure failure) {
  switch (failure) {
    case transport::Failure::kNone: return kExitOk;
    case transport::Failure::kTimedOut:
    case transport::Failure::kOther: return kExitUnreachable;
    case transport::Failure::kTlsPeerUnverified:
    case transport::Failure::kTlsLocalFiles:
    case transport::Failure::kAborted: return kExitFailed;
  }
  return kExitFailed;
}

std::string ExitCodesHelp() {
  return "Exit codes of the commands that call ccm:\n"
         "  0  success\n"
         "  1  the call failed another way (5xx, an answer that is not JSON, TLS)\n"
         "  2  usage error (bad command line; nothing was sent)\n"
         "  3  not found (404)\n"
         "  4  refused: conflict or precondition (409, 412, 428)\n"
         "  5  invalid input (400, 413, 415, 422), or a -f document that cannot be read or parsed\n"
         "  6  not authenticated or not allowed (401, 403)\n"
         "  7  cannot reach ccm (connection refused, unreachable, timed out)\n"
         "--url, --token and -o may come before or after the verb (ccm instances list --url U).\n"
         "Environment: CCM_URL (--url, default http://127.0.0.1:8080), CCM_TOKEN (--token).\n";
}

void AddClientOptions(CLI::App& noun, ClientOptions& options, bool with_output) {
  noun.footer(ExitCodesHelp());
  noun.add_option("--url", options.url, "Base URL of ccm")->envname("CCM_URL")->capture_default_str();
  noun.add_option("--token", options.token, "Bearer token (ccm.viewer to read, ccm.operator to change)")
      ->envname("CCM_TOKEN");
  if (with_output)
    noun.add_option("-o,--output", options.output, "Output format: table, json (the API's JSON) or yaml")
        ->check(CLI::IsMember({"table", "json", "yaml"}))
        ->capture_default_str();
}

void PrintProblem(std::ostream& err, const std::string& who, long status, const std::string& body) {
  const json problem = json::parse(body, nullptr, false);
  err << who << ": " << status;
  if (!problem.is_object()) {
    // Not problem+json (a proxy's page, say): its first line, if any, says what happened.
    const std::string first = body.substr(0, std::min(body.find('\n'), std::size_t{200}));
    err << (first.empty() ? "" : ": " + first) << "\n";
    return;
  }
  auto text = [&problem](const char* key) {
    auto it = problem.find(key);
    return it != problem.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (const std::string title = text("title"); !title.empty()) err << " " << title;
  if (const std::string detail = text("detail"); !detail.empty()) err << ": " << detail;
  err << "\n";
  if (const std::string field = text("field"); !field.empty()) err << "  field: " << field << "\n";
  if (const std::string code = text("code"); !code.empty()) err << "  code: " << code << "\n";
  if (auto errors = problem.find("errors"); errors != problem.end() && errors->is_array()) {
    for (const json& e : *errors) {
      if (!e.is_object()) {
        err << "  - " << (e.is_string() ? e.get<std::string>() : e.dump()) << "\n";
        continue;
      }
      err << "  -";
      for (const char* key : {"id", "status", "field"})
        if (auto it = e.find(key); it != e.end() && !it->is_null())
          err << " " << key << "=" << (it->is_string() ? it->get<std::string>() : it->dump());
      if (auto it = e.find("detail"); it != e.end() && it->is_string()) err << ": " << it->get<std::string>();
      err << "\n";
    }
  }
}

std::string Segment(const std::string& id) { return transport::UrlEscape(id); }

ApiClient::ApiClient(const ClientOptions& options, std::string who, std::ostream& err)
    : options_(options), who_(std::move(who)), err_(err) {
  // A trailing slash on --url would double the one of every path.
  while (!options_.url.empty() && options_.url.back() == '/') options_.url.pop_back();
}

ApiResult ApiClient::Call(const std::string& method, const std::string& path, const Query& query,
                          const nlohmann::json& body, const transport::Headers& headers) {
  std::string url = options_.url + path;
  char sep = '?';
  for (const auto& [key, value] : query) {
    if (value.empty()) continue;
    url += sep + transport::UrlEscape(key) + "=" + transport::UrlEscape(value);
    sep = '&';
  }
  transport::Headers sent = headers;
  if (!options_.token.empty()) sent["Authorization"] = "Bearer " + options_.token;
  sent["Accept"] = "application/json, application/problem+json";
  const std::string text = body.is_null() ? std::string() : body.dump();
  if (!body.is_null()) sent["Content-Type"] = "application/json";
  transport::Request request;
  request.method = method;
  request.headers = &sent;
  request.body = text;
  request.connect_timeout = std::chrono::seconds(10);
  request.total_timeout = std::chrono::seconds(30);
  const transport::Response answer = connection_.Send(url, request);

  ApiResult result;
  result.status = answer.status;
  if (!answer.transport_error.empty()) {
    err_ << who_ << ": " << method << " " << url << ": " << answer.transport_error << "\n";
    result.exit_code = ExitCodeForFailure(answer.failure);
    return result;
  }
  result.exit_code = ExitCodeForStatus(answer.status);
  if (!result.ok()) {
    PrintProblem(err_, who_, answer.status, answer.body);
    return result;
  }
  if (answer.body.empty()) return result;
  result.body = json::parse(answer.body, nullptr, false);
  if (result.body.is_discarded()) {
    err_ << who_ << ": " << method << " " << url << ": " << answer.status
         << " with a body that is not JSON: is --url a ccm?\n";
    result.exit_code = kExitFailed;
    result.body = nullptr;
  }
  return result;
}

ApiResult ApiClient::List(const std::string& path, Query query, bool all) {
  json items = json::array();
  // The first page from the caller's ?after= (none: from the start); the next from `next`.
  std::size_t after = 0;
  while (after < query.size() && query[after].first != "after") ++after;
  if (after == query.size()) query.emplace_back("after", "");
  for (;;) {
    ApiResult page = Call("GET", path, query);
    if (!page.ok()) return page;
    if (!page.body.is_object() || !page.body.contains("items") || !page.body["items"].is_array()) {
      err_ << who_ << ": GET " << path << ": the answer has no list of items\n";
      page.exit_code = kExitFailed;
      return page;
    }
    for (auto& item : page.body["items"]) items.push_back(std::move(item));
    const json next = page.body.value("next", json(nullptr));
    if (!all || !next.is_string() || next.get<std::string>().empty()) {
      page.body = {{"items", std::move(items)}, {"next", next}};
      return page;
    }
    query[after].second = next.get<std::string>();
  }
}

}  // namespace ccm::main
