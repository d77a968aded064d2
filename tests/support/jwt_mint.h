#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "auth/jwt.h"

namespace ccm::testing {

// A signing key of the tests' own issuer: RS256 (RSA 2048) or ES256 (P-256).
class SigningKey {
 public:
  SigningKey(std::string alg, std::string kid);  // alg "RS256" or "ES256"
  ~SigningKey();
  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;

  const std::string& kid() const { return kid_; }
  // The public half as a JWKS entry.
  nlohmann::json Jwk() const;
  // A compact JWS of `claims` with this key; `header` fields replace the defaults
  // ({alg, typ: JWT, kid}).
  std::string Sign(const nlohmann::json& claims, const nlohmann::json& header = nlohmann::json::object()) const;
  // The public key in PEM, as an attacker would find it (to try HMAC with it as the secret).
  std::string PublicPem() const;

 private:
  std::string alg_, kid_;
  void* pkey_;
};

// Claims that pass the default expectations: iss "https://issuer.test", aud "ccm", a subject,
// exp in 5 minutes, nbf and iat now, the roles as client roles of ccm (resource_access.ccm.roles,
// where ccm reads them by default).
nlohmann::json GoodClaims(const std::vector<std::string>& roles, const std::string& subject = "alice");

// A compact JWS signed with HMAC-SHA256 under `secret`.
std::string SignHs256(const nlohmann::json& header, const nlohmann::json& claims, const std::string& secret);

// A fixed set of keys.
class StaticKeys : public auth::KeySet {
 public:
  void Add(const SigningKey& k) { keys_[k.kid()] = auth::KeyFromJwk(k.Jwk()).value(); }
  Result<std::shared_ptr<const auth::PublicKey>> Find(const std::string& kid) override {
    auto it = keys_.find(kid);
    if (it == keys_.end()) return Error::Unauthenticated("unknown key " + kid);
    return it->second;
  }

 private:
  std::map<std::string, std::shared_ptr<const auth::PublicKey>> keys_;
};

}  // namespace ccm::testing
