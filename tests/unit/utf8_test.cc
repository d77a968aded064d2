// The one UTF-8 check, on the cases of RFC 3629 and of Markus Kuhn's UTF-8 decoder stress test:
// boundaries, stray and missing continuation bytes, impossible bytes, overlong forms,
// surrogates and code points past U+10FFFF.
#include "domain/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace ccm::domain {
namespace {

constexpr auto npos = std::string_view::npos;

struct Case {
  const char* name;
  std::string bytes;
  std::size_t first_invalid;  // npos when valid
};

TEST(Utf8, AcceptsWellFormedTextUpToTheBoundaries) {
  const Case cases[] = {
      {"empty", "", npos},
      {"ascii", "hello, world", npos},
      {"nul is well-formed", std::string("a\0b", 3), npos},
      {"greek kosme", "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", npos},
      {"first 2-byte U+0080", "\xC2\x80", npos},
      {"first 3-byte U+0800", "\xE0\xA0\x80", npos},
      {"first 4-byte U+10000", "\xF0\x90\x80\x80", npos},
      {"last 1-byte U+007F", "\x7F", npos},
      {"last 2-byte U+07FF", "\xDF\xBF", npos},
      {"last 3-byte U+FFFF", "\xEF\xBF\xBF", npos},
      {"last before surrogates U+D7FF", "\xED\x9F\xBF", npos},
      {"first after surrogates U+E000", "\xEE\x80\x80", npos},
      {"U+FFFD", "\xEF\xBF\xBD", npos},
      {"noncharacter U+FFFE is well-formed", "\xEF\xBF\xBE", npos},
      {"last code point U+10FFFF", "\xF4\x8F\xBF\xBF", npos},
      {"mixed", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", npos},
  };
  for (const auto& c : cases) EXPECT_EQ(FirstInvalidUtf8(c.bytes), c.first_invalid) << c.name;
}

TEST(Utf8, RefusesEveryMalformedSequenceAtItsFirstByte) {
  const Case cases[] = {
      // Continuation bytes with no lead.
      {"lone continuation 80", "\x80", 0},
      {"lone continuation BF", "a\xBF", 1},
      {"two continuations", "\x80\xBF", 0},
      // Lead bytes with too few continuations, alone, followed by a space, or at the end.
      {"2-byte lead alone", "\xC3", 0},
      {"2-byte lead then space", "\xC3 ", 0},
      {"3-byte lead, 1 continuation", "x\xE2\x82", 1},
      {"4-byte lead, 2 continuations", "\xF0\x9F\x98", 0},
      {"3-byte lead, ascii inside", "\xE2\x41\x82", 0},
      {"4-byte lead, last not continuation", "\xF0\x9F\x98\x41", 0},
      // Bytes that never appear in UTF-8.
      {"FE", "\xFE", 0},
      {"FF", "\xFF", 0},
      {"F5 (past U+10FFFF)", "\xF5\x80\x80\x80", 0},
      {"F8 (5-byte form)", "\xF8\x88\x80\x80\x80", 0},
      {"FC (6-byte form)", "\xFC\x84\x80\x80\x80\x80", 0},
      // Overlong forms: '/' and NUL in more bytes than they need.
      {"overlong / in 2", "\xC0\xAF", 0},
      {"overlong / in 3", "\xE0\x80\xAF", 0},
      {"overlong / in 4", "\xF0\x80\x80\xAF", 0},
      {"overlong NUL in 2", "\xC0\x80", 0},
      {"overlong NUL in 3", "\xE0\x80\x80", 0},
      {"largest overlong 2 (U+007F)", "\xC1\xBF", 0},
      {"largest overlong 3 (U+07FF)", "\xE0\x9F\xBF", 0},
      {"largest overlong 4 (U+FFFF)", "\xF0\x8F\xBF\xBF", 0},
      // UTF-16 surrogates, single and paired.
      {"U+D800", "\xED\xA0\x80", 0},
      {"U+DB7F", "\xED\xAD\xBF", 0},
      {"U+DC00", "\xED\xB0\x80", 0},
      {"U+DFFF", "ok\xED\xBF\xBF", 2},
      {"pair U+D800 U+DC00", "\xED\xA0\x80\xED\xB0\x80", 0},
      // Past the last code point.
      {"U+110000", "\xF4\x90\x80\x80", 0},
      {"U+13FFFF", "\xF4\xBF\xBF\xBF", 0},
      // After valid text, the offset of the bad sequence.
      {"valid then overlong", "caf\xC3\xA9\xC0\xAF", 5},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(FirstInvalidUtf8(c.bytes), c.first_invalid) << c.name;
    EXPECT_FALSE(IsValidUtf8(c.bytes)) << c.name;
  }
}

TEST(Utf8, ControlCharactersAreC0DelAndC1) {
  EXPECT_FALSE(HasControlCharacter("plain text, caf\xC3\xA9 \xE2\x82\xAC"));
  EXPECT_FALSE(HasControlCharacter("\xC2\xA0"));  // U+00A0 no-break space: not a control
  EXPECT_TRUE(HasControlCharacter(std::string("a\0b", 3)));
  EXPECT_TRUE(HasControlCharacter("tab\there"));
  EXPECT_TRUE(HasControlCharacter("line\n"));
  EXPECT_TRUE(HasControlCharacter("\x1F"));
  EXPECT_TRUE(HasControlCharacter("del\x7F"));
  EXPECT_TRUE(HasControlCharacter("\xC2\x80"));  // U+0080
  EXPECT_TRUE(HasControlCharacter("c1 \xC2\x9F"));  // U+009F
}

}  // namespace
}  // namespace ccm::domain
