#pragma once

#include <string>

#include "domain/result.h"
#include "http/message.h"

namespace ccm::http {

// The one mapping from error codes to HTTP status: invalid_argument 400, not_found 404,
// conflict and failed_precondition 409, unavailable 503, internal 500, unauthenticated 401,
// permission_denied 403.
int StatusFor(ErrorCode code);

// An RFC 9457 problem+json response: type, title, status, detail, instance, and the
// offending `field` when there is one. A 503 carries `Retry-After: 5` (a caller may set
// another value).
Response ProblemResponse(int status, const std::string& title, const std::string& detail,
                         const std::string& instance, const std::string& field);
// The same for an Error, with its status from StatusFor.
Response ErrorResponse(const Error& error, const std::string& instance);

}  // namespace ccm::http
