#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "support/jwt_mint.h"
#include "support/stack.h"

namespace ccm::testing {

// A Stack with authentication on: a request must carry a token signed by `key` for issuer
// https://issuer.test and audience ccm, checked by auth::Verify against `keys` (which holds
// `key`) at the stack's clock.
struct SignedStack {
  SignedStack()
      : stack(nullptr, {}, [this](std::string_view token) {
          return auth::Verify(token, keys, {"https://issuer.test", "ccm", std::chrono::seconds(60)}, stack.clock.Now());
        }) {
    keys.Add(key);
  }
  // A valid token granting `roles` to `subject`.
  std::string Token(const std::vector<std::string>& roles, const std::string& subject = "bob") {
    return key.Sign(GoodClaims(roles, subject));
  }

  SigningKey key{"RS256", "k1"};
  StaticKeys keys;
  Stack stack;
};

}  // namespace ccm::testing
