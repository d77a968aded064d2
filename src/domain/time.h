#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ccm {

// A point in time, UTC, millisecond precision. The domain never reads a clock: callers pass
// the current time in (ports/clock.h `Clock`).
using Timestamp = std::chrono::sys_time<std::chrono::milliseconds>;

// "2026-11-27T01:46:23.123Z". Always UTC with a `Z` and three fraction digits.
std::string FormatRfc3339(Timestamp t);

// Parses an RFC 3339 date-time ("2026-11-27T01:46:23Z", with an optional fraction and a
// `Z` or numeric offset). Returns nullopt for anything else, including out-of-range fields.
std::optional<Timestamp> ParseRfc3339(std::string_view text);

inline std::int64_t ToUnixMillis(Timestamp t) { return t.time_since_epoch().count(); }
inline Timestamp FromUnixMillis(std::int64_t ms) { return Timestamp(std::chrono::milliseconds(ms)); }

}  // namespace ccm
