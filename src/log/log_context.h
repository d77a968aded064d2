#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace ccm::log {

// One extra field of a log line (the access log's status, route, duration...).
struct Field {
  using Value = std::variant<std::string, std::int64_t, double>;
  std::string name;
  Value value;
};

// What the lines logged by this thread are about, written with each of them by the
// formatters (log/formatter.h). spdlog 1.10 has no mapped diagnostic context: this is one,
// per thread. Empty strings are unknown and left out of the line.
struct Context {
  std::string trace_id;    // the W3C trace the work belongs to; empty: the thread's trace::Current()
  std::string lablet_id;   // the lablet instance being worked on
  std::string worker_id;   // the CML worker being worked on
  std::string request_id;  // the HTTP request being answered (X-Request-Id)
  // Extra fields of the lines logged inside the scope that set them (the access log line);
  // a name that repeats one of the fields above or `time`, `level`, `logger`, `message` is
  // left out.
  std::vector<Field> fields;
};

// The context of the calling thread (empty when no Scope is open).
const Context& Current();

// The fields a Scope sets; a field left nullopt keeps its current value.
struct Set {
  std::optional<std::string> trace_id = std::nullopt;
  std::optional<std::string> lablet_id = std::nullopt;
  std::optional<std::string> worker_id = std::nullopt;
  std::optional<std::string> request_id = std::nullopt;
  std::vector<Field> fields = {};  // appended to those already set
};

// Sets fields of the calling thread's context for its lifetime, and restores the previous
// context when it ends:
//   log::Scope scope({.lablet_id = id.value});
// Scopes nest. Not to be held across a coroutine suspension (the thread may change); not
// copyable or movable. Lines logged through an asynchronous spdlog logger would not see it:
// ccm's loggers are synchronous.
class Scope {
 public:
  explicit Scope(Set set);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Context saved_;
};

}  // namespace ccm::log
