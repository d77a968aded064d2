#pragma once

#include <span>
#include <string>
#include <string_view>

#include "domain/result.h"
#include "http/message.h"

namespace ccm::http {

// The one mapping from error codes to HTTP status: invalid_argument 400, not_found 404,
// conflict and failed_precondition 409, unavailable 503, internal 500, unauthenticated 401,
// permission_denied 403.
int StatusFor(ErrorCode code);

// A kind of problem (RFC 9457): its type URI and title, the same wherever ccm answers with
// that status. The detail, and `code` for an Error, tell the cases of one kind apart.
struct ProblemKind {
  int status;
  const char* type;   // "urn:ccm:problem:not-found"
  const char* title;  // "Not found"
};

// Every kind ccm answers with, one per status: 400, 401, 403, 404, 405, 409, 413, 415, 422,
// 431, 500, 503.
std::span<const ProblemKind> ProblemKinds();
// The kind of `status`; a status not in the table gets the internal error's type and title.
const ProblemKind& ProblemKindOf(int status);

// An RFC 9457 problem+json response: type and title from ProblemKindOf(status), status,
// detail, instance, the offending `field` and the error's `code` (ErrorCode's name) when there
// are. A 503 leaves with Retry-After (the server adds 1 s to any that has none; a caller may
// set another).
Response ProblemResponse(int status, const std::string& detail, const std::string& instance,
                         const std::string& field, std::string_view code = {});
// The same for an Error, with its status from StatusFor and its `code`; an error of kind
// kUnsupportedMediaType is a 415 without a code.
Response ErrorResponse(const Error& error, const std::string& instance);

}  // namespace ccm::http
