#include <gtest/gtest.h>

#include "cloudevents/base64.h"
#include "cloudevents/http_binding.h"
#include "cloudevents/json_format.h"
#include "cloudevents/json_parse.h"

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
  ASSERT_TRUE(back->events[0].event);
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

// JSON format §4: a batch is an array of events; one element that is not an event makes the
// whole batch invalid, named by its index.
TEST(CloudEventHttp, ABatchWithAnInvalidElementIsRefusedWhole) {
  auto d = Decode({{"content-type", "application/cloudevents-batch+json"}},
                  R"([{"specversion":"1.0","id":"1","source":"s","type":"t"}, {"specversion":"1.0","id":"2"}])");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().field, "[1].source");
}

// ---- hostile input ------------------------------------------------------------------------

std::string Nested(std::size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(JsonParse, FindTopLevelStringStopsAtTheMemberAndLooksNowhereElse) {
  using cloudevents::FindTopLevelString;
  EXPECT_EQ(FindTopLevelString(R"({"a": {"hostname": "inner"}, "hostname": "w1", "z": [1, 2]})", "hostname"), "w1");
  EXPECT_EQ(FindTopLevelString(R"({"hostname": ""})", "hostname"), "");
  EXPECT_EQ(FindTopLevelString(R"({"hostname": "h\u00e9"})", "hostname"), "h\xc3\xa9");
  // Only the top level counts, and only a string.
  EXPECT_FALSE(FindTopLevelString(R"({"a": {"hostname": "inner"}})", "hostname"));
  EXPECT_FALSE(FindTopLevelString(R"({"hostname": 7})", "hostname"));
  EXPECT_FALSE(FindTopLevelString(R"({"hostname": null})", "hostname"));
  EXPECT_FALSE(FindTopLevelString(R"({"hostname": ["w1"]})", "hostname"));
  EXPECT_FALSE(FindTopLevelString(R"(["hostname", "w1"])", "hostname"));
  EXPECT_FALSE(FindTopLevelString(R"("hostname")", "hostname"));
  EXPECT_FALSE(FindTopLevelString("", "hostname"));
  // What comes after the member is never read: the parse has stopped.
  EXPECT_EQ(FindTopLevelString(R"({"hostname": "w1", "rest": not json at all)", "hostname"), "w1");
  // Before it, bad JSON ends the search.
  EXPECT_FALSE(FindTopLevelString(R"({"a": nope, "hostname": "w1"})", "hostname"));
  // As deep as ParseJson allows, no deeper.
  const std::string deep = "{\"a\": " + std::string(100, '[') + std::string(100, ']') + ", \"hostname\": \"w1\"}";
  EXPECT_FALSE(FindTopLevelString(deep, "hostname"));
}

TEST(JsonDepth, TheScanCountsBracketsOutsideStringsOnly) {
  EXPECT_FALSE(FindJsonDepthExcess("", 1));
  EXPECT_FALSE(FindJsonDepthExcess("1", 0));
  EXPECT_FALSE(FindJsonDepthExcess(Nested(64), 64));
  EXPECT_TRUE(FindJsonDepthExcess(Nested(65), 64));
  EXPECT_EQ(FindJsonDepthExcess(Nested(65), 64)->offset, 64u);
  // Brackets inside strings, escaped quotes and escaped backslashes do not count.
  EXPECT_FALSE(FindJsonDepthExcess(R"({"a":"[[[[{{{{","b":"\"[[[[","c":"\\"})", 1));
  EXPECT_TRUE(FindJsonDepthExcess(R"({"a":"\\",  "b":[1]})", 1));
  EXPECT_FALSE(FindJsonDepthExcess(R"(["\\\"[[[["])", 1));
}

TEST(JsonDepth, TheExcessIsNamedByTheMembersThatHoldIt) {
  const std::string deep = Nested(100);
  EXPECT_EQ(FindJsonDepthExcess(R"({"id":"x","data":)" + deep + "}", 64)->path, "data[0]");
  EXPECT_EQ(FindJsonDepthExcess(R"({"id":"x","data":)" + deep + "}", 64, 1)->path, "data");
  EXPECT_EQ(FindJsonDepthExcess(R"({"id":"x","myext":{"k":)" + deep + "}}", 64)->path, "myext.k");
  EXPECT_EQ(FindJsonDepthExcess(R"([{"id":"a"},{"id":"b","data":)" + deep + "}]", 64)->path, "[1].data");
  EXPECT_EQ(FindJsonDepthExcess(deep, 64)->path, "[0][0]");
  EXPECT_EQ(FindJsonDepthExcess(deep, 1)->path, "[0]");
  EXPECT_EQ(FindJsonDepthExcess(deep, 0)->path, "");
  EXPECT_EQ(FindJsonDepthExcess(R"({"data":)" + deep + "}", 65, 1)->path, "data");
  EXPECT_EQ(FindJsonDepthExcess(deep, 64, 0)->path, "");
}

TEST(JsonDepth, ParseJsonRefusesBeforeBuildingAndAcceptsUpToTheLimit) {
  auto at_limit = ParseJsonBounded(Nested(64), "data", 0, 64);
  ASSERT_TRUE(at_limit) << at_limit.error().message;
  auto over = ParseJsonBounded(Nested(87'000), "data", 0, 64);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(over.error().field, "data");
  EXPECT_NE(over.error().message.find("deeper than 64 levels (CCM_MAX_JSON_DEPTH)"), std::string::npos);
  auto body = ParseJsonBounded(R"({"resource_requirements":)" + Nested(100) + "}", kBodyField, 1, 64);
  ASSERT_FALSE(body);
  EXPECT_EQ(body.error().field, "resource_requirements");
  EXPECT_NE(body.error().message.find("deeper than 64 levels"), std::string::npos) << body.error().message;
  EXPECT_TRUE(ParseJsonBounded(R"({"a":)" + Nested(64) + "}", kBodyField, 1, 64));
  EXPECT_EQ(MaxJsonDepth(), kDefaultMaxJsonDepth);
  EXPECT_TRUE(ParseJsonOrDiscarded(Nested(kDefaultMaxJsonDepth + 1)).is_discarded());
  EXPECT_TRUE(ParseJsonOrDiscarded("{").is_discarded());
  EXPECT_EQ(ParseJsonOrDiscarded(R"({"a":[1]})")["a"][0], 1);
}

TEST(JsonDepth, DeepEventsAreRefusedInEveryModeWithTheAttributeNamed) {
  const std::string deep = Nested(87'000);
  const std::string head = R"({"specversion":"1.0","id":"1","source":"s","type":"t.unknown",)";
  const std::map<std::string, std::string> structured = {{"content-type", std::string(kStructuredType)}};
  const std::map<std::string, std::string> batch = {{"content-type", std::string(kBatchType)}};
  struct DeepCase {
    const char* name;
    std::map<std::string, std::string> headers;
    std::string body;
    const char* field;
  };
  const DeepCase cases[] = {
      {"structured data", structured, head + R"("data":)" + deep + "}", "data"},
      {"structured extension", structured, head + R"("myext":)" + deep + "}", "myext"},
      {"batch", batch, "[" + head + R"("data":)" + deep + "}]", "[0].data"},
      {"binary data",
       {{"ce-specversion", "1.0"}, {"ce-id", "1"}, {"ce-source", "s"}, {"ce-type", "t"},
        {"content-type", "application/json"}},
       deep,
       "data"},
  };
  for (const auto& c : cases) {
    auto d = Decode(c.headers, c.body);
    ASSERT_FALSE(d) << c.name;
    EXPECT_EQ(d.error().field, c.field) << c.name;
    EXPECT_NE(d.error().message.find("CCM_MAX_JSON_DEPTH"), std::string::npos) << c.name << ": " << d.error().message;
  }
}

// The limit is on what an event holds, not on its envelope: data that passes in one mode
// passes in all, so an accepted event can be re-encoded in any mode.
TEST(JsonDepth, DataAtTheLimitPassesInEveryModeAndOneLevelMoreInNone) {
  for (const std::size_t depth : {std::size_t{64}, std::size_t{65}}) {
    CloudEvent e;
    e.id = "1";
    e.source = "s";
    e.type = "t";
    e.datacontenttype = "application/json";
    e.data = json::parse(Nested(depth));
    for (const HttpMessage& m : {EncodeStructured(e), EncodeBatch({e}), EncodeBinary(e)}) {
      auto d = Decode(m.headers, m.body);
      EXPECT_EQ(d.has_value(), depth == 64) << depth << " " << m.body.substr(0, 80);
    }
  }
}

TEST(CloudEventJson, FromJsonMovesTheDataOut) {
  json j = json::parse(kSpecExample);
  auto e = FromJson(std::move(j));
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->data->at("appinfoB"), 123);
  // What was moved out is left null in the source object.
  EXPECT_TRUE(j["data"].is_null());
  auto batch = ParseBatchArray(R"([{"a":1},{"b":[2]}])");
  ASSERT_TRUE(batch);
  EXPECT_EQ((*batch)[1]["b"][0], 2);
}

// What nlohmann's parser already refuses inside JSON strings, and what it lets through (which
// Validate then catches for attributes).
TEST(CloudEventJson, UndecodableOrControlTextInAttributesIsRefused) {
  const std::string head = R"({"specversion":"1.0","type":"t","source":"s","id":)";
  for (const std::string bad : {"\"\xC0\xAF\"", "\"\xED\xA0\x80\"", "\"\xF4\x90\x80\x80\"", "\"\xE2\x82\""}) {
    auto e = ParseEvent(head + bad + "}");
    ASSERT_FALSE(e) << bad;
    EXPECT_EQ(e.error().field, "body") << bad;
  }
  // An unpaired surrogate escape is refused too, naming the attribute that holds it.
  for (const std::string bad : {R"("\ud800")", R"("\udc00x")"}) {
    auto e = ParseEvent(head + bad + "}");
    ASSERT_FALSE(e) << bad;
    EXPECT_EQ(e.error().field, "id") << bad;
  }
  // \u0000, \u001f and \u0085 are valid JSON: the String rule refuses them.
  for (const std::string control : {R"("a\u0000b")", R"("a\u001fb")", R"("a\u0085b")", "\"a\x7f" "b\""}) {
    auto e = ParseEvent(head + control + "}");
    ASSERT_FALSE(e) << control;
    EXPECT_EQ(e.error().field, "id") << control;
    EXPECT_NE(e.error().message.find("control characters"), std::string::npos) << e.error().message;
  }
  auto ext = ParseEvent(head + R"("1","myext":"x\ny"})");
  ASSERT_FALSE(ext);
  EXPECT_EQ(ext.error().field, "myext");
  // A valid pair of surrogate escapes is one code point, which is fine.
  EXPECT_TRUE(ParseEvent(head + R"("\ud83d\ude00"})"));
}

TEST(CloudEventHttp, BinaryHeadersMustBeStrictUtf8) {
  const std::map<std::string, std::string> good = {
      {"ce-specversion", "1.0"}, {"ce-id", "1"}, {"ce-source", "/s"}, {"ce-type", "t"}};
  ASSERT_TRUE(Decode(good, ""));
  struct HeaderCase {
    const char* header;
    const char* value;
    const char* field;
  };
  const HeaderCase cases[] = {
      {"ce-source", "/s%C0%AF", "source"},           // overlong '/'
      {"ce-source", "/s%ED%A0%80", "source"},        // surrogate U+D800
      {"ce-source", "/s%F4%90%80%80", "source"},     // U+110000
      {"ce-id", "%E2%82", "id"},                     // cut short
      {"ce-id", "a\xC0\xAF", "id"},                  // raw, not percent-encoded
      {"ce-subject", "%F8%88%80%80%80", "subject"},  // 5-byte form
      {"ce-myext", "%FF", "myext"},
      {"ce-id", "a%0Ab", "id"},                      // a control character
      {"ce-type", "t%C2%85", "type"},                // C1 control U+0085
  };
  for (const auto& c : cases) {
    auto h = good;
    h[c.header] = c.value;
    auto d = Decode(h, "");
    ASSERT_FALSE(d) << c.header << " " << c.value;
    EXPECT_EQ(d.error().field, c.field) << c.value << ": " << d.error().message;
  }
  EXPECT_FALSE(PercentDecodeHeader("%C0%80"));
  EXPECT_EQ(PercentDecodeHeader("caf%C3%A9").value(), "caf\xC3\xA9");
  auto text = good;
  text["content-type"] = "text/plain";
  EXPECT_TRUE(Decode(text, "caf\xC3\xA9"));
  // Text in another charset is kept byte for byte as binary data, never as a JSON string.
  auto latin1 = Decode(text, "caf\xE9");
  ASSERT_TRUE(latin1);
  EXPECT_FALSE(latin1->events[0].event->data);
  EXPECT_EQ(latin1->events[0].event->data_base64, Base64Encode("caf\xE9"));
}

TEST(Base64, RoundTripsAndRefusesGarbage) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) EXPECT_EQ(Base64Decode(Base64Encode(s)), s);
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  for (const char* bad : {"Zm9", "Zm9v!", "Zg=a", "=Zg="}) EXPECT_FALSE(Base64Decode(bad)) << bad;
}

}  // namespace
}  // namespace ccm::cloudevents
