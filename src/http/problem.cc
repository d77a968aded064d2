#include "http/problem.h"

#include <nlohmann/json.hpp>

namespace ccm::http {

int StatusFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return 400;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kConflict: return 409;
    case ErrorCode::kFailedPrecondition: return 409;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kInternal: return 500;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kPermissionDenied: return 403;
  }
  return 500;
}

namespace {

const char* TitleFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "Invalid request";
    case ErrorCode::kNotFound: return "Not found";
    case ErrorCode::kConflict: return "Conflict";
    case ErrorCode::kFailedPrecondition: return "Precondition failed";
    case ErrorCode::kUnavailable: return "Service unavailable";
    case ErrorCode::kInternal: return "Internal error";
    case ErrorCode::kUnauthenticated: return "Unauthorized";
    case ErrorCode::kPermissionDenied: return "Forbidden";
  }
  return "Internal error";
}

std::string TypeFor(int status) {
  switch (status) {
    case 400: return "urn:ccm:problem:invalid-argument";
    case 401: return "urn:ccm:problem:unauthenticated";
    case 403: return "urn:ccm:problem:forbidden";
    case 404: return "urn:ccm:problem:not-found";
    case 405: return "urn:ccm:problem:method-not-allowed";
    case 409: return "urn:ccm:problem:conflict";
    case 413: return "urn:ccm:problem:body-too-large";
    case 415: return "urn:ccm:problem:unsupported-media-type";
    case 503: return "urn:ccm:problem:unavailable";
    default: return "urn:ccm:problem:internal";
  }
}

nlohmann::json ProblemBody(int status, const std::string& title, const std::string& detail,
                           const std::string& instance, const std::string& field) {
  nlohmann::json body = {
      {"type", TypeFor(status)}, {"title", title}, {"status", status}, {"detail", detail}, {"instance", instance}};
  if (!field.empty()) body["field"] = field;
  return body;
}

Response ToResponse(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  r.content_type = "application/problem+json";
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // A 503 leaves with Retry-After: the server adds it (1 s) to any that has none.
  return r;
}

}  // namespace

Response ProblemResponse(int status, const std::string& title, const std::string& detail,
                         const std::string& instance, const std::string& field) {
  return ToResponse(status, ProblemBody(status, title, detail, instance, field));
}

Response ErrorResponse(const Error& error, const std::string& instance) {
  const int status = StatusFor(error.code);
  auto body = ProblemBody(status, TitleFor(error.code), error.message, instance, error.field);
  // The code tells a stale-version conflict ("field": "version") from an illegal move.
  body["code"] = ToString(error.code);
  return ToResponse(status, body);
}

}  // namespace ccm::http
