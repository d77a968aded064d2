#include "domain/time.h"

#include <gtest/gtest.h>

namespace ccm {
namespace {

TEST(Rfc3339, FormatsUtcWithMillis) {
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(0)), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(1795743983123)), "2026-11-27T01:46:23.123Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(-1)), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(253402300799999)), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(951782400007)), "2000-02-29T00:00:00.007Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(-62135596800000 + 86'400'000LL * 40)), "0001-02-10T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(-62167219200000)), "0000-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(-62167219200001)), "-001-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatRfc3339(FromUnixMillis(253402300800000)), "10000-01-01T00:00:00.000Z");
}

// A formatted time reads back as the same millisecond: times sampled every three days and an
// hour, a second and 7 ms apart, from 1968 to 2029.
TEST(Rfc3339, EveryFormattedTimeParsesBack) {
  for (std::int64_t ms = -86'400'000LL * 400; ms < 86'400'000LL * 365 * 60; ms += 86'400'000LL * 3 + 3'601'007)
    ASSERT_EQ(ParseRfc3339(FormatRfc3339(FromUnixMillis(ms))), FromUnixMillis(ms)) << FormatRfc3339(FromUnixMillis(ms));
}

TEST(Rfc3339, ParsesWhatItFormatsAndOffsets) {
  EXPECT_EQ(ParseRfc3339("2026-11-27T01:46:23.123Z"), FromUnixMillis(1795743983123));
  EXPECT_EQ(ParseRfc3339("2026-11-27T01:46:23Z"), FromUnixMillis(1795743983000));
  EXPECT_EQ(ParseRfc3339("2026-11-27T02:46:23+01:00"), FromUnixMillis(1795743983000));
  EXPECT_EQ(ParseRfc3339("2026-11-26T20:46:23.5-05:00"), FromUnixMillis(1795743983500));
  EXPECT_EQ(ParseRfc3339("2026-11-27t01:46:23.123456z"), FromUnixMillis(1795743983123));
}

TEST(Rfc3339, RefusesEverythingElse) {
  for (const char* bad : {"", "2026-11-27", "2026-11-27 01:46:23Z", "2026-11-27T01:46:23", "2026-13-01T00:00:00Z",
                          "2026-02-30T00:00:00Z", "2026-11-27T24:00:00Z", "2026-11-27T01:46:23.Z",
                          "2026-11-27T01:46:23+0100", "2026-11-27T01:46:23Zjunk", "yesterday"})
    EXPECT_FALSE(ParseRfc3339(bad)) << bad;
}

}  // namespace
}  // namespace ccm
