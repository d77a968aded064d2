// The reference for ccm's durable transitions on SQLite (bench/compare.sh, pair "sqlite"): one
// writer doing raw single-row transactions, with the settings ccm's store uses (WAL,
// synchronous=FULL). A table of --rows rows, each with a body of --row-bytes bytes (bench/
// compare.sh passes the average size of a seeded instance row), is filled, then for --seconds
// each transaction updates one row (round robin) and commits: BEGIN IMMEDIATE, one prepared
// UPDATE, COMMIT, so each one is its own fsync. Prints one line:
//   sqlite reference: N transactions in S s: R transactions/s, p50 X ms, p99 Y ms
#include <CLI/CLI.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Fail(sqlite3* db, const char* what) {
  std::fprintf(stderr, "sqlite reference: %s: %s\n", what, db ? sqlite3_errmsg(db) : "out of memory");
  std::exit(1);
}

void Exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) Fail(db, sql);
}

sqlite3_stmt* Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) Fail(db, sql);
  return stmt;
}

// Runs a prepared statement that returns no row, and resets it for the next use.
void Step(sqlite3* db, sqlite3_stmt* stmt) {
  if (sqlite3_step(stmt) != SQLITE_DONE) Fail(db, sqlite3_sql(stmt));
  sqlite3_reset(stmt);
}

std::string RowId(int n) {
  char id[40];
  std::snprintf(id, sizeof id, "0190f000-0000-7000-8000-%012d", n);
  return id;
}

// A body of `bytes` bytes that differs with `n`, so that each update writes new content.
std::string Body(int bytes, long n) {
  std::string body = "{\"n\":" + std::to_string(n) + ",\"pad\":\"";
  body.resize(static_cast<size_t>(std::max(bytes - 2, static_cast<int>(body.size()))), 'x');
  return body + "\"}";
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"One writer doing raw single-row SQLite transactions, WAL and synchronous=FULL"};
  std::string path;
  int rows = 6400, row_bytes = 1500;
  double seconds = 20;
  cli.add_option("--db", path, "SQLite file to create (it must not exist)")->required();
  cli.add_option("--rows", rows, "Rows in the table")->check(CLI::Range(1, 10'000'000));
  cli.add_option("--row-bytes", row_bytes, "Bytes in each row's body")->check(CLI::Range(16, 10'000'000));
  cli.add_option("--seconds", seconds, "How long to update rows")->check(CLI::PositiveNumber);
  CLI11_PARSE(cli, argc, argv);

  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK)
    Fail(db, "open");
  Exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
  Exec(db, "CREATE TABLE rows (id TEXT PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL)");

  // The fill is one transaction: it is set-up, not part of the figure.
  sqlite3_stmt* insert = Prepare(db, "INSERT INTO rows (id, version, body) VALUES (?, 1, ?)");
  Exec(db, "BEGIN IMMEDIATE");
  for (int n = 0; n < rows; ++n) {
    const std::string id = RowId(n), body = Body(row_bytes, n);
    sqlite3_bind_text(insert, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 2, body.c_str(), -1, SQLITE_TRANSIENT);
    Step(db, insert);
  }
  Exec(db, "COMMIT");
  sqlite3_finalize(insert);

  std::vector<std::string> ids;
  for (int n = 0; n < rows; ++n) ids.push_back(RowId(n));
  sqlite3_stmt* begin = Prepare(db, "BEGIN IMMEDIATE");
  sqlite3_stmt* update = Prepare(db, "UPDATE rows SET version = version + 1, body = ? WHERE id = ?");
  sqlite3_stmt* commit = Prepare(db, "COMMIT");
  std::vector<double> ms;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  long done = 0;
  for (auto now = start; now < end; ++done) {
    const std::string body = Body(row_bytes, done);
    const std::string& id = ids[static_cast<size_t>(done % rows)];
    Step(db, begin);
    sqlite3_bind_text(update, 1, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
    sqlite3_bind_text(update, 2, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
    Step(db, update);
    if (sqlite3_changes(db) != 1) Fail(db, "the update changed no row");
    Step(db, commit);
    const auto after = Clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(after - now).count());
    now = after;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double p50 = Percentile(ms, 0.5), p99 = Percentile(ms, 0.99);
  std::printf("sqlite reference: %ld transactions in %.2f s: %.0f transactions/s, p50 %.3f ms, p99 %.3f ms\n", done,
              elapsed, static_cast<double>(done) / elapsed, p50, p99);
  sqlite3_finalize(begin);
  sqlite3_finalize(update);
  sqlite3_finalize(commit);
  sqlite3_close_v2(db);
  return 0;
}
