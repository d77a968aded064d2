#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cloudevents/http_binding.h"
#include "http/server.h"
#include "support/fake_server.h"

namespace ccm::testing {

using namespace std::chrono_literals;

// A CloudEvents receiver that answers from a script, then 202, and records what it got.
class TestSink {
 public:
  struct Step {
    int status;
    std::string retry_after;
    std::chrono::milliseconds delay{0};
  };

  explicit TestSink(std::uint16_t port, std::vector<Step> script = {})
      : script_(std::move(script)), server_([this](http::Request& r) { return Handle(r); }, port) {}
  std::uint16_t port() const { return server_.port(); }
  void Stop() { server_.Stop(); }

  // Event ids in the order they first arrived, by subject.
  std::map<std::string, std::vector<std::string>> FirstArrivals() {
    std::lock_guard lock(mu_);
    return first_;
  }
  size_t Distinct() {
    std::lock_guard lock(mu_);
    return seen_.size();
  }
  std::set<std::string> Ids() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  http::Response Handle(http::Request& r) {
    Step step{202, "", 0ms};
    {
      std::lock_guard lock(mu_);
      if (next_ < script_.size()) step = script_[next_++];
    }
    if (step.delay.count()) std::this_thread::sleep_for(step.delay);
    http::Response resp;
    resp.status = step.status;
    if (!step.retry_after.empty()) resp.headers["Retry-After"] = step.retry_after;
    if (step.status >= 300) return resp;
    auto decoded = cloudevents::Decode(r.headers, r.body);
    if (!decoded) {
      resp.status = 400;
      return resp;
    }
    std::lock_guard lock(mu_);
    for (const auto& d : decoded->events) {
      if (!d.event) continue;
      if (seen_.insert(d.event->id).second) first_[d.event->subject.value_or("")].push_back(d.event->id);
    }
    return resp;
  }

  std::mutex mu_;
  std::vector<Step> script_;
  size_t next_ = 0;
  std::set<std::string> seen_;
  std::map<std::string, std::vector<std::string>> first_;
  FakeServer server_;
};

inline std::uint16_t FreePort() {
  http::Server probe({"127.0.0.1", 0, 1, 1}, [](http::Request&) { return http::Response{}; });
  if (!probe.Start()) return 0;
  const auto port = probe.port();
  probe.Stop();
  return port;
}

}  // namespace ccm::testing
