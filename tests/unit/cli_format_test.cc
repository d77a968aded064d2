// What the `ccm` commands read and print, and the exit code of each answer.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <sstream>

#include "main/api_client.h"
#include "main/cli_format.h"

namespace ccm::main {
namespace {

using nlohmann::json;

TEST(CliYaml, ReadsBackAsTheSameJson) {
  const json doc = json::parse(R"({
    "id": "0193", "version": "1.0.0", "count": 3, "ratio": 1.5, "whole": 4.0, "big": 9007199254740993,
    "negative": -2, "yes": true, "no": false, "none": null, "empty": "", "words": ["true", "no", "null", "~", "y"],
    "numbers": ["007", "1e3", "-1", ".5", "0x1F", "1_000", "12:30"], "at": "2026-12-01T09:00:00Z",
    "lab": "nodes:\n  - id: n0\n", "colon": "a: b", "hash": "# not a comment", "dash": "- x",
    "nested": {"list": [], "map": {}, "deep": [{"k": "v"}, [1, 2]]}, "123": "numeric key", "true": "bool key",
    "unicode": "é ✓", "spaces": " padded "
  })");
  const std::string yaml = ToYaml(doc);
  auto back = ParseDocument(yaml);
  ASSERT_TRUE(back) << back.error().message << "\n" << yaml;
  EXPECT_EQ(*back, doc) << yaml;
}

TEST(CliYaml, QuotesStringsThatLookLikeNumbersOrBooleans) {
  const std::string yaml = ToYaml(json{{"version", "1.0"}, {"flag", "true"}, {"zip", "007"}, {"count", 1}, {"b", true},
                                     {"n", "key"}});
  EXPECT_NE(yaml.find("version: \"1.0\""), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("flag: \"true\""), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("zip: \"007\""), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("count: 1\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("\"n\": key\n"), std::string::npos) << yaml;  // a YAML 1.1 boolean as a key, too
  EXPECT_NE(yaml.find("b: true\n"), std::string::npos) << yaml;
  // Another YAML reader takes the quoted ones for strings.
  const YAML::Node node = YAML::Load(yaml);
  EXPECT_EQ(node["zip"].Tag(), "!");
  EXPECT_EQ(node["count"].Tag(), "?");
}

TEST(CliYaml, ParsesPlainScalarsByTheCoreSchema) {
  auto doc = ParseDocument("a: 1\nb: -2.5\nc: true\nd: ~\ne: 'true'\nf: \"12\"\ng: 1.0.0\nh: null\ni: yes\n");
  ASSERT_TRUE(doc) << doc.error().message;
  EXPECT_EQ(*doc, json::parse(R"({"a": 1, "b": -2.5, "c": true, "d": null, "e": "true", "f": "12", "g": "1.0.0",
                                  "h": null, "i": "yes"})"));
}

TEST(CliYaml, JsonIsReadAsJsonAndErrorsSayWhich) {
  auto doc = ParseDocument(R"({"big": 12345678901234567890, "f": 0.1})");
  ASSERT_TRUE(doc);
  EXPECT_TRUE((*doc)["big"].is_number_unsigned());
  // Neither JSON nor YAML (`{"a": }` is YAML: a null value).
  auto broken_json = ParseDocument("{\"a\": 1");
  ASSERT_FALSE(broken_json);
  EXPECT_EQ(broken_json.error().message.rfind("not valid JSON", 0), 0u) << broken_json.error().message;
  auto broken_yaml = ParseDocument("a: [1, 2\n");
  ASSERT_FALSE(broken_yaml);
  EXPECT_EQ(broken_yaml.error().message.rfind("not valid YAML", 0), 0u) << broken_yaml.error().message;
}

TEST(CliTable, AlignsColumnsAndMarksEmptyCells) {
  std::ostringstream out;
  Table{{"ID", "STATE", "WORKER"}, {{"a", "RUNNING", "w-long"}, {"bbbb", "PENDING", ""}}}.Print(out);
  EXPECT_EQ(out.str(),
            "ID    STATE    WORKER\n"
            "a     RUNNING  w-long\n"
            "bbbb  PENDING  -\n");
}

TEST(CliTable, CellsAndAges) {
  EXPECT_EQ(Cell(json(4.0)), "4");
  EXPECT_EQ(Cell(json(2.5)), "2.5");
  EXPECT_EQ(Cell(json(nullptr)), "");
  EXPECT_EQ(Cell(json("x")), "x");
  const Timestamp now = *ParseRfc3339("2026-11-30T12:00:00Z");
  EXPECT_EQ(Age("2026-11-30T11:59:15Z", now), "45s");
  EXPECT_EQ(Age("2026-11-30T11:00:00Z", now), "60m");
  EXPECT_EQ(Age("2026-11-29T12:00:00Z", now), "24h");
  EXPECT_EQ(Age("2026-11-20T12:00:00Z", now), "10d");
  EXPECT_EQ(Age("2026-12-01T12:00:00Z", now), "0s");
  EXPECT_EQ(Age("yesterday", now), "");
}

TEST(CliExitCodes, OnePerKindOfAnswer) {
  const std::vector<std::pair<long, int>> table = {
      {200, 0}, {201, 0}, {202, 0}, {404, 3}, {409, 4}, {412, 4}, {428, 4}, {400, 5}, {413, 5}, {415, 5},
      {422, 5}, {401, 6}, {403, 6}, {405, 1}, {431, 1}, {500, 1}, {502, 1}, {503, 1}};
  for (const auto& [status, code] : table) EXPECT_EQ(ExitCodeForStatus(status), code) << status;
  EXPECT_EQ(ExitCodeForFailure(transport::Failure::kOther), kExitUnreachable);
  EXPECT_EQ(ExitCodeForFailure(transport::Failure::kTimedOut), kExitUnreachable);
  EXPECT_EQ(ExitCodeForFailure(transport::Failure::kTlsPeerUnverified), kExitFailed);
}

TEST(CliProblem, PrintsTitleDetailFieldAndCode) {
  std::ostringstream err;
  PrintProblem(err, "ccm x", 409,
               R"({"type": "urn:ccm:problem:conflict", "title": "Conflict", "status": 409,
                   "detail": "worker w is STOPPED", "field": "state", "code": "conflict"})");
  EXPECT_EQ(err.str(), "ccm x: 409 Conflict: worker w is STOPPED\n  field: state\n  code: conflict\n");
  std::ostringstream plain;
  PrintProblem(plain, "ccm x", 502, "Bad Gateway\n<html>");
  EXPECT_EQ(plain.str(), "ccm x: 502: Bad Gateway\n");
}

}  // namespace
}  // namespace ccm::main
