// Fuzz target: the bytes of a connection through http::RequestReader, the framing rules the
// server applies before any handler runs (parser settings, limits, raw header checks, the
// conversion to http::Request). Each input is read four times: with ccm's default limits and
// with tight ones (so that 413 and 431 are reached), each fed whole and in pieces of sizes
// drawn from the input's hash.
//
// Invariants beyond "no crash", checked against the raw bytes by code independent of Beast:
//   - an accepted request's header block is at most the header limit, has at most the
//     maximum number of fields, no NUL, no bare LF, no obs-fold, and not both Content-Length
//     and Transfer-Encoding; with Transfer-Encoding it is HTTP/1.1 and ends in chunked;
//   - its body is at most the body limit and is exactly what its framing says: Content-Length
//     bytes, or the chunks decoded here, and the request ends where that framing ends (no
//     byte of it is left to be read as the next request, none of the next is taken);
//   - its headers are the header block's fields with their values, never trailer fields;
//   - a refused request gets 400, 413 or 431 as problem+json naming that status, and the
//     reader uses nothing after it;
//   - while a request is incomplete, the bytes held back never exceed the header limit;
//   - fed whole or in pieces, the same requests are accepted.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.h"
#include "http/request_framing.h"
#include "http/server.h"

namespace {

using ccm::http::ReadRequest;
using ccm::http::RequestLimits;
using ccm::http::RequestReader;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const std::size_t at = s.find(sep);
    out.push_back(Trim(s.substr(0, at)));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

// A header block read naively: the request line, then "name: value" lines up to the first
// empty line.
struct HeaderBlock {
  std::size_t size = 0;  // with the empty line that ends it
  std::string_view request_line;
  std::vector<std::pair<std::string, std::string_view>> fields;  // names in lower case
};

HeaderBlock ReadHeaderBlock(std::string_view raw) {
  HeaderBlock out;
  const std::size_t end = raw.find("\r\n\r\n");
  Check(end != std::string_view::npos);  // an accepted request has a header block
  out.size = end + 4;
  const std::string_view block = raw.substr(0, out.size);
  for (std::size_t i = 0; i < block.size(); ++i) {
    Check(block[i] != '\0');
    if (block[i] == '\n') Check(i > 0 && block[i - 1] == '\r');
    if (i > 0 && block[i - 1] == '\n' && i < block.size()) Check(block[i] != ' ' && block[i] != '\t');
  }
  std::size_t line_start = 0;
  for (;;) {
    const std::size_t eol = block.find("\r\n", line_start);
    const std::string_view line = block.substr(line_start, eol - line_start);
    line_start = eol + 2;
    if (line.empty()) break;
    if (out.request_line.empty()) {
      out.request_line = line;
      continue;
    }
    const std::size_t colon = line.find(':');
    Check(colon != std::string_view::npos && colon > 0);
    out.fields.emplace_back(LowerAscii(line.substr(0, colon)), Trim(line.substr(colon + 1)));
  }
  return out;
}

// The chunked body at the start of `in`, decoded leniently (chunk extensions and trailer
// fields skipped): false when it is not one. `consumed` is where it ends.
bool DecodeChunked(std::string_view in, std::string& body, std::size_t& consumed) {
  std::size_t p = 0;
  for (;;) {
    const std::size_t eol = in.find("\r\n", p);
    if (eol == std::string_view::npos) return false;
    std::uint64_t size = 0;
    std::size_t digits = 0;
    for (std::size_t i = p; i < eol && std::isxdigit(static_cast<unsigned char>(in[i])); ++i, ++digits) {
      if (size > (UINT64_MAX >> 4)) return false;
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(in[i])));
      size = size * 16 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    if (digits == 0) return false;
    p = eol + 2;
    if (size == 0) break;
    if (in.size() - p < size + 2) return false;
    body.append(in.substr(p, size));
    p += size;
    if (in.substr(p, 2) != "\r\n") return false;
    p += 2;
  }
  for (;;) {  // trailer fields, then the empty line
    const std::size_t eol = in.find("\r\n", p);
    if (eol == std::string_view::npos) return false;
    const bool empty = eol == p;
    p = eol + 2;
    if (empty) break;
  }
  consumed = p;
  return true;
}

// `raw` is exactly the bytes the reader used for `read`.
void CheckAccepted(std::string_view raw, const ReadRequest& read, const RequestLimits& limits) {
  const HeaderBlock header = ReadHeaderBlock(raw);
  Check(header.size <= limits.header_limit);
  Check(header.fields.size() <= limits.max_header_count);

  const std::string_view line = header.request_line;
  const std::size_t method_end = line.find(' ');
  Check(method_end != std::string_view::npos && line.substr(0, method_end) == read.request.method);
  Check(line.size() >= 9);
  const std::string_view version = line.substr(line.size() - 9);
  Check(version == " HTTP/1.1" || version == " HTTP/1.0");
  Check(read.version == (version == " HTTP/1.1" ? 11u : 10u));
  const std::string_view target = line.substr(method_end + 1, line.size() - 9 - method_end - 1);
  Check(read.request.path.size() <= target.substr(0, target.find('?')).size());

  std::vector<std::string_view> lengths, encodings;
  for (const auto& [name, value] : header.fields) {
    if (name == "content-length") lengths.push_back(value);
    if (name == "transfer-encoding") encodings.push_back(value);
  }
  Check(lengths.empty() || encodings.empty());
  const std::string_view after_header = raw.substr(header.size);
  const std::string& body = read.request.body;
  Check(body.size() <= limits.body_limit);
  if (!encodings.empty()) {
    Check(read.version == 11);
    std::string_view last_coding;  // empty list elements do not count (RFC 9110 section 5.6.1)
    for (const auto coding : Split(encodings.back(), ','))
      if (!coding.empty()) last_coding = coding;
    Check(LowerAscii(last_coding) == "chunked");
    std::string decoded;
    std::size_t consumed = 0;
    Check(DecodeChunked(after_header, decoded, consumed));
    Check(decoded == body && consumed == after_header.size());
  } else if (!lengths.empty()) {
    std::string length;
    for (const auto value : lengths) {
      for (const auto token : Split(value, ',')) {
        Check(!token.empty() && token.find_first_not_of("0123456789") == std::string_view::npos);
        const std::string digits(token.substr(std::min(token.find_first_not_of('0'), token.size() - 1)));
        Check(length.empty() || length == digits);
        length = digits;
      }
    }
    Check(std::to_string(body.size()) == length && after_header.size() == body.size());
  } else {
    Check(body.empty() && after_header.empty());
  }

  // The headers are the header block's fields, all of them, names in lower case.
  for (const auto& [name, value] : read.request.headers) {
    Check(name == LowerAscii(name));
    bool found = false;
    for (const auto& field : header.fields) found = found || field.first == name;
    Check(found);
  }
  // Each with the value of its last field in the block (none from a trailer).
  for (const auto& [name, value] : header.fields) Check(read.request.headers.count(name) == 1);
  std::map<std::string, std::string_view> last;
  for (const auto& [name, value] : header.fields) last[name] = value;
  for (const auto& [name, value] : last) Check(read.request.headers.at(name) == value);
}

void CheckRefused(RequestReader& reader) {
  const ccm::http::Response& refusal = reader.refusal();
  Check(refusal.status == 400 || refusal.status == 413 || refusal.status == 431);
  Check(refusal.content_type == "application/problem+json");
  const auto problem = nlohmann::json::parse(refusal.body, nullptr, false);
  Check(problem.is_object() && problem.value("status", 0) == refusal.status);
  Check(reader.Put("GET / HTTP/1.1\r\n\r\n") == 0 && reader.state() == RequestReader::State::kRefused);
}

// What a reading of the input came to: each accepted request in a comparable form (with
// its length in bytes), and whether one was refused. Fed in pieces, a malformed request may
// be refused later than fed whole (Beast waits for the end of the header block before it
// parses a field line again), or not before the input ends: the accepted requests must be
// the same, the refusal need not.
struct Outcome {
  std::vector<std::string> requests;
  bool refused = false;
};

std::string Digest(const ReadRequest& read) {
  const auto& r = read.request;
  std::string out = r.method + '\n' + r.path + '\n' + std::to_string(read.version) + (read.keep_alive ? "k" : "c");
  for (const auto& [k, v] : r.query) out += '\n' + k + '=' + v;
  for (const auto& [k, v] : r.headers) out += '\n' + k + ':' + v;
  return out + '\n' + r.body;
}

std::uint64_t SplitMix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Feeds `input` to a reader as a connection would: whole when `seed` is 0, else in pieces of
// sizes drawn from `seed` (mostly a few bytes, sometimes hundreds).
Outcome Read(std::string_view input, const RequestLimits& limits, std::uint64_t seed) {
  RequestReader reader(limits);
  Outcome out;
  std::size_t fed = 0;            // bytes of the input received so far
  std::size_t used_total = 0;     // bytes of the input used so far
  std::size_t request_start = 0;  // where the current request starts in the input
  while (fed < input.size()) {
    std::size_t piece = input.size();
    if (seed != 0) {
      const std::uint64_t r = SplitMix(seed);
      piece = 1 + static_cast<std::size_t>(r % 8 == 0 ? (r >> 8) % 512 : (r >> 8) % 8);
    }
    fed += std::min(piece, input.size() - fed);
    for (;;) {
      const std::string_view pending = input.substr(used_total, fed - used_total);  // received, not used
      const std::size_t used = reader.Put(pending);
      Check(used <= pending.size());
      used_total += used;
      if (reader.state() == RequestReader::State::kComplete) {
        const ReadRequest read = reader.Take();
        Check(reader.state() == RequestReader::State::kReading && !reader.header_done());
        CheckAccepted(input.substr(request_start, used_total - request_start), read, limits);
        out.requests.push_back(std::to_string(used_total - request_start) + '\n' + Digest(read));
        request_start = used_total;
        continue;
      }
      if (reader.state() == RequestReader::State::kRefused) {
        CheckRefused(reader);
        out.refused = true;
        return out;
      }
      Check(fed - used_total <= limits.header_limit);  // bounded: never a buffer without end
      break;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const ccm::http::ServerOptions defaults;
  const RequestLimits ccm_limits{defaults.body_limit, defaults.header_limit, defaults.max_header_count};
  const RequestLimits tight{64, 256, 8};
  std::uint64_t seed = 1469598103934665603ULL;  // FNV-1a of the input picks the pieces
  for (const char c : input) seed = (seed ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  seed |= 1;
  for (const auto& limits : {ccm_limits, tight}) {
    const Outcome whole = Read(input, limits, 0);
    Check(whole.requests == Read(input, limits, seed).requests);
  }
  return 0;
}
