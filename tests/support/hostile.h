#pragma once

#include <string>

namespace ccm::testing {

// A CML topology of under 400 bytes whose aliases name aliases, nine deep: expanded, it holds
// 9^9 (387 million) copies of "lol" ("billion laughs").
inline std::string AliasBombLab() {
  std::string yaml = "nodes:\n  - id: n0\n    label: r1\n";
  yaml += "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (char c = 'b'; c <= 'i'; ++c) {
    const char prev = static_cast<char>(c - 1);
    std::string refs;
    for (int i = 0; i < 9; ++i) refs += std::string(i ? "," : "") + "*" + prev;
    yaml += std::string(1, c) + ": &" + c + " [" + refs + "]\n";
  }
  return yaml;
}

}  // namespace ccm::testing
