#include "main/resources_cli.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>

#include "main/api_client.h"
#include "main/cli_format.h"

namespace ccm::main {

namespace {

using nlohmann::json;

// A verb's callback ends the program with its exit code (CLI11 returns it from main).
[[noreturn]] void Exit(int code) { throw CLI::RuntimeError(code); }

Timestamp Now() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

// One kind of resource: where it lives and how its table reads.
struct Resource {
  std::string noun;      // "instances", as typed
  std::string singular;  // "instance", as printed
  std::string path;      // "/api/v1/instances"
  std::vector<std::string> header;
  std::function<std::vector<std::string>(const json&)> row;
};

// What the verbs of one noun read from the command line; one per noun, shared by its verbs.
struct Args {
  ClientOptions client;
  std::string id;
  // list
  int limit = 0;  // 0: the API's default
  std::string after;
  bool all = false;
  std::map<std::string, std::string> filter_values;  // by option name: --worker-id

  bool include_deleted = false;
  // get
  std::string version;
  // create: -f and the fields given as options, as JSON pointers to their values
  std::string file;
  std::map<std::string, std::string> strings;
  std::map<std::string, double> numbers;
  std::map<std::string, std::vector<std::string>> lists;
  std::string idempotency_key;
  std::string lab_yaml_file;
  // delete, drain, collect
  std::string reason;
  std::string triggered_by;
};

std::string Who(const Resource& r, const std::string& verb) { return "ccm " + r.noun + " " + verb; }

void PrintTable(const Resource& r, const json& items) {
  Table table{r.header, {}};
  for (const auto& item : items) table.rows.push_back(r.row(item));
  table.Print(std::cout);
}

// Prints one resource as -o says; the table has its one row.
void PrintOne(const Resource& r, const Args& a, const json& item) {
  PrintDocument(std::cout, a.client.output, item, [&] { PrintTable(r, json::array({item})); });
}

CLI::App* Verb(CLI::App& noun, const std::string& name, const std::string& description) {
  auto* verb = noun.add_subcommand(name, description);
  verb->fallthrough();  // --url, --token and -o may come after the verb
  return verb;
}

void AddId(CLI::App* verb, Args& a, const Resource& r) {
  verb->add_option("id", a.id, "The " + r.singular + "'s id")->required();
}

// ---- the verbs every noun has ------------------------------------------------------------

void AddList(CLI::App& noun, const Resource& r, const std::shared_ptr<Args>& a,
             const std::vector<std::pair<std::string, std::string>>& filters) {
  auto* list = Verb(noun, "list", "List " + r.noun + " (one page; --all for every page)");
  for (const auto& [name, help] : filters) list->add_option("--" + name, a->filter_values[name], help);
  list->add_option("--limit", a->limit, "Page size, 1 to 500 (default: the API's)")->check(CLI::Range(1, 500));
  list->add_option("--after", a->after, "Start after this `next` of a previous page");
  list->add_flag("--all", a->all, "Follow `next` to the last page");
  list->callback([r, a, filters] {
    Query query;
    for (const auto& [name, _] : filters) {
      std::string key = name;
      std::replace(key.begin(), key.end(), '-', '_');
      query.emplace_back(key, a->filter_values[name]);
    }
    if (a->include_deleted) query.emplace_back("include_deleted", "true");
    if (a->limit > 0) query.emplace_back("limit", std::to_string(a->limit));
    query.emplace_back("after", a->after);
    ApiClient client(a->client, Who(r, "list"), std::cerr);
    const ApiResult page = client.List(r.path, query, a->all);
    if (!page.ok()) Exit(page.exit_code);
    PrintDocument(std::cout, a->client.output, page.body, [&] {
      PrintTable(r, page.body["items"]);
      if (page.body["next"].is_string())
        std::cout << "# more: --after " << page.body["next"].get<std::string>() << " (or --all)\n";
    });
    Exit(kExitOk);
  });
}

void AddGet(CLI::App& noun, const Resource& r, const std::shared_ptr<Args>& a, bool with_version = false) {
  auto* get = Verb(noun, "get", "Show one " + r.singular);
  AddId(get, *a, r);
  if (with_version) get->add_option("--version", a->version, "That version (default: the latest)");
  get->callback([r, a] {
    ApiClient client(a->client, Who(r, "get"), std::cerr);
    const ApiResult got = client.Call("GET", r.path + "/" + Segment(a->id), {{"version", a->version}});
    if (!got.ok()) Exit(got.exit_code);
    PrintOne(r, *a, got.body);
    Exit(kExitOk);
  });
}

// The body of a create: the document of -f (if any), then each field given as an option
// over it. A document that cannot be read or parsed exits kExitInvalid.
json CreateBody(const Resource& r, const Args& a) {
  json body = json::object();
  if (!a.file.empty()) {
    auto loaded = LoadDocument(a.file);
    if (!loaded) {
      std::cerr << Who(r, "create") << ": -f " << loaded.error().message << "\n";
      Exit(kExitInvalid);
    }
    body = std::move(loaded.value());
  }
  for (const auto& [pointer, value] : a.strings)
    if (!value.empty()) body[json::json_pointer(pointer)] = value;
  for (const auto& [pointer, value] : a.numbers) {
    if (std::trunc(value) == value && std::fabs(value) < 1e15)
      body[json::json_pointer(pointer)] = static_cast<std::int64_t>(value);
    else
      body[json::json_pointer(pointer)] = value;
  }
  for (const auto& [pointer, values] : a.lists)
    if (!values.empty()) body[json::json_pointer(pointer)] = values;
  return body;
}

// Adds --NAME, which sets the string at `pointer` in the body.
void StringField(CLI::App* create, Args& a, const std::string& name, const std::string& pointer,
                 const std::string& help) {
  create->add_option("--" + name, a.strings[pointer], help);
}

// Adds --NAME, which sets the number at `pointer` in the body when given.
void NumberField(CLI::App* create, Args& a, const std::string& name, const std::string& pointer,
                 const std::string& help) {
  create->add_option_function<double>(
      "--" + name, [&a, pointer](double v) { a.numbers[pointer] = v; }, help);
}

CLI::App* AddCreate(CLI::App& noun, const Resource& r, const std::shared_ptr<Args>& a,
                    std::function<void(json&)> finish = {}) {
  auto* create = Verb(noun, "create",
                      std::string(r.singular == "instance" ? "Create an " : "Create a ") + r.singular + " from -f FILE (JSON or YAML, - for stdin) and the options, which "
                                                 "override the file's fields");
  create->add_option("-f,--file", a->file, "JSON or YAML document of the body; - reads stdin");
  create->callback([r, a, finish] {
    json body = CreateBody(r, *a);
    if (finish) finish(body);
    transport::Headers headers;
    if (!a->idempotency_key.empty()) headers["Idempotency-Key"] = a->idempotency_key;
    ApiClient client(a->client, Who(r, "create"), std::cerr);
    const ApiResult created = client.Call("POST", r.path, {}, body, headers);
    if (!created.ok()) Exit(created.exit_code);
    PrintOne(r, *a, created.body);
    Exit(kExitOk);
  });
  return create;
}

// ---- instances -----------------------------------------------------------------------------

Resource Instances() {
  return {"instances", "instance", "/api/v1/instances",
          {"ID", "STATE", "WORKER", "OWNER", "START", "END", "AGE"},
          [](const json& i) -> std::vector<std::string> {
            return {Cell(i.value("id", json())),          Cell(i.value("state", json())),
                    Cell(i.value("worker_id", json())),   Cell(i.value("owner_id", json())),
                    Cell(i.value("timeslot_start", json())), Cell(i.value("timeslot_end", json())),
                    Age(i.value("created_at", ""), Now())};
          }};
}

void AddInstanceCommands(CLI::App& cli) {
  const Resource r = Instances();
  auto a = std::make_shared<Args>();
  auto* noun = cli.add_subcommand("instances", "Lablet instances of a running ccm");
  noun->require_subcommand(1);
  AddClientOptions(*noun, a->client);
  AddList(*noun, r, a,
          {{"state", "Only in this state (PENDING, SCHEDULED, RUNNING, ...)"},
           {"worker-id", "Only on this worker"},
           {"owner-id", "Only of this owner"}});
  AddGet(*noun, r, a);
  auto* create = AddCreate(*noun, r, a);
  StringField(create, *a, "definition-id", "/definition_id", "The definition's id");
  StringField(create, *a, "definition-version", "/definition_version", "Its version (default: the latest)");
  StringField(create, *a, "owner-id", "/owner_id", "Whose lablet it is");
  StringField(create, *a, "reservation-id", "/reservation_id", "The reservation it serves");
  StringField(create, *a, "session-id", "/assessment/session_id", "The assessment session");
  StringField(create, *a, "part-id", "/assessment/part_id", "The assessment part");
  StringField(create, *a, "start", "/timeslot_start", "Timeslot start, RFC 3339");
  StringField(create, *a, "end", "/timeslot_end", "Timeslot end, RFC 3339");
  create->add_option("--idempotency-key", a->idempotency_key,
                     "Sent as Idempotency-Key: a retry with the same key returns the first instance");

  auto* del = Verb(*noun, "delete", "Terminate an instance by its legal path (asks nothing)");
  AddId(del, *a, r);
  del->callback([r, a] {
    ApiClient client(a->client, Who(r, "delete"), std::cerr);
    const ApiResult done = client.Call("DELETE", r.path + "/" + Segment(a->id));
    if (!done.ok()) Exit(done.exit_code);
    PrintDocument(std::cout, a->client.output, done.body, [&] {
      std::cout << "instance " << a->id << ": termination requested (state " << Cell(done.body["state"]) << ")\n";
    });
    Exit(kExitOk);
  });

  auto* collect = Verb(*noun, "collect", "Collect a RUNNING instance: COLLECTING, then asks the Assessment Platform");
  AddId(collect, *a, r);
  collect->add_option("--reason", a->reason, "manual (default), timeslot_end or assessment_request")
      ->check(CLI::IsMember({"manual", "timeslot_end", "assessment_request"}));
  collect->add_option("--triggered-by", a->triggered_by, "Who asked (default: the token's subject)");
  collect->callback([r, a] {
    json body = json::object();
    if (!a->reason.empty()) body["reason"] = a->reason;
    if (!a->triggered_by.empty()) body["triggered_by"] = a->triggered_by;
    ApiClient client(a->client, Who(r, "collect"), std::cerr);
    const ApiResult done = client.Call("POST", r.path + "/" + Segment(a->id) + "/collect", {}, body);
    if (!done.ok()) Exit(done.exit_code);
    PrintOne(r, *a, done.body);
    Exit(kExitOk);
  });

  auto* assign = Verb(*noun, "assign-pod", "Send a RUNNING instance's pod to the Grading Engine (again)");
  AddId(assign, *a, r);
  assign->callback([r, a] {
    ApiClient client(a->client, Who(r, "assign-pod"), std::cerr);
    const ApiResult done = client.Call("POST", r.path + "/" + Segment(a->id) + "/pod/assign", {}, json::object());
    if (!done.ok()) Exit(done.exit_code);
    PrintOne(r, *a, done.body);
    Exit(kExitOk);
  });
}

// ---- workers -------------------------------------------------------------------------------

// "used/capacity" of one resource of a worker.
std::string Used(const json& w, const char* used_key, const char* capacity_key) {
  const json used = w.value("allocated", json::object()).value(used_key, json());
  const json capacity = w.value("capacity", json::object()).value(capacity_key, json());
  return Cell(used) + "/" + Cell(capacity);
}

std::string Ports(const json& w) {
  const json range = w.value("port_range", json::object());
  std::size_t taken = 0;
  const json allocations = w.value("port_allocations", json::object());
  for (const auto& [_, ports] : allocations.items()) taken += ports.is_structured() ? ports.size() : 1;
  return Cell(range.value("start", json())) + "-" + Cell(range.value("end", json())) + " (" + std::to_string(taken) +
         " used)";
}

Resource Workers() {
  return {"workers", "worker", "/api/v1/workers",
          {"ID", "NAME", "STATE", "LICENSE", "CPU", "MEMORY_GB", "NODES", "PORTS"},
          [](const json& w) -> std::vector<std::string> {
            return {Cell(w.value("id", json())),           Cell(w.value("name", json())),
                    Cell(w.value("state", json())),        Cell(w.value("license_type", json())),
                    Used(w, "cpu_cores", "cpu_cores"),     Used(w, "memory_gb", "memory_gb"),
                    Used(w, "nodes", "max_nodes"),         Ports(w)};
          }};
}

// Moves worker `a.id` to `to` through the internal transition route, with the version just
// read (a change in between is a conflict, exit 4, not a blind write).
ApiResult MoveWorker(ApiClient& client, const Args& a, const json& worker, const std::string& to) {
  json body = {{"to", to}, {"expected_version", worker.value("version", 1)}};
  if (!a.reason.empty()) body["reason"] = a.reason;
  return client.Call("POST", "/api/internal/workers/" + Segment(a.id) + "/transition", {}, body);
}

void AddWorkerCommands(CLI::App& cli) {
  const Resource r = Workers();
  auto a = std::make_shared<Args>();
  auto* noun = cli.add_subcommand("workers", "CML workers of a running ccm");
  noun->require_subcommand(1);
  AddClientOptions(*noun, a->client);
  AddList(*noun, r, a, {});
  AddGet(*noun, r, a);
  auto* create = AddCreate(*noun, r, a);
  StringField(create, *a, "name", "/name", "Its name");
  StringField(create, *a, "hostname", "/hostname", "Its host name");
  StringField(create, *a, "cml-url", "/cml_url", "Base URL of its CML");
  StringField(create, *a, "license-type", "/license_type", "PERSONAL, ENTERPRISE or EVALUATION");
  StringField(create, *a, "public-ip", "/public_ip", "Its public address");
  StringField(create, *a, "private-ip", "/private_ip", "Its private address");
  StringField(create, *a, "template-name", "/template_name", "The template it was launched from");
  StringField(create, *a, "state", "/state", "PENDING or RUNNING (default: the API's)");
  NumberField(create, *a, "cpu-cores", "/capacity/cpu_cores", "Capacity: cores");
  NumberField(create, *a, "memory-gb", "/capacity/memory_gb", "Capacity: memory in GB");
  NumberField(create, *a, "storage-gb", "/capacity/storage_gb", "Capacity: storage in GB");
  NumberField(create, *a, "max-nodes", "/capacity/max_nodes", "Capacity: nodes");
  NumberField(create, *a, "port-start", "/port_range/start", "First port for lablets");
  NumberField(create, *a, "port-end", "/port_range/end", "Last port for lablets");

  auto* drain = Verb(*noun, "drain",
                     "Move a RUNNING worker to DRAINING: nothing new is scheduled on it; it stops once empty");
  AddId(drain, *a, r);
  drain->add_option("--reason", a->reason, "Recorded in its state history");
  drain->callback([r, a] {
    ApiClient client(a->client, Who(r, "drain"), std::cerr);
    const ApiResult got = client.Call("GET", r.path + "/" + Segment(a->id));
    if (!got.ok()) Exit(got.exit_code);
    const ApiResult moved = MoveWorker(client, *a, got.body, "DRAINING");
    if (!moved.ok()) Exit(moved.exit_code);
    PrintDocument(std::cout, a->client.output, moved.body,
                  [&] { std::cout << "worker " << a->id << ": " << Cell(got.body["state"]) << " -> DRAINING\n"; });
    Exit(kExitOk);
  });

  auto* del = Verb(*noun, "delete",
                   "Take a worker out of service (asks nothing): RUNNING or DRAINING -> STOPPING (refused, exit 4, "
                   "while it holds instances: drain it first), STOPPED -> TERMINATED");
  AddId(del, *a, r);
  del->add_option("--reason", a->reason, "Recorded in its state history");
  del->callback([r, a] {
    ApiClient client(a->client, Who(r, "delete"), std::cerr);
    const ApiResult got = client.Call("GET", r.path + "/" + Segment(a->id));
    if (!got.ok()) Exit(got.exit_code);
    const std::string state = got.body.value("state", "");
    if (state == "STOPPING" || state == "TERMINATED") {
      PrintDocument(std::cout, a->client.output, got.body,
                    [&] { std::cout << "worker " << a->id << ": already " << state << "\n"; });
      Exit(kExitOk);
    }
    const std::string to = state == "STOPPED" ? "TERMINATED" : "STOPPING";
    const ApiResult moved = MoveWorker(client, *a, got.body, to);
    if (!moved.ok()) Exit(moved.exit_code);
    PrintDocument(std::cout, a->client.output, moved.body,
                  [&] { std::cout << "worker " << a->id << ": " << state << " -> " << to << "\n"; });
    Exit(kExitOk);
  });
}

// ---- definitions ---------------------------------------------------------------------------

Resource Definitions() {
  return {"definitions", "definition", "/api/v1/definitions",
          {"ID", "VERSION", "NAME", "NODES", "AGE"},
          [](const json& d) -> std::vector<std::string> {
            std::string name = Cell(d.value("name", json()));
            if (d.value("deleted", false)) name += " (deleted)";
            return {Cell(d.value("id", json())), Cell(d.value("version", json())), name,
                    Cell(d.value("node_count", json())), Age(d.value("created_at", ""), Now())};
          }};
}

void AddDefinitionCommands(CLI::App& cli) {
  const Resource r = Definitions();
  auto a = std::make_shared<Args>();
  auto* noun = cli.add_subcommand("definitions", "Lab definitions of a running ccm");
  noun->require_subcommand(1);
  AddClientOptions(*noun, a->client);
  AddList(*noun, r, a, {{"name", "Only of this name"}});
  noun->get_subcommand("list")->add_flag("--include-deleted", a->include_deleted, "Deleted ones too");
  AddGet(*noun, r, a, true);
  auto* create = AddCreate(*noun, r, a, [a](json& body) {
    if (a->lab_yaml_file.empty()) return;
    std::ifstream in(a->lab_yaml_file, std::ios::binary);
    if (!in) {
      std::cerr << "ccm definitions create: --lab-yaml " << a->lab_yaml_file << ": cannot be read\n";
      Exit(kExitInvalid);
    }
    body["lab_yaml"] = std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  });
  StringField(create, *a, "name", "/name", "Its name");
  StringField(create, *a, "version", "/version", "Its version (each version is immutable)");
  StringField(create, *a, "created-by", "/created_by", "Who made it");
  StringField(create, *a, "grading-rules-uri", "/grading_rules_uri", "Where its grading rules are");
  create->add_option("--lab-yaml", a->lab_yaml_file, "File of the CML lab topology (sent as lab_yaml)");
  create->add_option("--license", a->lists["/license_affinity"], "A licence it may run on (repeat for several)");
  NumberField(create, *a, "cpu-cores", "/resource_requirements/cpu_cores", "Requirement: cores");
  NumberField(create, *a, "memory-gb", "/resource_requirements/memory_gb", "Requirement: memory in GB");
  NumberField(create, *a, "storage-gb", "/resource_requirements/storage_gb", "Requirement: storage in GB");
  NumberField(create, *a, "max-duration-minutes", "/max_duration_minutes", "Longest timeslot");

  auto* del = Verb(*noun, "delete", "Delete a definition (soft: instances keep theirs; asks nothing)");
  AddId(del, *a, r);
  del->callback([r, a] {
    ApiClient client(a->client, Who(r, "delete"), std::cerr);
    const ApiResult done = client.Call("DELETE", r.path + "/" + Segment(a->id));
    if (!done.ok()) Exit(done.exit_code);
    PrintDocument(std::cout, a->client.output, done.body, [&] {
      std::cout << "definition " << a->id << " deleted (" << Cell(done.body["name"]) << " "
                << Cell(done.body["version"]) << ")\n";
    });
    Exit(kExitOk);
  });
}

}  // namespace

void AddResourceCommands(CLI::App& cli) {
  AddInstanceCommands(cli);
  AddWorkerCommands(cli);
  AddDefinitionCommands(cli);
}

}  // namespace ccm::main
