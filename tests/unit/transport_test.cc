// The transport's pure rules: which statuses are worth another try, and URL escaping.
#include <gtest/gtest.h>

#include "transport/http_connection.h"
#include "transport/retry.h"

namespace ccm {
namespace {

TEST(IsRetryableStatus, RetriesTimeoutsThrottlingAndServerErrors) {
  for (long status : {408L, 429L, 500L, 502L, 503L, 504L, 599L})
    EXPECT_TRUE(transport::IsRetryableStatus(status)) << status;
}

TEST(IsRetryableStatus, TakesSuccessRedirectsAndOtherClientErrorsAsFinal) {
  for (long status : {200L, 201L, 204L, 301L, 304L, 400L, 401L, 403L, 404L, 409L, 410L, 413L, 415L, 422L, 499L})
    EXPECT_FALSE(transport::IsRetryableStatus(status)) << status;
}

TEST(IsRetryableStatus, IsAConstantExpression) {
  static_assert(transport::IsRetryableStatus(503));
  static_assert(!transport::IsRetryableStatus(404));
}

TEST(UrlEscape, EncodesEverythingButUnreservedCharacters) {
  EXPECT_EQ(transport::UrlEscape("abc-._~XYZ019"), "abc-._~XYZ019");
  EXPECT_EQ(transport::UrlEscape("a b/c?d=e&f"), "a%20b%2Fc%3Fd%3De%26f");
  EXPECT_EQ(transport::UrlEscape(""), "");
  // An empty view into a longer text escapes to nothing, not to the text after it.
  EXPECT_EQ(transport::UrlEscape(std::string_view("a b").substr(0, 0)), "");
  EXPECT_EQ(transport::UrlEscape(std::string_view("a b").substr(0, 1)), "a");
  EXPECT_EQ(transport::UrlEscape("\xc3\xa9"), "%C3%A9");
}

}  // namespace
}  // namespace ccm
