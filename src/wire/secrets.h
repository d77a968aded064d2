#pragma once

namespace ccm::wire {

// Whether the secrets of device access are written as they are (for the store, for the
// Grading Engine, for callers allowed to read them) or redacted: then every authentication
// property's value and every configuration member's value is kRedactedValue, while the scheme
// and the names stay, so a reader sees what is set but not what it is.
enum class Secrets {
  kShown,     // values written as they are
  kRedacted,  // values replaced by kRedactedValue
};
inline constexpr const char* kRedactedValue = "***";

}  // namespace ccm::wire
