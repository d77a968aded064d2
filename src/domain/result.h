#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ccm {

// What went wrong, in a form every layer understands. The HTTP layer maps `code` to a
// status in one place (http/problem.cc); reconcilers retry `kUnavailable` and record the rest.
enum class ErrorCode {
  kInvalidArgument,     // the caller sent something malformed or out of range
  kNotFound,            // the named object does not exist
  kConflict,            // illegal state move, stale version, or a duplicate key
  kFailedPrecondition,  // the object exists but is not in a state that allows the call
  kUnavailable,         // a dependency did not answer; the same call may succeed later
  kInternal,            // a bug or a broken invariant
  kUnauthenticated,     // no valid credentials came with the call
  kPermissionDenied,    // valid credentials without the right to make the call
};

const char* ToString(ErrorCode code);

// Finer than the code, for the few failures a caller acts on differently from others of the
// same code. Callers test the kind, never the text of `field` or `message`.
enum class ErrorKind {
  kUnspecified,           // no finer kind: the code says all a caller acts on
  kStaleVersion,          // conflict: the aggregate changed since it was read; a retry after a fresh read may cure it
  kDuplicate,             // conflict: the processed-event key exists, so the event was already applied
  kUnsupportedMediaType,  // invalid argument: the body's media type is not one the call reads (HTTP 415)
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string field;  // the offending input field, empty when none applies
  ErrorKind kind = ErrorKind::kUnspecified;

  bool Is(ErrorKind k) const { return kind == k; }

  static Error InvalidArgument(std::string message, std::string field = {}) {
    return {ErrorCode::kInvalidArgument, std::move(message), std::move(field)};
  }
  static Error NotFound(std::string message) { return {ErrorCode::kNotFound, std::move(message), {}}; }
  static Error Conflict(std::string message, std::string field = {}) {
    return {ErrorCode::kConflict, std::move(message), std::move(field)};
  }
  static Error FailedPrecondition(std::string message, std::string field = {}) {
    return {ErrorCode::kFailedPrecondition, std::move(message), std::move(field)};
  }
  static Error Unavailable(std::string message) { return {ErrorCode::kUnavailable, std::move(message), {}}; }
  static Error Internal(std::string message) { return {ErrorCode::kInternal, std::move(message), {}}; }
  static Error Unauthenticated(std::string message) { return {ErrorCode::kUnauthenticated, std::move(message), {}}; }
  static Error PermissionDenied(std::string message) {
    return {ErrorCode::kPermissionDenied, std::move(message), {}};
  }
  // The kinds: each names the field a client sees in the problem it gets.
  static Error StaleVersion(std::string message) {
    return {ErrorCode::kConflict, std::move(message), "version", ErrorKind::kStaleVersion};
  }
  static Error Duplicate(std::string message) {
    return {ErrorCode::kConflict, std::move(message), "dedup", ErrorKind::kDuplicate};
  }
  static Error UnsupportedMediaType(std::string message) {
    return {ErrorCode::kInvalidArgument, std::move(message), "content-type", ErrorKind::kUnsupportedMediaType};
  }
};

// Wraps an Error so that Result<T> can be built from it unambiguously, like std::unexpected.
struct Unexpected {
  Error error;
};
inline Unexpected Fail(Error e) { return Unexpected{std::move(e)}; }

// A value or an Error. Member names follow C++23 std::expected so that this type can later
// become an alias of it.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  Result(Unexpected u) : v_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const Error& error() const { return std::get<1>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT
  Result(Unexpected u) : error_(std::move(u.error)) {}  // NOLINT

  bool has_value() const { return !error_.has_value(); }
  explicit operator bool() const { return has_value(); }
  const Error& error() const { return *error_; }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

}  // namespace ccm
