// W3C Trace Context (Recommendation, 23 November 2021), section numbers as in its text.
#include "trace/trace_context.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace ccm::trace {
namespace {

constexpr const char* kExample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContext, ParsesTheSpecsExample) {  // 3.2.2
  auto c = Parse(kExample);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(c->span_id, "00f067aa0ba902b7");
  EXPECT_EQ(c->flags, 0x01);
  EXPECT_TRUE(c->sampled());
  EXPECT_EQ(c->Format(), kExample);
  EXPECT_FALSE(Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")->sampled());
}

TEST(TraceContext, RefusesWhatTheGrammarDoesNotAllow) {  // 3.2.2.1-3.2.2.5
  for (const char* bad : {
           "",                                                          // nothing
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",      // no flags
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    // short flags
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",   // upper-case hex (HEXDIGLC)
           "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",   // dashes misplaced
           "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",   // not '-'
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",   // not hex
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // all-zero trace-id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // all-zero parent-id
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff is invalid
           "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version not hex
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",  // version 00 is exactly 55
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
       }) {
    EXPECT_FALSE(Parse(bad)) << bad;
  }
}

TEST(TraceContext, ReadsALaterVersionByItsFirstFourParts) {  // 4.3 (versioning of traceparent)
  auto c = Parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(c->Format(), kExample);  // passed on as the version this code knows
  EXPECT_TRUE(Parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  // The fifth part must be introduced by '-'.
  EXPECT_FALSE(Parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what"));
}

TEST(TraceContext, AChildKeepsTheTraceWithANewSpan) {
  const TraceContext parent = *Parse(kExample, "congo=t61rcWkgMzE");
  std::set<std::string> spans;
  for (int i = 0; i < 100; ++i) {
    const TraceContext child = parent.Child();
    EXPECT_EQ(child.trace_id, parent.trace_id);
    EXPECT_EQ(child.state, "congo=t61rcWkgMzE");
    EXPECT_TRUE(child.sampled());
    EXPECT_TRUE(Parse(child.Format())) << child.Format();
    spans.insert(child.span_id);
  }
  EXPECT_EQ(spans.size(), 100u);
  EXPECT_EQ(spans.count(parent.span_id), 0u);
  // Flags other than sampled are not passed on: version 00 defines none.
  EXPECT_EQ(Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff")->Child().flags, 0x01);
}

TEST(TraceContext, ARootIsAValidNewTrace) {
  const TraceContext a = NewRoot(), b = NewRoot();
  EXPECT_NE(a.trace_id, b.trace_id);
  ASSERT_TRUE(Parse(a.Format()));
  EXPECT_EQ(*Parse(a.Format()), a);
  EXPECT_TRUE(a.sampled());
}

TEST(TraceState, KeepsValidMembersWithoutSurroundingSpace) {  // 3.3.1
  EXPECT_EQ(ParseState("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  EXPECT_EQ(ParseState(" rojo=1 ,\t, congo=2 "), "rojo=1,congo=2");  // OWS and empty members
  EXPECT_EQ(ParseState("fw529a3039@dt=abc,1tenant@vendor=x"), "fw529a3039@dt=abc,1tenant@vendor=x");  // multi-tenant keys
  EXPECT_EQ(ParseState(""), "");
}

TEST(TraceState, DropsAnInvalidHeaderWhole) {  // 3.3.1.3.1, 3.3.1.3.2
  for (const char* bad : {"Rojo=1",                 // key starts with an upper-case letter
                          "rojo",                   // no '='
                          "rojo=",                  // empty value
                          "rojo=a=b",               // '=' in the value
                          "rojo=1,rojo=2",          // a key twice
                          "@vendor=1",              // empty tenant
                          "tenant@=1",              // empty system
                          "tenant@vendorvendorven=1"}) {  // system id longer than 14
    EXPECT_EQ(ParseState(bad), "") << bad;
  }
  // The traceparent stays valid when its tracestate is not.
  ASSERT_TRUE(Parse(kExample, "rojo"));
  EXPECT_EQ(Parse(kExample, "rojo")->state, "");
}

TEST(TraceState, AtMost32Members) {  // 3.3.1.1
  std::string state;
  for (int i = 0; i < 32; ++i) state += (i ? ",k" : "k") + std::to_string(i) + "=v";
  EXPECT_EQ(ParseState(state), state);
  EXPECT_EQ(ParseState(state + ",k32=v"), "");
}

TEST(TraceState, CutToFiveHundredTwelveCharactersLongMembersFirst) {  // 3.3.1.5
  const std::string long_member = "big=" + std::string(200, 'x');
  std::string state = "a=" + std::string(150, 'y') + "," + long_member;
  for (int i = 0; i < 3; ++i) state += ",k" + std::to_string(i) + "=" + std::string(100, 'z');
  const std::string cut = ParseState(state);
  EXPECT_LE(cut.size(), 512u);
  EXPECT_EQ(cut.find("big="), std::string::npos);  // the longer-than-128 ones went first
  EXPECT_NE(cut.find("k2="), std::string::npos);   // and that was enough
}

TEST(TraceScope, SetsAndRestoresTheCurrentTrace) {
  EXPECT_EQ(Current(), nullptr);
  {
    Scope outer(*Parse(kExample));
    ASSERT_NE(Current(), nullptr);
    EXPECT_EQ(Current()->span_id, "00f067aa0ba902b7");
    {
      Scope inner(NewRoot());
      EXPECT_NE(Current()->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
      Scope none(std::optional<TraceContext>{});
      EXPECT_NE(Current()->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");  // nullopt changes nothing
    }
    EXPECT_EQ(Current()->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  }
  EXPECT_EQ(Current(), nullptr);
}

}  // namespace
}  // namespace ccm::trace
