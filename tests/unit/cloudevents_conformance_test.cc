// CloudEvents 1.0.2 conformance at the decoding level, written from the spec text: the core
// spec (spec.md), the JSON event format (formats/json-format.md) and the HTTP protocol binding
// (bindings/http-protocol-binding.md). Each rule is checked both ways: what must be accepted
// and what must be refused, with the attribute named.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "cloudevents/http_binding.h"
#include "cloudevents/json_format.h"

namespace ccm::cloudevents {
namespace {

using nlohmann::json;
using Headers = std::map<std::string, std::string>;

const Headers kStructured = {{"content-type", std::string(kStructuredType)}};
const Headers kBatch = {{"content-type", std::string(kBatchType)}};

// A minimal valid event with `patch` applied (a member set to `json()` stays as JSON null).
json Minimal(const json& patch = json::object()) {
  json e = {{"specversion", "1.0"}, {"id", "id-1"}, {"source", "/conformance"}, {"type", "com.example.t"}};
  for (const auto& [k, v] : patch.items()) e[k] = v;
  return e;
}

Result<Decoded> Structured(const std::string& body) { return Decode(kStructured, body); }

Headers Binary(const std::string& name, const std::string& value) {
  Headers h = {{"ce-specversion", "1.0"}, {"ce-id", "id-1"}, {"ce-source", "/conformance"}, {"ce-type", "com.example.t"}};
  h[name] = value;
  return h;
}

void ExpectRefused(const Result<Decoded>& d, const std::string& field, const std::string& says = "") {
  ASSERT_FALSE(d) << "accepted; expected a refusal naming " << field;
  EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(d.error().field, field) << d.error().message;
  if (!says.empty()) {
    EXPECT_NE(d.error().message.find(says), std::string::npos) << d.error().message;
  }
}

CloudEvent Only(const Result<Decoded>& d) {
  if (!d) {
    ADD_FAILURE() << "refused: " << d.error().field << ": " << d.error().message;
    return {};
  }
  EXPECT_EQ(d->events.size(), 1u);
  return *d->events.front().event;
}

// ---- HTTP binding: header values -------------------------------------------------------

// http-protocol-binding.md §3.1.3.2 HTTP Header Values: byte sequences that are invalid in
// UTF-8 after percent-decoding make the message invalid.
TEST(CloudEventsConformance, BinaryHeaderThatIsNotUtf8IsRefused) {
  const struct {
    const char* name;
    const char* value;
  } bad[] = {
      {"overlong space", "a%C0%A0b"},
      {"truncated euro sign", "a%E2%82"},
      {"lone continuation byte", "%80"},
      {"encoded surrogate U+D800", "%ED%A0%80"},
      {"past U+10FFFF", "%F4%90%80%80"},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(c.name);
    ExpectRefused(Decode(Binary("ce-subject", c.value), ""), "subject", "UTF-8");
    ExpectRefused(Decode(Binary("ce-myext", c.value), ""), "myext", "UTF-8");
  }
}

// §3.1.3.2: unnecessarily percent-encoded values and encoded UTF-8 are accepted.
TEST(CloudEventsConformance, BinaryHeaderWithPercentEncodedUtf8IsAccepted) {
  const CloudEvent e = Only(Decode(Binary("ce-subject", "caf%C3%A9%20%E2%82%AC%41"), ""));
  EXPECT_EQ(e.subject, "caf\xC3\xA9 \xE2\x82\xAC" "A");
}

// ---- JSON format: null -----------------------------------------------------------------

// json-format.md §2.2 Type System Mapping: a null attribute is unset.
TEST(CloudEventsConformance, NullOptionalAttributesAreUnset) {
  const CloudEvent& e =
      Only(Structured(Minimal({{"subject", nullptr}, {"datacontenttype", nullptr}, {"time", nullptr},
                               {"dataschema", nullptr}, {"myext", nullptr}})
                          .dump()));
  EXPECT_FALSE(e.subject);
  EXPECT_FALSE(e.datacontenttype);
  EXPECT_FALSE(e.time);
  EXPECT_FALSE(e.dataschema);
  EXPECT_EQ(e.extensions.count("myext"), 0u);
  EXPECT_FALSE(e.data);
}

// json-format.md §2.2 and spec.md REQUIRED Attributes: null is unset, so a required attribute
// set to null is missing.
TEST(CloudEventsConformance, NullRequiredAttributeIsRefused) {
  for (const char* name : {"id", "source", "specversion", "type"}) {
    SCOPED_TRACE(name);
    ExpectRefused(Structured(Minimal({{name, nullptr}}).dump()), name, "required");
  }
}

// json-format.md §3.1.1 Payload Serialization: `data: null` is an explicit null payload.
TEST(CloudEventsConformance, NullDataIsAnExplicitNullPayload) {
  const CloudEvent e = Only(Structured(Minimal({{"data", nullptr}}).dump()));
  ASSERT_TRUE(e.data);
  EXPECT_TRUE(e.data->is_null());
}

// ---- Type system: Integer --------------------------------------------------------------

// spec.md §Type System, Integer: -2,147,483,648 to +2,147,483,647.
TEST(CloudEventsConformance, IntegerExtensionsAreSigned32Bit) {
  for (const json& ok : {json(0), json(-2147483648LL), json(2147483647LL)}) {
    SCOPED_TRACE(ok.dump());
    const CloudEvent e = Only(Structured(Minimal({{"myint", ok}}).dump()));
    EXPECT_EQ(e.extensions.at("myint"), ok);
  }
  for (const char* bad : {"2147483648", "-2147483649", "9223372036854775807", "18446744073709551615"}) {
    SCOPED_TRACE(bad);
    std::string body = Minimal().dump();
    body.insert(body.size() - 1, std::string(",\"myint\":") + bad);
    ExpectRefused(Structured(body), "myint", "32-bit");
  }
}

// json-format.md §4 Batch: each element's Integer attribute obeys the same range.
TEST(CloudEventsConformance, IntegerRangeHoldsInABatch) {
  const json batch = json::array({Minimal(), Minimal({{"id", "id-2"}, {"myint", 4294967296LL}})});
  ExpectRefused(Decode(kBatch, batch.dump()), "[1].myint", "32-bit");
}

// ---- Type system: String ---------------------------------------------------------------

// spec.md §Type System, String: no control characters U+0000-U+001F, U+007F-U+009F.
TEST(CloudEventsConformance, StringAttributesRefuseControlCharacters) {
  for (const char* bad : {"a\x01" "b", "tab\there", "del\x7f", "c1\xC2\x80", "c1\xC2\x9F"}) {
    SCOPED_TRACE(json(bad).dump());
    ExpectRefused(Structured(Minimal({{"subject", bad}}).dump()), "subject", "control");
    ExpectRefused(Structured(Minimal({{"myext", bad}}).dump()), "myext", "control");
  }
  // Binary mode: a percent-encoded control character is a String attribute all the same.
  ExpectRefused(Decode(Binary("ce-subject", "a%00b"), ""), "subject", "control");
  ExpectRefused(Decode(Binary("ce-myext", "a%C2%85b"), ""), "myext", "control");
}

// spec.md §Type System, String: no noncharacters (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF).
TEST(CloudEventsConformance, StringAttributesRefuseNoncharacters) {
  const struct {
    const char* name;
    const char* utf8;
  } bad[] = {
      {"U+FDD0", "\xEF\xB7\x90"}, {"U+FDEF", "\xEF\xB7\xAF"},     {"U+FFFE", "\xEF\xBF\xBE"},
      {"U+FFFF", "\xEF\xBF\xBF"}, {"U+1FFFE", "\xF0\x9F\xBF\xBE"}, {"U+10FFFF", "\xF4\x8F\xBF\xBF"},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(c.name);
    ExpectRefused(Structured(Minimal({{"subject", std::string("x") + c.utf8}}).dump()), "subject", "noncharacter");
    ExpectRefused(Structured(Minimal({{"myext", c.utf8}}).dump()), "myext", "noncharacter");
    ExpectRefused(Structured(Minimal({{"id", c.utf8}}).dump()), "id", "noncharacter");
  }
  // The neighbours of the noncharacters, and characters beyond the BMP, are text.
  for (const char* ok : {"\xEF\xB7\x8F", "\xEF\xB7\xB0", "\xEF\xBF\xBD", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBD",
                         "\xC2\xA0", "caf\xC3\xA9"}) {
    SCOPED_TRACE(json(ok).dump());
    const CloudEvent e = Only(Structured(Minimal({{"subject", ok}, {"myext", ok}}).dump()));
    EXPECT_EQ(e.subject, ok);
  }
  ExpectRefused(Decode(Binary("ce-subject", "%EF%BF%BF"), ""), "subject", "noncharacter");
}

// spec.md §Type System, String: an unpaired surrogate ("\uDEAD") is not a String. In JSON it
// can only arrive as an escape, which the parser refuses; the refusal names the attribute. A
// paired escape is one character and passes.
TEST(CloudEventsConformance, StringAttributesRefuseUnpairedSurrogates) {
  const struct {
    const char* member;
    const char* field;
  } bad[] = {
      {R"("subject":"a\udead")", "subject"},
      {R"("myext":"\ud800x")", "myext"},
      {R"("myext":"\udc00\ud800")", "myext"},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(c.member);
    std::string body = Minimal().dump();
    body.insert(body.size() - 1, std::string(",") + c.member);
    ExpectRefused(Structured(body), c.field, "surrogate");
    const std::string batch = "[" + Minimal({{"id", "id-0"}}).dump() + "," + body + "]";
    ExpectRefused(Decode(kBatch, batch), std::string("[1].") + c.field, "surrogate");
  }
  std::string paired = Minimal().dump();
  paired.insert(paired.size() - 1, R"(,"subject":"\ud83d\ude00")");
  EXPECT_EQ(Only(Structured(paired)).subject, "\xF0\x9F\x98\x80");
}

// ---- Batch -----------------------------------------------------------------------------

// json-format.md §4 JSON Batch Format: a batch is an array of CloudEvents; one element that is
// not a valid event makes the batch invalid, named by its index.
TEST(CloudEventsConformance, ABatchIsValidOnlyWhenEveryElementIs) {
  const json ok = Minimal();
  const json ok2 = Minimal({{"id", "id-2"}});
  json no_type = Minimal({{"id", "id-3"}});
  no_type.erase("type");
  const struct {
    const char* name;
    json batch;
    const char* field;
  } bad[] = {
      {"element not an object", json::array({ok, 5, ok2}), "[1]"},
      {"element an array", json::array({ok, ok2, json::array()}), "[2]"},
      {"element without type", json::array({ok, ok2, ok, no_type}), "[3].type"},
      {"invalid attribute name", json::array({Minimal({{"Bad_Name", "x"}}), ok2}), "[0].Bad_Name"},
      {"specversion differs", json::array({ok, Minimal({{"id", "id-2"}, {"specversion", "0.3"}})}), "[1].specversion"},
      {"required null", json::array({ok, Minimal({{"source", nullptr}})}), "[1].source"},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(c.name);
    ExpectRefused(Decode(kBatch, c.batch.dump()), c.field, "refused whole");
  }
  // The problem counts the invalid elements.
  auto two = Decode(kBatch, json::array({1, ok, 2}).dump());
  ASSERT_FALSE(two);
  EXPECT_EQ(two.error().field, "[0]");
  EXPECT_NE(two.error().message.find("2 of 3"), std::string::npos) << two.error().message;

  auto d = Decode(kBatch, json::array({ok, ok2, Minimal({{"subject", nullptr}, {"id", "id-3"}})}).dump());
  ASSERT_TRUE(d) << d.error().message;
  ASSERT_EQ(d->events.size(), 3u);
  EXPECT_EQ(d->events[2].event->id, "id-3");
  EXPECT_FALSE(d->events[2].event->subject);
  // An empty batch holds no invalid element.
  auto empty = Decode(kBatch, "[]");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->events.empty());
}

}  // namespace
}  // namespace ccm::cloudevents
