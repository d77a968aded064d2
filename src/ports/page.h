#pragma once

#include <string>
#include <vector>

namespace ccm::ports {

// Keyset paging: `after` is the last id of the previous page ("" for the first page).
struct Page {
  int limit = 50;  // 1 to kMaxPageLimit: the API refuses any other (stores do not check it again)
  std::string after;
};
inline constexpr int kMaxPageLimit = 500;

template <typename T>
struct PageOf {
  std::vector<T> items;
  std::string next;  // pass as Page::after for the next page; empty on the last page
};

}  // namespace ccm::ports
