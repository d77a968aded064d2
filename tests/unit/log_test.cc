// The log formats: every JSON line parses, whatever the message holds, and carries the
// thread's context; scopes nest and restore.
#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "log/formatter.h"
#include "log/log_context.h"
#include "trace/trace_context.h"

namespace ccm {
namespace {

using nlohmann::json;

// A logger writing into a string, in `format`.
struct Captured {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
  explicit Captured(log::Format format, const std::string& name = "test") {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    logger = std::make_shared<spdlog::logger>(name, sink);
    logger->set_formatter(log::MakeFormatter(format));
    logger->set_level(spdlog::level::trace);
  }
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    std::istringstream in(out.str());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  }
  json Only() const {
    const auto lines = Lines();
    EXPECT_EQ(lines.size(), 1u) << out.str();
    return lines.empty() ? json() : json::parse(lines.front(), nullptr, false);
  }
};

TEST(JsonLog, ALineHasTimeLevelLoggerAndMessage) {
  Captured c(log::Format::kJson);
  c.logger->warn("disk {} full", "/var");
  const json line = c.Only();
  ASSERT_TRUE(line.is_object()) << c.out.str();
  EXPECT_EQ(line["level"], "warning");
  EXPECT_EQ(line["logger"], "test");
  EXPECT_EQ(line["message"], "disk /var full");
  // RFC 3339, UTC, milliseconds: 2026-11-30T05:02:48.123Z
  const std::string time = line["time"];
  EXPECT_EQ(time.size(), 24u) << time;
  EXPECT_EQ(time[10], 'T');
  EXPECT_EQ(time[19], '.');
  EXPECT_EQ(time.back(), 'Z');
  EXPECT_FALSE(line.contains("request_id"));  // unknown: left out, not empty
}

// Work that joined a W3C trace (trace::Scope) logs its trace id without setting it twice;
// a trace id set in the log context wins.
TEST(JsonLog, TheThreadsCurrentTraceNamesTheLinesTrace) {
  Captured c(log::Format::kJson);
  const auto trace = trace::Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(trace);
  {
    trace::Scope scope(*trace);
    c.logger->info("in the trace");
    log::Scope named({.trace_id = std::string(32, 'a')});
    c.logger->info("named");
  }
  c.logger->info("after");
  const auto lines = c.Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(json::parse(lines[0])["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(json::parse(lines[1])["trace_id"], std::string(32, 'a'));
  EXPECT_FALSE(json::parse(lines[2]).contains("trace_id"));
}

TEST(JsonLog, ControlCharactersQuotesAndBrokenUtf8StillGiveOneValidLine) {
  Captured c(log::Format::kJson);
  const std::string nasty = std::string("a\"b\\c\nd\re\tf") + '\0' + "g\x01\x7f" + "\xC0\xA0" + "\xE2\x82" + "\xFF" +
                            "caf\xC3\xA9";
  c.logger->error("{}", nasty);
  const json line = c.Only();
  ASSERT_TRUE(line.is_object()) << c.out.str();
  const std::string message = line["message"];
  EXPECT_EQ(message.substr(0, 11), std::string("a\"b\\c\nd\re\tf"));
  EXPECT_NE(message.find('\0'), std::string::npos);  // escaped as \u0000, kept
  EXPECT_NE(message.find("\xEF\xBF\xBD"), std::string::npos) << message;  // U+FFFD for the broken bytes
  EXPECT_NE(message.find("caf\xC3\xA9"), std::string::npos);  // valid UTF-8 kept as is
}

TEST(JsonLog, TheThreadsContextAndExtraFieldsAreFieldsOfTheLine) {
  Captured c(log::Format::kJson);
  {
    log::Scope request({.request_id = "req-1"});
    log::Scope lablet({.lablet_id = "L1", .worker_id = "W1"});
    log::Scope access({.fields = {{"status", std::int64_t{404}},
                                  {"duration_ms", 1.5},
                                  {"route", std::string("/x/{id}")},
                                  {"message", std::string("overrides nothing")}}});
    c.logger->info("hello");
  }
  c.logger->info("after");
  const auto lines = c.Lines();
  ASSERT_EQ(lines.size(), 2u);
  const json in = json::parse(lines[0]);
  EXPECT_EQ(in["request_id"], "req-1");
  EXPECT_EQ(in["lablet_id"], "L1");
  EXPECT_EQ(in["worker_id"], "W1");
  EXPECT_FALSE(in.contains("trace_id"));
  EXPECT_EQ(in["status"], 404);
  EXPECT_EQ(in["duration_ms"], 1.5);
  EXPECT_EQ(in["route"], "/x/{id}");
  EXPECT_EQ(in["message"], "hello");  // a reserved name among the extras is left out
  const json out = json::parse(lines[1]);
  for (const char* gone : {"request_id", "lablet_id", "worker_id", "status", "route"})
    EXPECT_FALSE(out.contains(gone)) << gone << " outlived its scope: " << lines[1];
}

TEST(LogContext, ScopesNestAndRestoreThePreviousValues) {
  EXPECT_EQ(log::Current().lablet_id, "");
  {
    log::Scope outer({.lablet_id = "A", .request_id = "r"});
    {
      log::Scope inner({.lablet_id = "B"});
      EXPECT_EQ(log::Current().lablet_id, "B");
      EXPECT_EQ(log::Current().request_id, "r");  // not set by the inner scope: kept
      log::Scope trace({.trace_id = "t"});
      EXPECT_EQ(log::Current().trace_id, "t");
    }
    EXPECT_EQ(log::Current().lablet_id, "A");
    EXPECT_EQ(log::Current().trace_id, "");
  }
  EXPECT_EQ(log::Current().lablet_id, "");
  EXPECT_EQ(log::Current().request_id, "");
}

TEST(LogContext, EachThreadHasItsOwn) {
  log::Scope here({.request_id = "main"});
  std::string there;
  std::thread([&there] { there = log::Current().request_id; }).join();
  EXPECT_EQ(there, "");
  EXPECT_EQ(log::Current().request_id, "main");
}

TEST(TextLog, TheContextFollowsTheMessageAsPairs) {
  Captured c(log::Format::kText);
  {
    log::Scope s({.lablet_id = "L1", .request_id = "r-9", .fields = {{"path", std::string("/a b")}}});
    c.logger->info("stepped");
  }
  c.logger->info("plain");
  const auto lines = c.Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("[info] stepped lablet_id=L1 request_id=r-9 path=\"/a b\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("[info] plain"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[1].find("lablet_id"), std::string::npos) << lines[1];
}

}  // namespace
}  // namespace ccm
