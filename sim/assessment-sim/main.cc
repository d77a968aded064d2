// assessment-sim: the Assessment Platform and the Grading Engine, as ccm sees them.
//   POST /api/v1/collections                       accepts a collection, then sends
//        assessment.collection.completed and assessment.grading.completed to ccm's
//        /api/v1/events as real CloudEvents after --delay-ms each
//   POST /api/v1/sessions/{s}/parts/{p}/pod        accepts a pod that validates against the
//        Grading Engine's Pod schema; 400 with the first violation otherwise
//   GET  /sim/state                                what it received, for tests
// Failures can be injected: 503 for the first --fail-collections requests, slow answers, a
// collection.failed instead of the results, every event sent twice, a bearer token required,
// collections accepted and never answered (--silent) or answered without a grade
// (--no-grading) or refused for good (--refuse-collections), pods refused for good
// (--refuse-pods) or 503 for the first --fail-pods requests. With --chaos-seed, each instance
// draws its own collection and pod behaviour from the seed and its id (GET /sim/state says
// which), so that a test of many lablets meets every fault at once and can replay the draw.
// With --token-url, events go to ccm with a client-credentials bearer token (renewed on a 401).
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <mutex>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "http/server.h"
#include "support/json_schema.h"
#include "transport/http_connection.h"

namespace {

using nlohmann::json;

// What the platform does with one instance's collection, and the engine with its pod.
enum class Collection { kNormal, kSilent, kNoGrading, kRefused, kFails, kGradingFails, kUnavailableThenOk, kSlow };
enum class Pod { kNormal, kRefused, kUnavailableThenOk };

const char* Name(Collection c) {
  switch (c) {
    case Collection::kNormal: return "normal";
    case Collection::kSilent: return "silent";
    case Collection::kNoGrading: return "no_grading";
    case Collection::kRefused: return "refused";
    case Collection::kFails: return "collection_failed";
    case Collection::kGradingFails: return "grading_failed";
    case Collection::kUnavailableThenOk: return "unavailable_then_ok";
    case Collection::kSlow: return "slow";
  }
  return "normal";
}
const char* Name(Pod p) {
  switch (p) {
    case Pod::kNormal: return "normal";
    case Pod::kRefused: return "refused";
    case Pod::kUnavailableThenOk: return "unavailable_then_ok";
  }
  return "normal";
}

struct Behaviour {
  Collection collection = Collection::kNormal;
  Pod pod = Pod::kNormal;
  bool send_twice = false;
  int collection_503s_left = 0;  // 503s still to answer to its collection requests
  int pod_503s_left = 0;         // and to its pod assignments
};

struct Settings {
  std::string events_url;
  int delay_ms = 200;
  int fail_collections = 0;
  bool collection_fails = false;
  bool silent = false;
  bool no_grading = false;
  bool refuse_collections = false;
  bool refuse_pods = false;
  int fail_pods = 0;
  std::optional<std::uint64_t> chaos_seed;
  bool send_twice = false;
  bool require_bearer = false;
  int slow_ms = 0;
  double score_total = 8, score_max = 10;
  std::string token_url, client_id, client_secret;
};

// A POST; the status (0 when nothing answered) and the body.
std::pair<long, std::string> Post(const std::string& url, const std::string& body, const std::string& content_type,
                                  const std::string& bearer) {
  ccm::transport::Headers headers = {{"Content-Type", content_type}};
  if (!bearer.empty()) headers["Authorization"] = "Bearer " + bearer;
  ccm::transport::Request request;
  request.headers = &headers;
  request.body = body;
  request.total_timeout = std::chrono::seconds(10);
  ccm::transport::Connection connection;
  ccm::transport::Response answer = connection.Send(url, request);
  return {answer.status, std::move(answer.body)};
}

// The platform's own token for ccm, by client credentials; cached until refused.
class Tokens {
 public:
  explicit Tokens(const Settings& s) : s_(s) {}
  std::string Get(bool renew) {
    if (s_.token_url.empty()) return "";
    std::lock_guard lock(mu_);
    if (token_.empty() || renew) {
      auto [status, body] = Post(s_.token_url,
                                 "grant_type=client_credentials&client_id=" + s_.client_id +
                                     "&client_secret=" + s_.client_secret,
                                 "application/x-www-form-urlencoded", "");
      const json answer = json::parse(body, nullptr, false);
      token_ = status == 200 && answer.is_object() ? answer.value("access_token", "") : "";
    }
    return token_;
  }

 private:
  const Settings& s_;
  std::mutex mu_;
  std::string token_;
};

void Send(const std::string& url, const json& event, Tokens& tokens) {
  const std::string body = event.dump();
  auto [status, _] = Post(url, body, "application/cloudevents+json", tokens.Get(false));
  if (status == 401) Post(url, body, "application/cloudevents+json", tokens.Get(true));
}

// The behaviour drawn for `instance` from the seed: the same seed and id, the same draw.
Behaviour Draw(std::uint64_t seed, const std::string& instance) {
  std::uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL;
  for (unsigned char c : instance) h = (h ^ c) * 0x100000001b3ULL;
  std::mt19937_64 rng(h);
  Behaviour b;
  b.collection = static_cast<Collection>(std::uniform_int_distribution<int>(0, 7)(rng));
  b.pod = static_cast<Pod>(std::uniform_int_distribution<int>(0, 2)(rng));
  b.send_twice = std::uniform_int_distribution<int>(0, 3)(rng) == 0;
  b.collection_503s_left = std::uniform_int_distribution<int>(1, 6)(rng);
  b.pod_503s_left = std::uniform_int_distribution<int>(1, 6)(rng);
  return b;
}

json Event(const std::string& id, const std::string& type, json data) {
  return {{"specversion", "1.0"}, {"id", id}, {"source", "/assessment-sim"}, {"type", type},
          {"datacontenttype", "application/json"}, {"data", std::move(data)}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"assessment-sim: Assessment Platform and Grading Engine"};
  Settings s;
  std::string ready_file, schema_file;
  cli.add_option("--ready-file", ready_file, "Write host:port here once listening")->required();
  std::uint16_t listen_port = 0;
  cli.add_option("--port", listen_port, "Listen on this loopback port (default: any free one)");
  cli.add_option("--events-url", s.events_url, "ccm's POST /api/v1/events URL")->required();
  cli.add_option("--grading-schema", schema_file, "The Grading Engine OpenAPI document")->required();
  cli.add_option("--delay-ms", s.delay_ms, "Wait before each result event")->capture_default_str();
  cli.add_option("--fail-collections", s.fail_collections, "Answer 503 to this many collection requests");
  cli.add_flag("--collection-fails", s.collection_fails, "Send assessment.collection.failed instead of results");
  cli.add_flag("--send-twice", s.send_twice, "Send every event twice (same id)");
  cli.add_flag("--silent", s.silent, "Accept collections and never send a result");
  cli.add_flag("--no-grading", s.no_grading, "Send collection.completed and never a grade");
  cli.add_flag("--refuse-collections", s.refuse_collections, "Refuse every collection for good (422)");
  cli.add_flag("--refuse-pods", s.refuse_pods, "Refuse every pod for good (400)");
  cli.add_option("--fail-pods", s.fail_pods, "Answer 503 to this many pod assignments");
  cli.add_option("--chaos-seed", s.chaos_seed, "Draw a behaviour per instance from this seed");
  cli.add_flag("--require-bearer", s.require_bearer, "Refuse requests without a bearer token (401)");
  cli.add_option("--slow-ms", s.slow_ms, "Wait this long before every answer");
  cli.add_option("--score", s.score_total, "Total points awarded (of 10)");
  cli.add_option("--token-url", s.token_url, "Token endpoint for a bearer token to ccm (client credentials)");
  cli.add_option("--client-id", s.client_id, "Client id at --token-url");
  cli.add_option("--client-secret", s.client_secret, "Client secret at --token-url");
  CLI11_PARSE(cli, argc, argv);

  std::ifstream in(schema_file);
  std::stringstream text;
  text << in.rdbuf();
  const json spec = json::parse(text.str(), nullptr, false);
  if (spec.is_discarded()) {
    std::cerr << "assessment-sim: cannot read " << schema_file << "\n";
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::mutex mu;
  json state = {{"collections", json::array()}, {"pods", json::array()}, {"refused", 0}, {"faults", json::object()}};
  std::atomic<int> failures_left{s.fail_collections};
  std::atomic<int> pod_failures_left{s.fail_pods};
  std::atomic<int> sequence{0};
  // With a chaos seed, each instance's behaviour, drawn on first sight (under `mu`).
  std::map<std::string, Behaviour> drawn;
  auto behaviour_of = [&](const std::string& instance) -> Behaviour& {
    auto [it, fresh] = drawn.try_emplace(instance);
    if (fresh) {
      it->second = Draw(*s.chaos_seed, instance);
      state["faults"][instance] = {{"collection", Name(it->second.collection)}, {"pod", Name(it->second.pod)},
                                   {"send_twice", it->second.send_twice}};
    }
    return it->second;
  };

  Tokens tokens(s);
  auto results = [&s, &sequence, &tokens](json request, std::string collection_id, Collection what, bool twice) {
    auto send = [&](const json& e) {
      Send(s.events_url, e, tokens);
      if (twice) Send(s.events_url, e, tokens);
    };
    const std::string instance = request["instance_id"];
    const int n = ++sequence;
    if (what == Collection::kSilent) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(s.delay_ms));
    if (what == Collection::kFails) {
      send(Event("failed-" + std::to_string(n), "assessment.collection.failed",
                 {{"instance_id", instance}, {"error_code", "DEVICE_UNREACHABLE"}, {"error_message", "no console"},
                  {"retry_possible", false}}));
      return;
    }
    send(Event("collected-" + std::to_string(n), "assessment.collection.completed",
               {{"instance_id", instance}, {"collection_id", collection_id},
                {"artifacts_uri", "s3://assessment-sim/" + collection_id}}));
    if (what == Collection::kNoGrading) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(s.delay_ms));
    if (what == Collection::kGradingFails) {
      send(Event("grading-failed-" + std::to_string(n), "assessment.grading.failed",
                 {{"instance_id", instance}, {"error_code", "RUBRIC_ERROR"}, {"error_message", "no rubric"}}));
      return;
    }
    send(Event("graded-" + std::to_string(n), "assessment.grading.completed",
               {{"instance_id", instance},
                {"score", {{"total", s.score_total}, {"max", s.score_max},
                           {"breakdown", {{{"criterion", "lab tasks"}, {"points", s.score_total}, {"max", s.score_max}}}}}},
                {"passed", s.score_total >= s.score_max * 0.7}}));
  };

  ccm::http::ServerOptions options;
  options.port = listen_port;
  options.handler_threads = 4;
  ccm::http::Server server(options, [&](ccm::http::Request& r) {
    ccm::http::Response resp;
    if (s.slow_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(s.slow_ms));
    if (r.method == "GET" && r.path == "/sim/state") {
      std::lock_guard lock(mu);
      resp.body = state.dump();
      return resp;
    }
    if (s.require_bearer && std::string(r.Header("authorization")).rfind("Bearer ", 0) != 0) {
      resp.status = 401;
      return resp;
    }
    const json body = json::parse(r.body, nullptr, false);
    if (r.method == "POST" && r.path == "/api/v1/collections") {
      if (failures_left.fetch_sub(1) > 0) {
        resp.status = 503;
        return resp;
      }
      if (!body.is_object() || !body.contains("instance_id") || !body["instance_id"].is_string()) {
        resp.status = 400;
        return resp;
      }
      Collection what = s.silent               ? Collection::kSilent
                        : s.no_grading         ? Collection::kNoGrading
                        : s.refuse_collections ? Collection::kRefused
                        : s.collection_fails   ? Collection::kFails
                                               : Collection::kNormal;
      bool twice = s.send_twice;
      if (s.chaos_seed) {
        std::lock_guard lock(mu);
        Behaviour& b = behaviour_of(body["instance_id"]);
        what = b.collection;
        twice = b.send_twice;
        if (what == Collection::kUnavailableThenOk && b.collection_503s_left > 0) {
          --b.collection_503s_left;
          resp.status = 503;
          return resp;
        }
      }
      if (what == Collection::kRefused) {
        resp.status = 422;
        resp.body = json{{"detail", "the candidate's session is closed"}}.dump();
        return resp;
      }
      if (what == Collection::kSlow) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      const std::string collection_id = "col-" + std::to_string(sequence.load() + 1);
      {
        std::lock_guard lock(mu);
        state["collections"].push_back(body);
      }
      std::thread(results, body, collection_id, what, twice).detach();
      resp.status = 202;
      resp.body = json{{"collection_id", collection_id}}.dump();
      return resp;
    }
    if (r.method == "POST" && r.path.rfind("/api/v1/sessions/", 0) == 0 && r.path.ends_with("/pod")) {
      const auto errors = ccm::testing::ValidateSchema(spec, spec["components"]["schemas"]["Pod"], body);
      std::lock_guard lock(mu);
      Pod what = s.refuse_pods ? Pod::kRefused : Pod::kNormal;
      if (s.chaos_seed && body.is_object() && body.contains("id") && body["id"].is_string()) {
        Behaviour& b = behaviour_of(body["id"]);
        what = b.pod;
        if (what == Pod::kUnavailableThenOk && b.pod_503s_left > 0) {
          --b.pod_503s_left;
          resp.status = 503;
          return resp;
        }
      }
      if (pod_failures_left.fetch_sub(1) > 0) {
        resp.status = 503;
        return resp;
      }
      if (what == Pod::kRefused) {
        state["refused"] = state["refused"].get<int>() + 1;
        resp.status = 400;
        resp.body = json{{"error", "the part is closed"}}.dump();
        return resp;
      }
      if (!errors.empty()) {
        state["refused"] = state["refused"].get<int>() + 1;
        resp.status = 400;
        resp.body = json{{"error", errors.front()}}.dump();
        return resp;
      }
      state["pods"].push_back({{"path", r.path}, {"pod", body}});
      return resp;
    }
    resp.status = 404;
    return resp;
  });
  if (auto st = server.Start(); !st) {
    std::cerr << "assessment-sim: " << st.error().message << "\n";
    return 1;
  }
  std::ofstream(ready_file) << "127.0.0.1:" << server.port() << "\n";
  int sig = 0;
  sigwait(&stop, &sig);
  server.Stop();
  return 0;
}
