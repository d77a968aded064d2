#pragma once

#include <string>

namespace ccm::testing {

// Every row of every table of a ccm SQLite file, as text, so that a test can prove that a
// refused request wrote nothing.
std::string DbSnapshot(const std::string& db_path);

// How many outbox events of `type` the file holds.
int OutboxCount(const std::string& db_path, const std::string& type);

}  // namespace ccm::testing
