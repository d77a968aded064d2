#include "http/request_framing.h"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "http/problem.h"

namespace ccm::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;

using BeastParser = bhttp::request_parser<bhttp::string_body>;

struct RequestReader::Parser {
  std::optional<BeastParser> beast;
};

namespace {

// "0\r\n\r\n": the last chunk and the empty trailer section.
constexpr std::size_t kShortestChunkedEnd = 5;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view View(beast::string_view s) { return {s.data(), s.size()}; }

// The header block's fields as handlers see them: names in lower case, the last of several
// with the same name winning, but for the W3C Trace Context fields: several `tracestate`
// lines are one list, joined with commas, and a repeated `traceparent` is left unreadable
// (the two values joined), so that the request starts a new trace instead of picking one.
// Taken when the block is done, so that trailer fields (Beast adds them to the same list,
// next to any field of the same name) never join them.
std::map<std::string, std::string> HeaderMap(const bhttp::fields& fields) {
  std::map<std::string, std::string> out;
  for (const auto& field : fields) {
    std::string name = Lower(View(field.name_string()));
    std::string value(View(field.value()));
    auto [it, fresh] = out.try_emplace(std::move(name), value);
    if (fresh) continue;
    if (it->first == "tracestate" || it->first == "traceparent")
      it->second += "," + value;
    else
      it->second = std::move(value);
  }
  return out;
}

// Why the raw bytes of a header block break HTTP/1.1 framing in a way Beast lets through or
// waits on for ever, or "" when they do not: a NUL byte, a line ended by a bare LF, or an
// obs-fold (Beast joins a folded line to the one before, which a proxy in front of ccm may
// not do the same way; RFC 9112 section 5.2 lets a server refuse it instead). `bytes` starts
// at the start of a line (Beast uses whole lines of a header block), the request line when
// `request_line`; the check starts at `from`, a line start before which the bytes are known
// clean, and stops at the empty line that ends the block, so that the body is not looked at.
// On "", `from` is left at the start of the first line not yet ended (or of that empty
// line), so that a client sending its header a byte at a time costs linear time, not square.
std::string MalformedHeaderBytes(std::string_view bytes, std::size_t& from, bool request_line) {
  std::size_t line = from;
  for (std::size_t i = from; i < bytes.size(); ++i) {
    if (bytes[i] == '\0') return "NUL byte in the header block";
    if (i == line && !(request_line && line == 0) && (bytes[i] == ' ' || bytes[i] == '\t'))
      return "obs-fold (a header line starting with whitespace)";
    if (bytes[i] != '\n') continue;
    if (i == line || bytes[i - 1] != '\r') return "line ending in a bare LF (CRLF is required)";
    if (i == line + 1) break;  // CRLF alone: the end of the header block
    line = i + 1;
  }
  from = line;
  return "";
}

// Why a parsed request header has framing that Beast accepts but that would let the client
// and ccm disagree on where the body ends, or "". Beast itself refuses Content-Length with
// chunked, differing Content-Length values, and lengths that are not plain decimal numbers.
std::string MalformedFraming(const BeastParser& parser) {
  const auto& req = parser.get();
  if (req.find(bhttp::field::transfer_encoding) == req.end()) return "";
  if (req.find(bhttp::field::content_length) != req.end()) return "Content-Length together with Transfer-Encoding";
  if (req.version() < 11) return "Transfer-Encoding in an HTTP/1.0 request";
  if (!parser.chunked()) return "Transfer-Encoding whose final coding is not chunked";
  return "";
}

Response HeaderTooLarge(std::size_t limit) {
  return ProblemResponse(431, "request header block is over the limit of " + std::to_string(limit) + " bytes", "",
                         "headers");
}

Response ChunkFramingTooLarge(std::size_t limit) {
  return ProblemResponse(431, "a chunk line or the trailer section of the chunked body is over the limit of " +
                             std::to_string(limit) + " bytes",
                         "", "body");
}

Response Malformed(const std::string& why) {
  return ProblemResponse(400, "malformed HTTP request: " + why, "", "");
}

// What ccm answers when Beast's parser fails: every failure is the client's, since the parser
// only ever sees bytes the client sent.
Response ParseFailure(const beast::error_code& ec, const RequestLimits& limits) {
  if (ec == bhttp::error::body_limit)
    return ProblemResponse(413, "request body is over the limit of " + std::to_string(limits.body_limit) + " bytes", "",
                           "body");
  if (ec == bhttp::error::header_limit) return HeaderTooLarge(limits.header_limit);
  return Malformed(ec.message());
}

}  // namespace

RequestReader::RequestReader(RequestLimits limits) : limits_(limits), parser_(std::make_unique<Parser>()) { Start(); }

RequestReader::~RequestReader() = default;

void RequestReader::Start() {
  auto& parser = parser_->beast.emplace();
  parser.body_limit(limits_.body_limit);
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits_.header_limit, UINT32_MAX)));
  state_ = State::kReading;
  header_bytes_ = 0;
  headers_.clear();
  header_checked_ = 0;
  framing_run_ = 0;
  chunk_stalled_ = false;
}

bool RequestReader::header_done() const { return parser_->beast->is_header_done(); }

void RequestReader::Refuse(Response response) {
  refusal_ = std::move(response);
  state_ = State::kRefused;
}

bool RequestReader::AcceptHeader() {
  const BeastParser& parser = *parser_->beast;
  if (const std::string why = MalformedFraming(parser); !why.empty()) {
    Refuse(Malformed(why));
    return false;
  }
  const auto& fields = parser.get().base();
  if (static_cast<std::size_t>(std::distance(fields.begin(), fields.end())) > limits_.max_header_count) {
    Refuse(ProblemResponse(431, "more than " + std::to_string(limits_.max_header_count) + " header fields", "",
                           "headers"));
    return false;
  }
  headers_ = HeaderMap(fields);
  return true;
}

std::size_t RequestReader::Put(std::string_view bytes) {
  BeastParser& parser = *parser_->beast;
  std::size_t used = 0;
  // Beast parses one piece per call (not eager): a header block, a chunk line with the CRLF
  // before it, some body bytes, or the last chunk with the trailer section. Each piece is
  // checked as it goes by.
  while (state_ == State::kReading && used < bytes.size()) {
    const std::string_view rest = bytes.substr(used);
    const bool in_header = !parser.is_header_done();
    if (in_header) {
      if (const std::string why = MalformedHeaderBytes(rest, header_checked_, header_bytes_ == 0); !why.empty()) {
        Refuse(Malformed(why));
        break;
      }
    }
    // Back in chunk framing after a stall, Beast 1.74 takes (and asserts, where assertions
    // are on) at least 5 bytes, the shortest end of a chunked body ("0\r\n\r\n"); every valid
    // continuation has them, so fewer are only waited on.
    if (!in_header && chunk_stalled_ && rest.size() < kShortestChunkedEnd) break;
    const std::size_t body_before = parser.get().body().size();
    beast::error_code ec;
    const std::size_t n = parser.put(boost::asio::const_buffer(rest.data(), rest.size()), ec);
    used += n;
    const bool need_more = ec == bhttp::error::need_more;
    if (ec && !need_more) {
      Refuse(ParseFailure(ec, limits_));
      break;
    }
    // Waiting for the end of a line, Beast holds back every byte not used yet: those count
    // against the limit as well, so that a client cannot make ccm buffer without bound.
    const bool stalled = need_more || n == 0;
    chunk_stalled_ = !in_header && need_more;
    const std::size_t waiting = stalled ? rest.size() - n : 0;
    if (in_header) {
      header_bytes_ += n;
      header_checked_ -= std::min(header_checked_, n);  // Beast uses whole lines, checked ones
      if (header_bytes_ + waiting > limits_.header_limit) {
        Refuse(HeaderTooLarge(limits_.header_limit));
        break;
      }
      if (parser.is_header_done() && !AcceptHeader()) break;
    } else if (parser.get().body().size() == body_before) {
      framing_run_ += n;
      if (framing_run_ + waiting > limits_.header_limit) {
        Refuse(ChunkFramingTooLarge(limits_.header_limit));
        break;
      }
    } else {
      framing_run_ = 0;
    }
    if (parser.is_done()) {
      state_ = State::kComplete;
      break;
    }
    if (stalled) break;
  }
  return used;
}

ReadRequest RequestReader::Take() {
  auto message = parser_->beast->release();
  ReadRequest out;
  out.version = message.version();
  out.keep_alive = message.keep_alive();
  Request& r = out.request;
  r.method = std::string(View(message.method_string()));
  const std::string_view target = View(message.target());
  const size_t q = target.find('?');
  r.raw_path = std::string(target.substr(0, q));
  r.path = PercentDecode(r.raw_path, false);
  if (q != std::string_view::npos) r.query = ParseQuery(target.substr(q + 1));
  r.headers = std::move(headers_);
  r.body = std::move(message.body());
  Start();
  return out;
}

}  // namespace ccm::http
