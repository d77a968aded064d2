// cml-sim: a CML 2.9 controller, as ccm uses it, and a cloud provider that launches CML
// workers, for tests and the demo. Real HTTP, the real paths and bodies of
// cml-2.9.openapi.json (base path /api/v0):
//   POST   /api/v0/authenticate {username, password}  -> a JWT-shaped token (403 on bad ones)
//   POST   /api/v0/import?title=  topology JSON        -> {id, warnings}; the topology must
//          validate against CML's Topology schema (400 with the first violation otherwise)
//   PUT    /api/v0/labs/{id}/start | stop | wipe       -> 204 (wipe: 400 unless stopped)
//   GET    /api/v0/labs/{id}/state                     -> "DEFINED_ON_CORE" | "STOPPED" | "STARTED"
//   GET    /api/v0/labs?show_all=                      -> the ids of every lab not deleted
//   GET    /api/v0/labs/{id}                           -> the lab (LabResponse: lab_title,
//          lab_description, created, ...); the description is the topology's lab.description
//   DELETE /api/v0/labs/{id}                           -> 204 (400 while started)
// A cml_url with a path is answered too (/w7/api/v0/... is /api/v0/...): one sim, many workers.
// Every /api/v0 call but authenticate needs a valid bearer token (401 otherwise); tokens
// expire after --token-ttl-ms. A started lab reports STARTED after --start-delay-ms.
// Failures can be injected: the first --fail-imports imports, --fail-starts starts and
// --fail-stops stops answer 500; --import-delay-ms answers every import late.
// The cloud provider (see clients/cloud_provider_client.h):
//   POST /v1/workers {template, client_token}, GET /v1/workers/{id}, DELETE /v1/workers/{id};
//   a launched worker is running after --provision-delay-ms, and its cml_url is this sim.
// For tests: GET /sim/labs (every lab ever imported, deleted ones too), GET /sim/workers;
// POST /sim/labs {title, description, created} creates a lab out of band (as another user, or
// an import whose answer was lost, would), with no nodes -> 201 {id}; `created` (RFC 3339)
// defaults to now, and null makes a lab whose details give no creation time.
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "domain/time.h"
#include "http/server.h"
#include "support/json_schema.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string RandomHex(int n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(kHex[rng() % 16]);
  return out;
}

// `t` as CML writes times: "2021-02-28T07:33:47+00:00".
std::string CmlTime(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::string rfc = ccm::FormatRfc3339(ccm::FromUnixMillis(ms));  // "...:47.123Z"
  return rfc.substr(0, rfc.find('.')) + "+00:00";
}

// A UUID v4, as CML's lab ids are.
std::string NewLabId() {
  std::string h = RandomHex(32);
  h[12] = '4';
  h[16] = "89ab"[std::stoi(h.substr(16, 1), nullptr, 16) % 4];
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

struct Lab {
  std::string id;
  std::string title;
  std::string description;
  std::optional<std::string> created;  // absent: the details give no creation time
  json topology;
  std::string state = "DEFINED_ON_CORE";
  std::optional<Clock::time_point> started_at;  // STARTED from then on
  bool deleted = false;
  int starts = 0, stops = 0, wipes = 0;

  std::string State() {
    if (started_at && Clock::now() >= *started_at) state = "STARTED";
    return state;
  }
  json ToJson() {
    return {{"id", id},         {"title", title},   {"description", description}, {"state", State()},
            {"deleted", deleted}, {"starts", starts}, {"stops", stops},             {"wipes", wipes},
            {"topology", topology}};
  }
  // GET /labs/{id}: CML's LabResponse.
  json Details(const std::string& owner_username) {
    json out = {{"id", id},
                {"lab_title", title},
                {"lab_description", description},
                {"lab_notes", ""},
                {"owner", "00000000-0000-4000-8000-000000000000"},
                {"owner_username", owner_username},
                {"owner_fullname", owner_username},
                {"state", State()},
                {"node_count", topology.value("nodes", json::array()).size()},
                {"link_count", topology.value("links", json::array()).size()},
                {"effective_permissions", json::array({"lab_admin", "lab_edit", "lab_exec", "lab_view"})}};
    if (created) {
      out["created"] = *created;
      out["modified"] = *created;
    }
    return out;
  }
};

struct CloudWorker {
  std::string id;
  std::string template_name;
  Clock::time_point ready_at;
  bool released = false;
  int n = 0;
};

struct Sim {
  std::string username = "admin";
  std::string password = "cml-secret";
  int start_delay_ms = 300;
  int token_ttl_ms = 3'600'000;
  int provision_delay_ms = 500;
  int import_delay_ms = 0;
  std::atomic<int> fail_imports{0}, fail_starts{0}, fail_stops{0};
  json cml_spec;
  std::string self_url;

  std::mutex mu;
  std::map<std::string, Clock::time_point> tokens;  // token -> expiry
  std::map<std::string, Lab> labs;
  std::vector<std::string> lab_order;
  std::map<std::string, CloudWorker> workers;  // by id
  std::map<std::string, std::string> by_token;  // client token -> worker id
  int authentications = 0;
  // Each CML API request's method, path and W3C trace headers, in arrival order, the first
  // 10,000 (GET /sim/requests): what a test checks the caller's trace context by.
  std::vector<json> requests;
};

ccm::http::Response Answer(int status, json body = nullptr) {
  ccm::http::Response r;
  r.status = status;
  if (!body.is_null()) r.body = body.dump();
  return r;
}

ccm::http::Response CmlError(int status, const std::string& description) {
  return Answer(status, {{"code", status}, {"description", description}});
}

json WorkerJson(Sim& s, const CloudWorker& w) {
  const bool ready = Clock::now() >= w.ready_at;
  return {{"id", w.id},
          {"template", w.template_name},
          {"state", w.released ? "released" : ready ? "running" : "provisioning"},
          {"hostname", "cloud-worker-" + std::to_string(w.n) + ".sim"},
          {"public_ip", "198.51.100." + std::to_string(10 + w.n)},
          {"private_ip", "10.0.0." + std::to_string(10 + w.n)},
          {"cml_url", s.self_url},
          {"license_type", "ENTERPRISE"},
          {"capacity", {{"cpu_cores", 32}, {"memory_gb", 128}, {"storage_gb", 500}}},
          {"max_nodes", 40}};
}

// The cloud provider's paths, and the sim's own.
std::optional<ccm::http::Response> Cloud(Sim& s, ccm::http::Request& r) {
  std::lock_guard lock(s.mu);
  if (r.method == "GET" && r.path == "/sim/labs") {
    json out = json::array();
    for (const auto& id : s.lab_order) out.push_back(s.labs[id].ToJson());
    return Answer(200, out);
  }
  if (r.method == "POST" && r.path == "/sim/labs") {
    const json body = json::parse(r.body, nullptr, false);
    if (!body.is_object()) return Answer(400, {{"error", "a JSON object is required"}});
    Lab lab;
    lab.id = NewLabId();
    lab.title = body.value("title", "");
    lab.description = body.value("description", "");
    if (!body.contains("created")) lab.created = CmlTime(std::chrono::system_clock::now());
    else if (body["created"].is_string()) lab.created = body["created"].get<std::string>();
    lab.topology = {{"lab", {{"version", "0.2.2"}, {"title", lab.title}, {"description", lab.description}}},
                    {"nodes", json::array()},
                    {"links", json::array()}};
    s.lab_order.push_back(lab.id);
    s.labs[lab.id] = lab;
    return Answer(201, {{"id", lab.id}});
  }
  if (r.method == "GET" && r.path == "/sim/requests") return Answer(200, s.requests);
  if (r.method == "GET" && r.path == "/sim/workers") {
    json out = json::array();
    for (auto& [_, w] : s.workers) out.push_back(WorkerJson(s, w));
    return Answer(200, {{"workers", out}, {"authentications", s.authentications}});
  }
  if (r.method == "POST" && r.path == "/v1/workers") {
    const json body = json::parse(r.body, nullptr, false);
    if (!body.is_object() || !body.contains("template") || !body["template"].is_string())
      return Answer(400, {{"error", "template is required"}});
    if (body["template"] != "cml-enterprise") return Answer(400, {{"error", "unknown template"}});
    const std::string token = body.value("client_token", "");
    if (!token.empty() && s.by_token.count(token)) return Answer(201, WorkerJson(s, s.workers[s.by_token[token]]));
    CloudWorker w{"i-" + RandomHex(12), body["template"], Clock::now() + std::chrono::milliseconds(s.provision_delay_ms),
                  false, static_cast<int>(s.workers.size()) + 1};
    if (!token.empty()) s.by_token[token] = w.id;
    s.workers[w.id] = w;
    return Answer(201, WorkerJson(s, w));
  }
  if (r.path.rfind("/v1/workers/", 0) == 0) {
    auto it = s.workers.find(r.path.substr(12));
    if (it == s.workers.end()) return Answer(404, {{"error", "no such worker"}});
    if (r.method == "GET") return Answer(200, WorkerJson(s, it->second));
    if (r.method == "DELETE") {
      it->second.released = true;
      return Answer(204);
    }
  }
  return std::nullopt;
}

ccm::http::Response Cml(Sim& s, ccm::http::Request& r) {
  const std::string path = r.path.substr(7);  // after /api/v0
  if (r.method == "POST" && path == "/authenticate") {
    const json body = json::parse(r.body, nullptr, false);
    if (!body.is_object() || body.value("username", "") != s.username || body.value("password", "") != s.password)
      return CmlError(403, "Authentication failed!");
    const std::string token = "eyJ" + RandomHex(16) + ".eyJ" + RandomHex(24) + "." + RandomHex(32);
    std::lock_guard lock(s.mu);
    ++s.authentications;
    s.tokens[token] = Clock::now() + std::chrono::milliseconds(s.token_ttl_ms);
    return Answer(200, token);
  }
  const std::string auth(r.Header("authorization"));
  // A slow import answers late (outside the lock, so that nothing else waits for it).
  if (r.method == "POST" && path == "/import" && s.import_delay_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(s.import_delay_ms));
  // An import's topology is checked outside the lock too (the spec is never written): the
  // check is the dearest part of an import, and a wave of imports would queue behind it.
  std::vector<std::string> import_errors;
  json topology;
  if (r.method == "POST" && path == "/import") {
    topology = json::parse(r.body, nullptr, false);
    const json& spec = s.cml_spec;
    import_errors = ccm::testing::ValidateSchema(spec, spec["components"]["schemas"]["Topology"],
                                                 topology.is_discarded() ? json("") : topology);
  }
  std::lock_guard lock(s.mu);
  auto token = auth.rfind("Bearer ", 0) == 0 ? s.tokens.find(auth.substr(7)) : s.tokens.end();
  if (token == s.tokens.end() || token->second < Clock::now())
    return CmlError(401, "No valid bearer token");
  if (r.method == "POST" && path == "/import") {
    if (!import_errors.empty()) return CmlError(400, "Import failed: " + import_errors.front());
    if (s.fail_imports.fetch_sub(1) > 0) return CmlError(500, "injected import failure");
    Lab lab;
    lab.id = NewLabId();
    lab.title = r.query.count("title") ? r.query["title"] : topology["lab"].value("title", "");
    lab.description = topology["lab"].value("description", "");
    lab.created = CmlTime(std::chrono::system_clock::now());
    lab.topology = topology;
    s.lab_order.push_back(lab.id);
    s.labs[lab.id] = lab;
    return Answer(200, {{"id", lab.id}, {"warnings", json::array()}});
  }
  if (r.method == "GET" && path == "/labs") {
    // As the admin account sees them, whatever show_all says: every user's labs.
    json ids = json::array();
    for (const auto& id : s.lab_order)
      if (!s.labs[id].deleted) ids.push_back(id);
    return Answer(200, ids);
  }
  if (path.rfind("/labs/", 0) != 0) return CmlError(404, "Not found");
  const std::string rest = path.substr(6);
  const std::string id = rest.substr(0, rest.find('/'));
  const std::string action = rest.size() > id.size() ? rest.substr(id.size() + 1) : "";
  auto it = s.labs.find(id);
  if (it == s.labs.end() || it->second.deleted) return CmlError(404, "Lab not found: " + id);
  Lab& lab = it->second;
  if (r.method == "GET" && action == "state") return Answer(200, lab.State());
  if (r.method == "GET" && action.empty()) return Answer(200, lab.Details(s.username));
  if (r.method == "PUT" && action == "start") {
    if (s.fail_starts.fetch_sub(1) > 0) return CmlError(500, "injected start failure");
    ++lab.starts;
    if (!lab.started_at) lab.started_at = Clock::now() + std::chrono::milliseconds(s.start_delay_ms);
    return Answer(204);
  }
  if (r.method == "PUT" && action == "stop") {
    if (s.fail_stops.fetch_sub(1) > 0) return CmlError(500, "injected stop failure");
    ++lab.stops;
    lab.started_at.reset();
    if (lab.state == "STARTED") lab.state = "STOPPED";
    return Answer(204);
  }
  if (r.method == "PUT" && action == "wipe") {
    if (lab.State() == "STARTED" || lab.started_at) return CmlError(400, "Lab must be stopped before it is wiped");
    ++lab.wipes;
    lab.state = "DEFINED_ON_CORE";
    return Answer(204);
  }
  if (r.method == "DELETE" && action.empty()) {
    if (lab.State() == "STARTED" || lab.started_at) return CmlError(400, "Lab must be stopped before it is removed");
    lab.deleted = true;
    return Answer(204);
  }
  return CmlError(405, "Method not allowed");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"cml-sim: a CML 2.9 controller and a cloud provider of CML workers"};
  Sim s;
  std::string ready_file, spec_file;
  int fail_imports = 0, fail_starts = 0, fail_stops = 0;
  int handler_threads = 4;
  cli.add_option("--ready-file", ready_file, "Write host:port here once listening")->required();
  std::uint16_t listen_port = 0;
  cli.add_option("--port", listen_port, "Listen on this loopback port (default: any free one)");
  cli.add_option("--cml-schema", spec_file, "CML's OpenAPI document (cml-2.9.openapi.json)")->required();
  cli.add_option("--username", s.username)->capture_default_str();
  cli.add_option("--password", s.password, "The CML password (default cml-secret)");
  cli.add_option("--start-delay-ms", s.start_delay_ms, "Time from start to STARTED")->capture_default_str();
  cli.add_option("--token-ttl-ms", s.token_ttl_ms, "Lifetime of a token")->capture_default_str();
  cli.add_option("--provision-delay-ms", s.provision_delay_ms, "Time for a launched worker to run")->capture_default_str();
  cli.add_option("--fail-imports", fail_imports, "Answer 500 to this many imports");
  cli.add_option("--import-delay-ms", s.import_delay_ms, "Answer each import this late");
  cli.add_option("--fail-starts", fail_starts, "Answer 500 to this many starts");
  cli.add_option("--fail-stops", fail_stops, "Answer 500 to this many stops");
  cli.add_option("--threads", handler_threads, "Requests handled at once")->capture_default_str()->check(CLI::Range(1, 256));
  CLI11_PARSE(cli, argc, argv);
  s.fail_imports = fail_imports;
  s.fail_starts = fail_starts;
  s.fail_stops = fail_stops;

  std::ifstream in(spec_file);
  std::stringstream text;
  text << in.rdbuf();
  s.cml_spec = json::parse(text.str(), nullptr, false);
  if (s.cml_spec.is_discarded() || !s.cml_spec.contains("components")) {
    std::cerr << "cml-sim: cannot read " << spec_file << "\n";
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  ccm::http::ServerOptions options;
  options.port = listen_port;
  options.handler_threads = handler_threads;
  ccm::http::Server server(options, [&s](ccm::http::Request& r) {
    // A worker's cml_url may end in a path (http://127.0.0.1:port/w7): the CML API under it is
    // this one's, so that one sim stands for many workers, each with a URL of its own.
    if (const auto at = r.path.find("/api/v0/"); at != std::string::npos && at > 0 && r.path[0] == '/')
      r.path.erase(0, at);
    if (r.path.rfind("/api/v0/", 0) == 0) {
      json seen = {{"method", r.method}, {"path", r.path}};
      for (const char* name : {"traceparent", "tracestate"})
        if (auto it = r.headers.find(name); it != r.headers.end()) seen[name] = it->second;
      {
        std::lock_guard lock(s.mu);
        if (s.requests.size() < 10'000) s.requests.push_back(std::move(seen));  // the first ones: a test's
      }
      return Cml(s, r);
    }
    if (auto answer = Cloud(s, r)) return *answer;
    return Answer(404, {{"error", "not found"}});
  });
  if (auto st = server.Start(); !st) {
    std::cerr << "cml-sim: " << st.error().message << "\n";
    return 1;
  }
  s.self_url = "http://127.0.0.1:" + std::to_string(server.port());
  std::ofstream(ready_file) << "127.0.0.1:" << server.port() << "\n";
  int sig = 0;
  sigwait(&stop, &sig);
  server.Stop();
  return 0;
}
