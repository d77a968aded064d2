#include "main/events_cli.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>

#include "transport/http_connection.h"

namespace ccm::main {

namespace {

struct Options {
  std::string url = "http://127.0.0.1:8080";
  std::string subject, type, state, since, until;
  int limit = 50;
  bool all = false;
  std::string id;
  std::string token;  // a bearer token (--token, or CCM_TOKEN)
};

// Sends the request and prints the answer; exit code 0 on 2xx, 1 otherwise.
int Call(const std::string& method, const std::string& url, const std::string& token,
         const std::function<void(const nlohmann::json&)>& print) {
  transport::Headers headers;
  if (!token.empty()) headers["Authorization"] = "Bearer " + token;
  transport::Request request;
  request.method = method;
  request.headers = &headers;
  request.total_timeout = std::chrono::seconds(30);
  transport::Connection connection;
  const transport::Response answer = connection.Send(url, request);
  if (!answer.transport_error.empty()) {
    std::cerr << "ccm events: " << url << ": " << answer.transport_error << "\n";
    return 1;
  }
  const std::string& body = answer.body;
  const long status = answer.status;
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (status < 200 || status >= 300 || j.is_discarded()) {
    std::cerr << "ccm events: HTTP " << status << ": " << (j.is_object() ? j.value("detail", body) : body) << "\n";
    return 1;
  }
  print(j);
  return 0;
}

void PrintRecords(const nlohmann::json& page) {
  for (const auto& r : page["items"])
    std::cout << r["seq"] << '\t' << r["id"].get<std::string>() << '\t' << r["state"].get<std::string>() << '\t'
              << r["attempts"] << '\t' << r["type"].get<std::string>() << '\t' << r["subject"].get<std::string>()
              << '\t' << r["last_error"].get<std::string>() << '\n';
  if (page["next"].is_string()) std::cout << "# more: --after " << page["next"].get<std::string>() << '\n';
  const bool held = std::any_of(page["items"].begin(), page["items"].end(),
                                [](const nlohmann::json& r) { return r["state"] == "held"; });
  if (held)
    std::cout << "# held: waiting behind a dead letter of the same subject; `ccm events replay` that "
                 "dead letter to release them, in order\n";
}

}  // namespace

void AddEventsCommands(CLI::App& cli) {
  auto options = std::make_shared<Options>();
  auto* events = cli.add_subcommand("events", "Read and replay a running ccm's outbox");
  events->require_subcommand(1);
  events->add_option("--url", options->url, "Base URL of ccm")->capture_default_str();
  events->add_option("--token", options->token, "Bearer token (ccm.viewer to read, ccm.admin to replay)")
      ->envname("CCM_TOKEN");

  auto* list = events->add_subcommand(
      "list", "Published events: seq, id, state (pending, delivered, dead, held), attempts, type, subject, error");
  list->fallthrough();  // --url may come after the verb
  list->add_option("--subject", options->subject, "Instance or worker id");
  list->add_option("--type", options->type, "Event type");
  list->add_option("--state", options->state, "pending, delivered, dead or held (behind a dead letter)");
  list->add_option("--since", options->since, "RFC 3339, inclusive");
  list->add_option("--until", options->until, "RFC 3339, exclusive");
  list->add_option("--limit", options->limit, "Page size")->check(CLI::Range(1, 500));
  list->callback([options] {
    std::string url = options->url + "/api/v1/events?limit=" + std::to_string(options->limit);
    for (const auto& [key, value] : {std::pair{"subject", options->subject}, {"type", options->type},
                                     {"state", options->state}, {"since", options->since}, {"until", options->until}})
      if (!value.empty()) url += std::string("&") + key + "=" + transport::UrlEscape(value);
    throw CLI::RuntimeError(Call("GET", url, options->token, PrintRecords));
  });

  auto* dead = events->add_subcommand("dead-letters", "Events given up on");
  dead->fallthrough();
  dead->add_option("--limit", options->limit, "Page size")->check(CLI::Range(1, 500));
  dead->callback([options] {
    throw CLI::RuntimeError(
        Call("GET", options->url + "/api/v1/events/dead-letters?limit=" + std::to_string(options->limit),
             options->token, PrintRecords));
  });

  auto* replay = events->add_subcommand(
      "replay", "Put a dead event (or, with --all, every one) back in the queue; its subject's held events follow it");
  replay->fallthrough();
  replay->add_option("id", options->id, "Event id");
  replay->add_flag("--all", options->all, "Replay every dead letter");
  replay->callback([options] {
    if (options->all == !options->id.empty()) throw CLI::ValidationError("replay", "give an event id or --all");
    if (options->all)
      throw CLI::RuntimeError(Call("POST", options->url + "/api/v1/events/dead-letters/replay", options->token,
                                   [](const nlohmann::json& j) { std::cout << "replayed " << j["replayed"] << "\n"; }));
    throw CLI::RuntimeError(
        Call("POST", options->url + "/api/v1/events/dead-letters/" + options->id + "/replay", options->token,
             [](const nlohmann::json& j) { std::cout << "replayed " << j["id"].get<std::string>() << "\n"; }));
  });
}

}  // namespace ccm::main
