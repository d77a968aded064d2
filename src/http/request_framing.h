#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "http/message.h"

namespace ccm::http {

// What a request may be before its handler runs. ServerOptions holds the values ccm uses.
struct RequestLimits {
  std::size_t body_limit = 0;        // larger bodies get 413
  std::size_t header_limit = 0;      // larger header blocks, chunk lines or trailer sections get 431
  std::size_t max_header_count = 0;  // more header fields get 431
};

// A request read whole and accepted.
struct ReadRequest {
  Request request;          // as handlers see it (path percent-decoded, query parsed, header names in lower case)
  unsigned version = 11;    // 10 for HTTP/1.0, 11 for HTTP/1.1
  bool keep_alive = true;   // whether the connection may carry another request after this one
};

// Reads the HTTP/1.1 requests of one connection from its bytes, and decides which are refused
// before any handler runs: the one place for ccm's framing rules. It does no I/O and is no
// coroutine: the server feeds it what it reads, and the fuzz target and the unit tests feed it
// bytes in any pieces, so all three run the same rules.
//
// A request is refused, with a problem+json answer after which the connection must close
// (nothing after a refused request can be trusted to start a request):
//   - 413 when its body is over `body_limit` (a Content-Length over it, or chunks adding up
//     to more);
//   - 431 when its header block (request line to the empty line) is over `header_limit`
//     bytes or has more than `max_header_count` fields, or when a chunk line or the trailer
//     section of a chunked body is over `header_limit` bytes;
//   - 400 "malformed HTTP request" for a NUL byte, a bare LF or an obs-fold (a line starting
//     with a space or a tab) in the header block; Content-Length together with
//     Transfer-Encoding; a Transfer-Encoding whose final coding is not chunked, or in an
//     HTTP/1.0 request; differing, signed or non-decimal Content-Length values; an HTTP/0.9
//     request line; a bad chunk; anything else Beast's parser refuses.
// So the bytes it holds back waiting for the end of a line never exceed `header_limit`.
// Trailer fields are read and dropped: they never become headers.
//
// Not thread-safe: one reader per connection, used by one thread at a time.
class RequestReader {
 public:
  enum class State {
    kReading,   // the current request needs more bytes
    kComplete,  // a whole request has been read: Take() it
    kRefused,   // the request is refused: send refusal() and close; the reader uses no more bytes
  };

  explicit RequestReader(RequestLimits limits);
  ~RequestReader();
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // Parses `bytes`, which must continue exactly where the bytes used so far ended (the bytes
  // received and not yet used, then any that came since). Returns how many it used: the caller
  // drops them and passes the rest again with whatever comes next. It stops at the end of the
  // current request, so the bytes of a pipelined next request stay unused until Take().
  // Uses nothing unless the state is kReading.
  std::size_t Put(std::string_view bytes);

  State state() const { return state_; }
  // Whether the current request's header block has been read and accepted (its body may still
  // be on its way).
  bool header_done() const;
  // The answer to send when the state is kRefused: 400, 413 or 431, problem+json.
  const Response& refusal() const { return refusal_; }
  // The complete request (state kComplete); the reader then reads the next one (kReading).
  ReadRequest Take();

 private:
  struct Parser;
  void Refuse(Response response);
  void Start();
  // After the header block is parsed: checks its framing and field count; false if refused.
  bool AcceptHeader();

  RequestLimits limits_;
  std::unique_ptr<Parser> parser_;  // Beast's parser for the current request
  State state_ = State::kReading;
  Response refusal_;
  std::size_t header_bytes_ = 0;   // of the current request's header block, used so far
  std::size_t header_checked_ = 0;  // bytes not used yet whose raw header check passed
  std::map<std::string, std::string> headers_;  // the header block's, once it is done
  std::size_t framing_run_ = 0;    // chunk-framing bytes used since the last body byte
  bool chunk_stalled_ = false;     // the last put stopped inside chunk framing, wanting more
};

}  // namespace ccm::http
