#include "main/watch_cli.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "main/api_client.h"
#include "main/cli_format.h"
#include "transport/http_connection.h"

namespace ccm::main {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kWho = "ccm watch";

struct Options {
  ClientOptions client;  // --url, --token, -o
  std::string kind, state, worker, lablet;
  std::optional<std::int64_t> after;
  int until_idle_ms = 0;  // 0: follow until interrupted
};

// One Server-Sent Event.
struct Frame {
  std::string id, event, data;
  bool comment_only = true;  // a heartbeat, or `retry:` alone
};

// Splits a byte stream into events (fields per https://html.spec.whatwg.org/#event-stream-interpretation,
// the ones ccm sends).
class FrameReader {
 public:
  template <typename Fn>
  void Feed(std::string_view bytes, Fn&& on_frame) {
    buffer_.append(bytes);
    std::size_t start = 0;
    for (;;) {
      const std::size_t end = buffer_.find('\n', start);
      if (end == std::string::npos) break;
      std::string_view line(buffer_.data() + start, end - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      start = end + 1;
      if (line.empty()) {
        if (!frame_.comment_only) on_frame(frame_);
        frame_ = {};
        continue;
      }
      if (line.front() == ':') continue;
      const std::size_t colon = line.find(':');
      const std::string_view field = line.substr(0, colon);
      std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
      if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      if (field == "id") frame_.id = value;
      else if (field == "event") frame_.event = value;
      else if (field == "data") frame_.data += frame_.data.empty() ? std::string(value) : "\n" + std::string(value);
      else continue;
      frame_.comment_only = false;
    }
    buffer_.erase(0, start);
  }

 private:
  std::string buffer_;
  Frame frame_;
};

std::string UrlOf(const Options& o, bool with_after) {
  std::string url = o.client.url + "/api/v1/watch";
  char sep = '?';
  for (const auto& [key, value] :
       {std::pair{"kind", o.kind}, {"state", o.state}, {"worker", o.worker}, {"lablet", o.lablet}}) {
    if (value.empty()) continue;
    url += sep + std::string(key) + "=" + transport::UrlEscape(value);
    sep = '&';
  }
  if (with_after && o.after) url += sep + std::string("after=") + std::to_string(*o.after);
  return url;
}

void Print(const Options& o, const Frame& f) {
  if (o.client.output == "json") {
    std::cout << f.data << std::endl;
    return;
  }
  const auto r = nlohmann::json::parse(f.data, nullptr, false);
  if (o.client.output == "yaml") {
    // A stream of YAML documents, one per record.
    std::cout << "---\n" << (r.is_object() ? ToYaml(r) : f.data + "\n") << std::flush;
    return;
  }
  if (!r.is_object()) {
    std::cout << f.id << '\t' << f.event << '\t' << f.data << std::endl;
    return;
  }
  std::string state = "-";
  if (const auto* data = r.contains("event") && r["event"].is_object() && r["event"].contains("data")
                             ? &r["event"]["data"]
                             : nullptr;
      data && data->is_object() && data->contains("new_state") && (*data)["new_state"].is_string())
    state = (*data)["new_state"].get<std::string>();
  std::cout << r.value("seq", std::int64_t{0}) << '\t' << r.value("time", "") << '\t' << r.value("type", "") << '\t'
            << r.value("subject", "") << '\t' << state << std::endl;
}

// Follows the stream; returns the exit code. Each connection resumes after the last record
// printed (Last-Event-ID), so a cut, a drain or a dropped connection loses and repeats nothing.
// A refusal (401, 403, 404, 400, ...) ends it with its exit code whenever it comes; no answer
// at all ends it on the first connection (exit 7: the URL or ccm is wrong), and is retried
// once a stream has been open (ccm restarting, a replica draining). 429 (too many watchers)
// and 503 (draining) ask the client to come back, so they are retried too.
int Follow(Options o) {
  while (!o.client.url.empty() && o.client.url.back() == '/') o.client.url.pop_back();
  bool streamed = false;  // a connection has answered 200
  const auto idle = std::chrono::milliseconds(o.until_idle_ms);
  auto last_record = Clock::now();
  std::optional<std::int64_t> last_id = o.after;
  std::chrono::milliseconds backoff{0};
  for (;;) {
    transport::Headers headers;
    if (!o.client.token.empty()) headers["Authorization"] = "Bearer " + o.client.token;
    if (last_id) headers["Last-Event-ID"] = std::to_string(*last_id);
    headers["Accept"] = "text/event-stream";
    FrameReader reader;
    std::string problem;  // the body of an answer that is not a stream
    bool idle_out = false;
    std::string ended_by;
    transport::Request request;
    request.method = "GET";
    request.headers = &headers;
    request.connect_timeout = std::chrono::seconds(10);
    const auto idle_over = [&] {
      idle_out = idle.count() > 0 && Clock::now() - last_record >= idle;
      return idle_out;
    };
    request.on_chunk = [&](std::string_view chunk) {
      if (problem.size() < 64 * 1024) problem.append(chunk.substr(0, 64 * 1024));
      reader.Feed(chunk, [&](const Frame& f) {
        if (f.event == "cut" || f.event == "shutdown") {
          ended_by = f.event + (f.data.empty() || f.data == "{}" ? "" : " " + f.data);
          return;
        }
        Print(o, f);
        std::int64_t seq = 0;
        if (const auto [p, ec] = std::from_chars(f.id.data(), f.id.data() + f.id.size(), seq); ec == std::errc())
          last_id = seq;
        last_record = Clock::now();
        backoff = std::chrono::milliseconds{0};
      });
      if (problem.size() >= 64 * 1024) problem.clear();
      return !idle_over();
    };
    request.keep_going = [&] { return !idle_over(); };
    transport::Connection connection;
    const std::string url = UrlOf(o, !last_id);
    const transport::Response answer = connection.Send(url, request);
    if (idle_out) return kExitOk;
    if (answer.status == 200) streamed = true;
    if (answer.status != 0 && answer.status != 200) {
      PrintProblem(std::cerr, kWho, answer.status, problem);
      if (answer.status != 429 && answer.status != 503) {
        const int code = ExitCodeForStatus(answer.status);
        return code == kExitOk ? kExitFailed : code;  // another 2xx is no stream either
      }
    } else if (!ended_by.empty()) {
      std::cerr << kWho << ": the stream ended (" << ended_by << "); resuming after "
                << (last_id ? std::to_string(*last_id) : std::string("now")) << "\n";
    } else if (!answer.transport_error.empty()) {
      if (!streamed) {
        std::cerr << kWho << ": GET " << url << ": " << answer.transport_error << "\n";
        return ExitCodeForFailure(answer.failure);
      }
      std::cerr << kWho << ": " << o.client.url << ": " << answer.transport_error << "; reconnecting\n";
    }
    backoff = backoff.count() == 0 ? std::chrono::milliseconds(250) : std::min(backoff * 2, std::chrono::milliseconds(5000));
    // A stream that ended cleanly (cut, drain) is resumed at once; a failure waits.
    if (ended_by.empty() || backoff > std::chrono::milliseconds(250)) std::this_thread::sleep_for(backoff);
    if (idle_over()) return kExitOk;
  }
}

}  // namespace

void AddWatchCommand(CLI::App& cli) {
  auto options = std::make_shared<Options>();
  auto* watch = cli.add_subcommand(
      "watch", "Follow a running ccm's changes (GET /api/v1/watch): seq, time, type, subject, state, one line each");
  // -o json prints each record as GET /api/v1/events lists it, one per line; -o yaml, one
  // YAML document each.
  AddClientOptions(*watch, options->client);
  watch->add_option("--kind", options->kind, "instances, workers, events, or a comma-separated list (default all)");
  watch->add_option("--state", options->state, "Only changes to this state (RUNNING, DRAINING, ...)");
  watch->add_option("--worker", options->worker, "Only changes of this worker, or naming it");
  watch->add_option("--lablet", options->lablet, "Only changes of this lablet instance");
  watch->add_option("--after", options->after, "Start after this seq (default: from now on)")->check(CLI::NonNegativeNumber);
  watch->add_option("--until-idle", options->until_idle_ms,
                    "End (exit 0) after this many ms without a change (default: follow until interrupted)")
      ->check(CLI::NonNegativeNumber);
  watch->callback([options] { throw CLI::RuntimeError(Follow(*options)); });
}

}  // namespace ccm::main
