#include "main/events_cli.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <memory>

#include "main/api_client.h"
#include "main/cli_format.h"

namespace ccm::main {

namespace {

struct Options {
  ClientOptions client;
  std::string subject, type, state, since, until;
  int limit = 50;
  std::string after;
  bool all = false;
  std::string id;
};

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

// Lists `path` with `query` and the paging options, printed as -o says (the table: one
// tab-separated line per record).
int ListRecords(const Options& o, const std::string& who, const std::string& path, Query query) {
  query.emplace_back("limit", std::to_string(o.limit));
  query.emplace_back("after", o.after);
  ApiClient client(o.client, who, std::cerr);
  const ApiResult page = client.List(path, std::move(query), o.all);
  if (!page.ok()) return page.exit_code;
  PrintDocument(std::cout, o.client.output, page.body, [&] { PrintRecords(page.body); });
  return kExitOk;
}

void AddPaging(CLI::App* verb, Options& o) {
  verb->add_option("--limit", o.limit, "Page size")->check(CLI::Range(1, 500))->capture_default_str();
  verb->add_option("--after", o.after, "Start after this `next` of a previous page (a sequence number)");
  verb->add_flag("--all", o.all, "Follow `next` to the last page");
}

}  // namespace

void AddEventsCommands(CLI::App& cli) {
  auto options = std::make_shared<Options>();
  auto* events = cli.add_subcommand("events", "Read and replay a running ccm's outbox");
  events->require_subcommand(1);
  AddClientOptions(*events, options->client);

  auto* list = events->add_subcommand(
      "list", "Published events: seq, id, state (pending, delivered, dead, held), attempts, type, subject, error");
  list->fallthrough();  // --url may come after the verb
  list->add_option("--subject", options->subject, "Instance or worker id");
  list->add_option("--type", options->type, "Event type");
  list->add_option("--state", options->state, "pending, delivered, dead or held (behind a dead letter)");
  list->add_option("--since", options->since, "RFC 3339, inclusive");
  list->add_option("--until", options->until, "RFC 3339, exclusive");
  AddPaging(list, *options);
  list->callback([options] {
    throw CLI::RuntimeError(ListRecords(*options, "ccm events list", "/api/v1/events",
                                        {{"subject", options->subject},
                                         {"type", options->type},
                                         {"state", options->state},
                                         {"since", options->since},
                                         {"until", options->until}}));
  });

  auto* dead = events->add_subcommand("dead-letters", "Events given up on");
  dead->fallthrough();
  AddPaging(dead, *options);
  dead->callback([options] {
    throw CLI::RuntimeError(ListRecords(*options, "ccm events dead-letters", "/api/v1/events/dead-letters", {}));
  });

  auto* replay = events->add_subcommand(
      "replay", "Put a dead event (or, with --all, every one) back in the queue; its subject's held events follow it");
  replay->fallthrough();
  replay->add_option("id", options->id, "Event id");
  replay->add_flag("--all", options->all, "Replay every dead letter");
  replay->callback([options] {
    if (options->all == !options->id.empty()) throw CLI::ValidationError("replay", "give an event id or --all");
    ApiClient client(options->client, "ccm events replay", std::cerr);
    const std::string path = options->all ? "/api/v1/events/dead-letters/replay"
                                          : "/api/v1/events/dead-letters/" + Segment(options->id) + "/replay";
    const ApiResult done = client.Call("POST", path);
    if (!done.ok()) throw CLI::RuntimeError(done.exit_code);
    PrintDocument(std::cout, options->client.output, done.body, [&] {
      if (options->all)
        std::cout << "replayed " << done.body["replayed"] << "\n";
      else
        std::cout << "replayed " << done.body["id"].get<std::string>() << "\n";
    });
    throw CLI::RuntimeError(kExitOk);
  });
}

}  // namespace ccm::main
