#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "domain/result.h"
#include "domain/time.h"

// What the `ccm` commands read and print: JSON and YAML documents, aligned tables. Pure but
// for the file and stdin reads of LoadDocument; no network.
namespace ccm::main {

// `json` as a YAML document that reads back as the same JSON: objects as mappings, arrays
// as sequences, null as `null`; a string that a YAML reader would take for something else
// (a number, a boolean, null, a date, empty, or one with YAML's special characters) is
// quoted.
std::string ToYaml(const nlohmann::json& json);

// A YAML (1.2 core schema) or JSON document as JSON: quoted scalars are strings; plain
// ones null (`null`, `~`, empty), booleans (`true`, `false`), integers, finite numbers, or
// else strings. Errors: invalid_argument saying where it does not parse; for YAML, one
// with aliases to itself or anchors is read as YAML reads it.
Result<nlohmann::json> ParseDocument(const std::string& text);

// ParseDocument of the file at `path`, or of stdin for "-". Errors: invalid_argument when it
// cannot be read or does not parse, naming the file; or when it is not one object.
Result<nlohmann::json> LoadDocument(const std::string& path);

// Rows under a header, printed with the columns aligned (two spaces apart); an empty cell
// prints as "-".
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  void Print(std::ostream& out) const;
};

// How long ago `rfc3339` was, from `now`: "45s", "12m", "3h", "9d" ("" when it does not parse).
std::string Age(const std::string& rfc3339, Timestamp now);

// Prints `document` as `format` says: "json" (indented by 2), "yaml" (ToYaml), else calls
// `table` (which prints the table form).
void PrintDocument(std::ostream& out, const std::string& format, const nlohmann::json& document,
                   const std::function<void()>& table);

// A JSON value as a table cell: strings as they are, null as "", numbers as JSON writes them.
std::string Cell(const nlohmann::json& value);

}  // namespace ccm::main
