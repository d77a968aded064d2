// The examples of docs/assessment-integration.md are true: every event the platform is shown
// sending is posted to a real ccm and applied to an instance in the state it names; every
// event ccm is shown sending validates against its schema in docs/schemas/; the pod example
// validates against the Grading Engine's Pod schema.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <regex>
#include <sstream>

#include "support/http_client.h"
#include "support/json_schema.h"
#include "support/lab_seed.h"
#include "support/stack.h"
#include "support/world.h"

namespace ccm {
namespace {

using nlohmann::json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Example {
  std::string kind;   // consumed-example, consumed-batch-example, published-example, pod-example
  std::string state;  // for consumed ones: the state the instance must be in
  std::string text;
};

// The fenced ```json blocks that follow an <!-- kind[: STATE] --> marker.
std::vector<Example> Examples(const std::string& markdown) {
  static const std::regex kBlock(R"(<!-- ([a-z-]+)(?:: ([A-Z]+))? -->\s*```json\n([\s\S]*?)\n```)");
  std::vector<Example> out;
  for (auto it = std::sregex_iterator(markdown.begin(), markdown.end(), kBlock); it != std::sregex_iterator(); ++it)
    out.push_back({(*it)[1], (*it)[2], (*it)[3]});
  return out;
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size()))
    text.replace(pos, from.size(), to);
  return text;
}

class DocsExamples : public ::testing::Test {
 protected:
  DocsExamples() : http_(stack_.BaseUrl()) {
    seed_ = testing::SeedLab(http_, testing::ReadTestData("sample_lab_template.yaml"));
  }
  // A new instance moved to `state` (RUNNING, then COLLECTING, then GRADING).
  std::string InstanceIn(const std::string& state) {
    json body = {{"definition_id", seed_.definition_id}, {"owner_id", "c"},
                 {"timeslot_start", "2026-12-01T09:00:00Z"}, {"timeslot_end", "2026-12-01T10:00:00Z"}};
    const std::string id = http_.PostJson("/api/v1/instances", body).Json()["id"];
    http_.PostJson("/api/internal/instances/" + id + "/schedule", {{"worker_id", seed_.worker_id}});
    for (const char* to : {"INSTANTIATING", "RUNNING", "COLLECTING", "GRADING"}) {
      if (http_.Get("/api/v1/instances/" + id).Json()["state"] == state) break;
      http_.PostJson("/api/internal/instances/" + id + "/transition", {{"to", to}});
    }
    EXPECT_EQ(http_.Get("/api/v1/instances/" + id).Json()["state"], state);
    return id;
  }

  testing::Stack stack_{testing::StoreKind::kMemory};
  testing::HttpClient http_;
  testing::LabSeed seed_;
};

TEST_F(DocsExamples, EveryExampleOfTheIntegrationGuideHolds) {
  const std::string guide = ReadFile(std::string(CCM_SOURCE_DIR) + "/docs/assessment-integration.md");
  const auto examples = Examples(guide);
  int consumed = 0, published = 0, pods = 0;
  for (const auto& e : examples) {
    SCOPED_TRACE(e.kind + " " + e.text.substr(0, 120));
    if (e.kind == "consumed-example" || e.kind == "consumed-batch-example") {
      const std::string id = InstanceIn(e.state);
      const bool batch = e.kind == "consumed-batch-example";
      auto r = http_.Post("/api/v1/events", Replace(e.text, "INSTANCE_ID", id),
                          batch ? "application/cloudevents-batch+json" : "application/cloudevents+json");
      EXPECT_EQ(r.status, 202) << r.body;
      const json answer = r.Json();  // kept: a loop over a temporary's member would outlive it
      if (batch)
        for (const auto& result : answer["results"]) EXPECT_EQ(result["outcome"], "applied") << r.body;
      else
        EXPECT_EQ(answer["outcome"], "applied") << r.body;
      EXPECT_NE(http_.Get("/api/v1/instances/" + id).Json()["state"], e.state);  // it moved on
      ++consumed;
    } else if (e.kind == "published-example") {
      const json event = json::parse(e.text);
      const std::string type = event["type"];
      const std::string file = testing::SchemaFileOf(type);  // the version ccm publishes now
      const json schema = json::parse(ReadFile(std::string(CCM_SOURCE_DIR) + "/docs/schemas/" + file));
      EXPECT_EQ(testing::ValidateSchema(schema, schema, event["data"]), std::vector<std::string>{});
      EXPECT_TRUE(event["dataschema"].get<std::string>().ends_with("/schemas/" + file));
      ++published;
    } else if (e.kind == "pod-example") {
      const json spec = json::parse(testing::ReadTestData("grading-engine.openapi.json"));
      EXPECT_EQ(testing::ValidateSchema(spec, spec["components"]["schemas"]["Pod"], json::parse(e.text)),
                std::vector<std::string>{});
      ++pods;
    } else {
      ADD_FAILURE() << "unknown example kind " << e.kind;
    }
  }
  EXPECT_GE(consumed, 6);
  EXPECT_GE(published, 4);
  EXPECT_EQ(pods, 1);
}

TEST_F(DocsExamples, CcmServesEverySchemaOfDocsSchemasAndRefusesOthers) {
  const json index = http_.Get("/schemas").Json();
  std::set<std::string> served;
  for (const auto& url : index["schemas"]) served.insert(url.get<std::string>());
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(CCM_SOURCE_DIR) + "/docs/schemas"))
    if (entry.path().extension() == ".json") files.insert("/schemas/" + entry.path().filename().string());
  EXPECT_EQ(served, files);
  auto one = http_.Get("/schemas/ccm.lablet.instance.running.v1.json");
  EXPECT_EQ(one.status, 200);
  EXPECT_EQ(one.Json(), json::parse(ReadFile(std::string(CCM_SOURCE_DIR) +
                                             "/docs/schemas/ccm.lablet.instance.running.v1.json")));
  auto missing = http_.Get("/schemas/ccm.lablet.instance.running.v9.json");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.ContentType(), "application/problem+json");
  EXPECT_EQ(missing.Json()["field"], "file");
}

}  // namespace
}  // namespace ccm
