#include "http/problem.h"

#include <array>
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

constexpr ProblemKind kInternal{500, "urn:ccm:problem:internal", "Internal error"};

// Ordered by status. Titles name the kind, never one case of it: the router's "no route" and
// a missing instance are both "Not found"; a stale version and an illegal move both
// "Conflict" (their `code` and detail differ).
constexpr std::array kKinds = {
    ProblemKind{400, "urn:ccm:problem:invalid-argument", "Invalid request"},
    ProblemKind{401, "urn:ccm:problem:unauthenticated", "Unauthorized"},
    ProblemKind{403, "urn:ccm:problem:forbidden", "Forbidden"},
    ProblemKind{404, "urn:ccm:problem:not-found", "Not found"},
    ProblemKind{405, "urn:ccm:problem:method-not-allowed", "Method not allowed"},
    ProblemKind{409, "urn:ccm:problem:conflict", "Conflict"},
    ProblemKind{413, "urn:ccm:problem:body-too-large", "Content too large"},
    ProblemKind{415, "urn:ccm:problem:unsupported-media-type", "Unsupported media type"},
    ProblemKind{422, "urn:ccm:problem:unprocessable", "Unprocessable content"},
    ProblemKind{429, "urn:ccm:problem:too-many-requests", "Too many requests"},
    ProblemKind{431, "urn:ccm:problem:header-fields-too-large", "Request header fields too large"},
    kInternal,
    ProblemKind{503, "urn:ccm:problem:unavailable", "Service unavailable"},
};

nlohmann::json ProblemBody(int status, const std::string& detail, const std::string& instance,
                           const std::string& field, std::string_view code) {
  const ProblemKind& kind = ProblemKindOf(status);
  nlohmann::json body = {
      {"type", kind.type}, {"title", kind.title}, {"status", status}, {"detail", detail}, {"instance", instance}};
  if (!field.empty()) body["field"] = field;
  if (!code.empty()) body["code"] = code;
  return body;
}

Response ToResponse(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  r.content_type = "application/problem+json";
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

}  // namespace

std::span<const ProblemKind> ProblemKinds() { return kKinds; }

const ProblemKind& ProblemKindOf(int status) {
  for (const auto& kind : kKinds)
    if (kind.status == status) return kind;
  return kInternal;
}

Response ProblemResponse(int status, const std::string& detail, const std::string& instance,
                         const std::string& field, std::string_view code) {
  return ToResponse(status, ProblemBody(status, detail, instance, field, code));
}

Response ErrorResponse(const Error& error, const std::string& instance) {
  // A body in a media type the call does not read: 415, which no ErrorCode names better.
  if (error.Is(ErrorKind::kUnsupportedMediaType)) return ProblemResponse(415, error.message, instance, error.field);
  // The code, with the field, tells a stale-version conflict ("field": "version") from an illegal move.
  return ProblemResponse(StatusFor(error.code), error.message, instance, error.field, ToString(error.code));
}

}  // namespace ccm::http
