#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

#include "domain/result.h"
#include "domain/time.h"

namespace ccm::auth {

// What a caller may do. An admin may do what an operator may, an operator what a viewer may;
// publishing events is a right of its own (the Assessment Platform's service account).
enum class Role {
  kViewer,         // ccm.viewer: read
  kOperator,       // ccm.operator: create, change, delete, collect
  kAdmin,          // ccm.admin: the internal endpoints and replay
  kEventsPublish,  // ccm.events.publish: POST /api/v1/events
};
std::string_view ToString(Role r);

// Who a verified token names, and the roles it grants: the client roles of ccm's own client
// (Keycloak's resource_access.<client_id>.roles) and, only where Expectations allow it, the
// realm roles (realm_access.roles). Roles of any other client never count.
struct Principal {
  std::string subject;
  std::set<std::string> roles;
  bool Has(Role r) const;
};

// A key that checks signatures of one algorithm: RS256 (an RSA key) or ES256 (a P-256 key).
class PublicKey {
 public:
  ~PublicKey();
  PublicKey(const PublicKey&) = delete;
  PublicKey& operator=(const PublicKey&) = delete;
  const std::string& alg() const { return alg_; }
  // Whether `signature` (as a JWS carries it) signs `input` under this key.
  bool Verifies(std::string_view input, std::string_view signature) const;

 private:
  friend Result<std::shared_ptr<const PublicKey>> KeyFromJwk(const nlohmann::json& jwk);
  PublicKey(void* pkey, std::string alg) : pkey_(pkey), alg_(std::move(alg)) {}
  void* pkey_;  // EVP_PKEY
  std::string alg_;
};

// The key of one JWKS entry: kty RSA (n, e) for RS256, or kty EC with crv P-256 (x, y) for
// ES256. An entry's `alg`, when present, must agree. Errors: invalid_argument naming what is
// missing or unsupported (symmetric keys, other curves).
Result<std::shared_ptr<const PublicKey>> KeyFromJwk(const nlohmann::json& jwk);

// Where verification keys come from (the issuer's JWKS). Thread-safe.
class KeySet {
 public:
  virtual ~KeySet() = default;
  // The key with this id. Implementations may fetch their keys when it is unknown, but must
  // bound how often (the id comes from a token whose signature is not checked yet).
  // Errors: unauthenticated when there is no such key; unavailable when keys cannot be had.
  virtual Result<std::shared_ptr<const PublicKey>> Find(const std::string& kid) = 0;
};

struct Expectations {
  std::string issuer;    // `iss` must equal it
  std::string audience;  // `aud` (a string or a list) must hold it
  std::chrono::seconds clock_skew{60};
  std::string client_id = "ccm";  // roles are read from resource_access.<client_id>.roles
  bool realm_roles = false;       // realm_access.roles count too
};

// Checks a compact JWS bearer token: three base64url parts; a header whose alg is RS256 or
// ES256 (none and HMAC are refused: a public key is no shared secret) and that has no `crit`
// (ccm understands no JWS extension, RFC 7515 4.1.11); iss, aud, exp (required), nbf, with
// `clock_skew` of tolerance, and sub; only then the key (`keys.Find`, which may fetch: the
// cheap local checks come first), that the key's alg is the header's, and the signature.
// Nothing from the claims is returned unless the signature verifies. Errors: unauthenticated,
// saying which rule failed (never echoing the token); unavailable when `keys` has no keys to
// check with.
Result<Principal> Verify(std::string_view token, KeySet& keys, const Expectations& expect, Timestamp now);

// base64url without padding, as JOSE uses it.
std::string Base64UrlEncode(std::string_view bytes);
std::optional<std::string> Base64UrlDecode(std::string_view text);

}  // namespace ccm::auth
