#include "domain/types.h"

#include "domain/result.h"

namespace ccm {

const char* ToString(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kConflict: return "conflict";
    case ErrorCode::kFailedPrecondition: return "failed_precondition";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kPermissionDenied: return "permission_denied";
  }
  return "internal";
}

namespace domain {

std::string_view ToString(LicenseType t) {
  switch (t) {
    case LicenseType::kPersonal: return "PERSONAL";
    case LicenseType::kEnterprise: return "ENTERPRISE";
    case LicenseType::kEvaluation: return "EVALUATION";
  }
  return "ENTERPRISE";
}

std::optional<LicenseType> ParseLicenseType(std::string_view name) {
  if (name == "PERSONAL") return LicenseType::kPersonal;
  if (name == "ENTERPRISE") return LicenseType::kEnterprise;
  if (name == "EVALUATION") return LicenseType::kEvaluation;
  return std::nullopt;
}

}  // namespace domain
}  // namespace ccm
