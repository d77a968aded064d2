#pragma once

namespace ccm::transport {

// Whether an HTTP answer with `status` may succeed when the same request is sent again
// later: 408 (request timeout), 429 (too many requests) and every 5xx. Any other status is
// the remote's final word on the request. Callers with a rule of their own on top (the CML
// client retries 401 once after signing in again) keep it beside this one.
constexpr bool IsRetryableStatus(long status) { return status == 408 || status == 429 || status >= 500; }

}  // namespace ccm::transport
