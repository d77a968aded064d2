#include <gtest/gtest.h>

#include "cloudevents/base64.h"
#include "cloudevents/http_binding.h"
#include "cloudevents/json_format.h"

namespace ccm::cloudevents {
namespace {

using nlohmann::json;

// The example of the JSON format spec (section 3.1), with JSON data.
const char* kSpecExample = R"({
  "specversion" : "1.0",
  "type" : "com.github.pull_request.opened",
  "source" : "https://github.com/cloudevents/spec/pull",
  "subject" : "123",
  "id" : "A234-1234-1234",
  "time" : "2018-04-05T17:31:00Z",
  "comexampleextension1" : "value",
  "comexampleothervalue" : 5,
  "datacontenttype" : "application/json",
  "data" : {"appinfoA" : "abc", "appinfoB" : 123, "appinfoC" : true}
})";

CloudEvent Sample() {
  CloudEvent e;
  e.id = "evt-1";
  e.source = "ccm";
  e.type = "ccm.lablet.instance.running";
  e.subject = "instance-1";
  e.time = "2026-11-27T01:46:23.123Z";
  e.datacontenttype = "application/json";
  e.dataschema = "https://ccm.example/schemas/running/v1.json";
  e.extensions["traceparent"] = "00-abc-def-01";
  e.extensions["partitionkey"] = 7;
  e.data = json{{"instance_id", "instance-1"}, {"note", "café \"quoted\" 100%"}};
  return e;
}

void ExpectSame(const CloudEvent& a, const CloudEvent& b) {
  EXPECT_EQ(ToJson(a), ToJson(b));
}

TEST(CloudEventJson, ReadsTheSpecExample) {
  auto e = ParseEvent(kSpecExample);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->id, "A234-1234-1234");
  EXPECT_EQ(e->subject, "123");
  EXPECT_EQ(e->extensions.at("comexampleothervalue"), 5);
  EXPECT_EQ((*e->data)["appinfoB"], 123);
  EXPECT_EQ(ToJson(*e), json::parse(kSpecExample));  // round trip keeps every attribute
}

TEST(CloudEventJson, RoundTripsDataBase64) {
  CloudEvent e = Sample();
  e.data.reset();
  e.datacontenttype = "application/octet-stream";
  e.data_base64 = Base64Encode(std::string("\x00\x01\xff binary", 10));
  auto back = ParseEvent(ToJsonString(e));
  ASSERT_TRUE(back) << back.error().message;
  ExpectSame(*back, e);
}

TEST(CloudEventHttp, RoundTripsInEveryMode) {
  const CloudEvent e = Sample();
  for (const HttpMessage& m : {EncodeStructured(e), EncodeBinary(e)}) {
    auto d = Decode(m.headers, m.body);
    ASSERT_TRUE(d) << d.error().message;
    ASSERT_EQ(d->events.size(), 1u);
    ASSERT_TRUE(d->events[0].event);
    CloudEvent got = *d->events[0].event;
    // Binary mode carries extensions as strings.
    if (d->mode == Mode::kBinary) got.extensions["partitionkey"] = std::stoi(got.extensions["partitionkey"].get<std::string>());
    ExpectSame(got, e);
  }
  CloudEvent second = e;
  second.id = "evt-2";
  HttpMessage batch = EncodeBatch({e, second});
  EXPECT_EQ(batch.headers["content-type"], "application/cloudevents-batch+json");
  auto d = Decode(batch.headers, batch.body);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->mode, Mode::kBatch);
  ASSERT_EQ(d->events.size(), 2u);
  EXPECT_EQ(d->events[1].event->id, "evt-2");
}

TEST(CloudEventHttp, BinaryHeadersArePercentEncoded) {
  CloudEvent e = Sample();
  e.subject = "a b\"c%d\xc3\xa9";
  HttpMessage m = EncodeBinary(e);
  EXPECT_EQ(m.headers["ce-subject"], "a%20b%22c%25d%C3%A9");
  EXPECT_EQ(m.headers["content-type"], "application/json");
  EXPECT_EQ(m.headers.count("ce-datacontenttype"), 0u);
  auto d = Decode(m.headers, m.body);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->events[0].event->subject, e.subject);
}

TEST(CloudEventHttp, BinaryDataByContentType) {
  std::map<std::string, std::string> h = {
      {"ce-specversion", "1.0"}, {"ce-id", "1"}, {"ce-source", "/x"}, {"ce-type", "t"}, {"content-type", "text/plain"}};
  auto text = Decode(h, "hello");
  ASSERT_TRUE(text);
  EXPECT_EQ(*text->events[0].event->data, "hello");
  h["content-type"] = "application/octet-stream";
  auto bytes = Decode(h, std::string("\x00\x01", 2));
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes->events[0].event->data_base64, "AAE=");
}

// Found by fuzzing (fuzz/corpus/cloudevents_decode/batch): binary data without a
// datacontenttype went out in binary mode with no Content-Type, and came back refused as JSON.
TEST(CloudEventHttp, BinaryDataWithoutAContentTypeTravelsAsAnOctetStream) {
  CloudEvent e;
  e.id = "e3";
  e.source = "/p";
  e.type = "t";
  e.data_base64 = "aGk=";
  const HttpMessage m = EncodeBinary(e);
  EXPECT_EQ(m.headers.at("content-type"), "application/octet-stream");
  auto back = Decode(m.headers, m.body);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_TRUE(back->events[0].event) << back->events[0].error->message;
  EXPECT_EQ(back->events[0].event->data_base64, "aGk=");
}

struct Refusal {
  const char* name;
  std::map<std::string, std::string> headers;
  std::string body;
  const char* field;
  const char* says;
};

TEST(CloudEventHttp, RefusalsNameTheRule) {
  const std::string st = "application/cloudevents+json";
  auto structured = [&](const char*) { return std::map<std::string, std::string>{{"content-type", st}}; };
  const std::vector<Refusal> cases = {
      {"malformed json", structured(""), "{", "body", "not valid JSON"},
      {"not an object", structured(""), "[1]", "body", "JSON object"},
      {"missing id", structured(""), R"({"specversion":"1.0","source":"s","type":"t"})", "id", "required"},
      {"empty source", structured(""), R"({"specversion":"1.0","id":"1","source":"","type":"t"})", "source",
       "required"},
      {"missing type", structured(""), R"({"specversion":"1.0","id":"1","source":"s"})", "type", "required"},
      {"missing specversion", structured(""), R"({"id":"1","source":"s","type":"t"})", "specversion", "required"},
      {"specversion 0.3", structured(""), R"({"specversion":"0.3","id":"1","source":"s","type":"t"})",
       "specversion", "\"1.0\""},
      {"specversion 2.0", structured(""), R"({"specversion":"2.0","id":"1","source":"s","type":"t"})",
       "specversion", "\"1.0\""},
      {"upper-case name", structured(""), R"({"specversion":"1.0","id":"1","source":"s","type":"t","Foo":"x"})",
       "Foo", "lower-case"},
      {"bad time", structured(""), R"({"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"})",
       "time", "RFC 3339"},
      {"id not string", structured(""), R"({"specversion":"1.0","id":1,"source":"s","type":"t"})", "id", "string"},
      {"source with space", structured(""), R"({"specversion":"1.0","id":"1","source":"a b","type":"t"})", "source",
       "URI-reference"},
      {"relative dataschema", structured(""),
       R"({"specversion":"1.0","id":"1","source":"s","type":"t","dataschema":"schemas/x"})", "dataschema",
       "absolute URI"},
      {"both data", structured(""),
       R"({"specversion":"1.0","id":"1","source":"s","type":"t","data":{},"data_base64":"AA=="})", "data",
       "both"},
      {"bad base64", structured(""), R"({"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"})",
       "data_base64", "base64"},
      {"extension object", structured(""), R"({"specversion":"1.0","id":"1","source":"s","type":"t","ext":{}})",
       "ext", "string, an integer or a boolean"},
      {"batch not array", {{"content-type", "application/cloudevents-batch+json"}}, "{}", "body", "array"},
      {"unknown format", {{"content-type", "application/cloudevents+avro"}}, "x", "content-type", "not supported"},
      {"plain json", {{"content-type", "application/json"}}, "{}", "specversion", "ce-specversion"},
      {"text without ce headers", {{"content-type", "text/plain"}}, "hi", "content-type", "no CloudEvent"},
      {"binary missing id", {{"ce-specversion", "1.0"}, {"ce-source", "s"}, {"ce-type", "t"}}, "", "id", "required"},
      {"binary bad json data",
       {{"ce-specversion", "1.0"}, {"ce-id", "1"}, {"ce-source", "s"}, {"ce-type", "t"},
        {"content-type", "application/json"}},
       "{nope", "data", "not valid JSON"},
      {"binary bad escape", {{"ce-specversion", "1.0"}, {"ce-id", "%zz"}, {"ce-source", "s"}, {"ce-type", "t"}}, "",
       "id", "percent"},
  };
  for (const auto& c : cases) {
    auto d = Decode(c.headers, c.body);
    ASSERT_FALSE(d) << c.name;
    EXPECT_EQ(d.error().field, c.field) << c.name << ": " << d.error().message;
    EXPECT_NE(d.error().message.find(c.says), std::string::npos) << c.name << ": " << d.error().message;
  }
}

TEST(CloudEventHttp, BatchElementsAreJudgedOneByOne) {
  auto d = Decode({{"content-type", "application/cloudevents-batch+json"}},
                  R"([{"specversion":"1.0","id":"1","source":"s","type":"t"}, {"specversion":"1.0","id":"2"}])");
  ASSERT_TRUE(d);
  ASSERT_EQ(d->events.size(), 2u);
  EXPECT_TRUE(d->events[0].event);
  ASSERT_TRUE(d->events[1].error);
  EXPECT_EQ(d->events[1].error->field, "source");
}

TEST(Base64, RoundTripsAndRefusesGarbage) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) EXPECT_EQ(Base64Decode(Base64Encode(s)), s);
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  for (const char* bad : {"Zm9", "Zm9v!", "Zg=a", "=Zg="}) EXPECT_FALSE(Base64Decode(bad)) << bad;
}

}  // namespace
}  // namespace ccm::cloudevents
