#include "support/db_snapshot.h"

#include <sqlite3.h>

namespace ccm::testing {

std::string DbSnapshot(const std::string& db_path) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  std::string out;
  for (const char* sql : {"SELECT id, version, body FROM instances ORDER BY id",
                          "SELECT instance_id, n, entry FROM instance_history ORDER BY instance_id, n",
                          "SELECT id, version, body FROM workers ORDER BY id",
                          "SELECT id, version, deleted FROM definitions ORDER BY id, version",
                          "SELECT seq, id, state FROM outbox ORDER BY seq",
                          "SELECT source, id FROM processed_events ORDER BY source, id"}) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
    while (sqlite3_step(s) == SQLITE_ROW)
      for (int c = 0; c < sqlite3_column_count(s); ++c) {
        const auto* t = sqlite3_column_text(s, c);
        out += t ? reinterpret_cast<const char*>(t) : "NULL";
        out += '|';
      }
    sqlite3_finalize(s);
    out += '\n';
  }
  sqlite3_close(db);
  return out;
}

int OutboxCount(const std::string& db_path, const std::string& type) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM outbox WHERE type = ?1", -1, &s, nullptr);
  sqlite3_bind_text(s, 1, type.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_step(s);
  const int n = sqlite3_column_int(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return n;
}

}  // namespace ccm::testing
