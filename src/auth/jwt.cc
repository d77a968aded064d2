#include "auth/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <vector>

namespace ccm::auth {

using nlohmann::json;

namespace {

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int Sextet(char c) {
  const auto pos = kAlphabet.find(c);
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

EVP_PKEY* FromParams(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* pkey = nullptr;
  if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return pkey;
}

Result<std::string> Member(const json& jwk, const char* name) {
  if (!jwk.contains(name) || !jwk[name].is_string())
    return Error::InvalidArgument(std::string("JWK has no ") + name, name);
  auto bytes = Base64UrlDecode(jwk[name].get<std::string>());
  if (!bytes || bytes->empty()) return Error::InvalidArgument(std::string("JWK ") + name + " is not base64url", name);
  return *bytes;
}

BIGNUM* Bn(const std::string& bytes) {
  return BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()), nullptr);
}

// Adds the roles of a {"roles": [...]} object.
void RolesFrom(const json& holder, std::set<std::string>& out) {
  if (!holder.is_object() || !holder.contains("roles") || !holder["roles"].is_array()) return;
  for (const auto& r : holder["roles"])
    if (r.is_string()) out.insert(r.get<std::string>());
}

}  // namespace

std::string_view ToString(Role r) {
  switch (r) {
    case Role::kViewer: return "ccm.viewer";
    case Role::kOperator: return "ccm.operator";
    case Role::kAdmin: return "ccm.admin";
    case Role::kEventsPublish: return "ccm.events.publish";
  }
  return "ccm.admin";
}

bool Principal::Has(Role r) const {
  auto has = [&](Role x) { return roles.count(std::string(ToString(x))) > 0; };
  switch (r) {
    case Role::kViewer: return has(Role::kViewer) || has(Role::kOperator) || has(Role::kAdmin);
    case Role::kOperator: return has(Role::kOperator) || has(Role::kAdmin);
    case Role::kAdmin: return has(Role::kAdmin);
    case Role::kEventsPublish: return has(Role::kEventsPublish);
  }
  return false;
}

std::string Base64UrlEncode(std::string_view bytes) {
  std::string out;
  const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  for (size_t i = 0; i < n; i += 3) {
    const unsigned v = (d[i] << 16) | (i + 1 < n ? d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    if (i + 1 < n) out += kAlphabet[(v >> 6) & 63];
    if (i + 2 < n) out += kAlphabet[v & 63];
  }
  return out;
}

std::optional<std::string> Base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = Sextet(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

PublicKey::~PublicKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

bool PublicKey::Verifies(std::string_view input, std::string_view signature) const {
  std::string der;
  if (alg_ == "ES256") {
    // JWS carries r || s, 32 bytes each; OpenSSL wants a DER ECDSA-Sig-Value.
    if (signature.size() != 64) return false;
    ECDSA_SIG* sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, Bn(std::string(signature.substr(0, 32))), Bn(std::string(signature.substr(32))));
    unsigned char* out = nullptr;
    const int len = i2d_ECDSA_SIG(sig, &out);
    ECDSA_SIG_free(sig);
    if (len <= 0) return false;
    der.assign(reinterpret_cast<char*>(out), static_cast<size_t>(len));
    OPENSSL_free(out);
    signature = der;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, static_cast<EVP_PKEY*>(pkey_)) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

Result<std::shared_ptr<const PublicKey>> KeyFromJwk(const json& jwk) {
  if (!jwk.is_object()) return Error::InvalidArgument("JWK is not an object");
  const std::string kty = jwk.value("kty", "");
  const std::string alg = jwk.contains("alg") && jwk["alg"].is_string() ? jwk["alg"].get<std::string>() : "";
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  EVP_PKEY* pkey = nullptr;
  std::string key_alg;
  if (kty == "RSA") {
    auto n = Member(jwk, "n");
    auto e = Member(jwk, "e");
    if (!n || !e) {
      OSSL_PARAM_BLD_free(bld);
      return n ? e.error() : n.error();
    }
    BIGNUM* bn_n = Bn(*n);
    BIGNUM* bn_e = Bn(*e);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e);
    pkey = FromParams("RSA", bld);
    BN_free(bn_n);
    BN_free(bn_e);
    key_alg = "RS256";
  } else if (kty == "EC") {
    if (jwk.value("crv", "") != "P-256") {
      OSSL_PARAM_BLD_free(bld);
      return Error::InvalidArgument("only EC keys on P-256 are supported", "crv");
    }
    auto x = Member(jwk, "x");
    auto y = Member(jwk, "y");
    if (!x || !y || x->size() != 32 || y->size() != 32) {
      OSSL_PARAM_BLD_free(bld);
      return Error::InvalidArgument("EC JWK needs 32-byte x and y", "x");
    }
    const std::string point = std::string(1, '\x04') + *x + *y;
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    pkey = FromParams("EC", bld);
    key_alg = "ES256";
  } else {
    OSSL_PARAM_BLD_free(bld);
    return Error::InvalidArgument("unsupported key type '" + kty + "' (RSA or EC only)", "kty");
  }
  OSSL_PARAM_BLD_free(bld);
  if (!pkey) return Error::InvalidArgument("JWK does not hold a valid " + kty + " public key");
  if (!alg.empty() && alg != key_alg) {
    EVP_PKEY_free(pkey);
    return Error::InvalidArgument("JWK alg " + alg + " does not fit its " + kty + " key", "alg");
  }
  return std::shared_ptr<const PublicKey>(new PublicKey(pkey, key_alg));
}

Result<Principal> Verify(std::string_view token, KeySet& keys, const Expectations& expect, Timestamp now) {
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return Error::Unauthenticated("the bearer token is not a compact JWS (three parts)");
  const auto header_text = Base64UrlDecode(token.substr(0, dot1));
  const auto claims_text = Base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  const auto signature = Base64UrlDecode(token.substr(dot2 + 1));
  if (!header_text || !claims_text || !signature) return Error::Unauthenticated("the bearer token is not base64url");
  const json header = json::parse(*header_text, nullptr, false);
  const json claims = json::parse(*claims_text, nullptr, false);
  if (!header.is_object() || !claims.is_object())
    return Error::Unauthenticated("the bearer token's header or claims are not JSON objects");
  const std::string alg = header.contains("alg") && header["alg"].is_string() ? header["alg"].get<std::string>() : "";
  if (alg != "RS256" && alg != "ES256")
    return Error::Unauthenticated("token algorithm '" + alg + "' is not accepted (RS256 or ES256 only)");
  // ccm implements no JWS extension, so a token that says one is critical is refused.
  if (header.contains("crit"))
    return Error::Unauthenticated("the token names critical header extensions (crit) ccm does not understand");

  if (!claims.contains("iss") || claims["iss"] != expect.issuer)
    return Error::Unauthenticated("the token's issuer is not " + expect.issuer);
  bool audience = false;
  if (claims.contains("aud")) {
    const json& aud = claims["aud"];
    if (aud.is_string()) audience = aud == expect.audience;
    if (aud.is_array())
      for (const auto& a : aud) audience = audience || a == expect.audience;
  }
  if (!audience) return Error::Unauthenticated("the token is not meant for audience " + expect.audience);
  const std::int64_t now_s = ToUnixMillis(now) / 1000;
  const std::int64_t skew = expect.clock_skew.count();
  if (!claims.contains("exp") || !claims["exp"].is_number())
    return Error::Unauthenticated("the token has no expiry (exp)");
  if (claims["exp"].get<double>() + static_cast<double>(skew) <= static_cast<double>(now_s))
    return Error::Unauthenticated("the token has expired");
  if (claims.contains("nbf") &&
      (!claims["nbf"].is_number() || claims["nbf"].get<double>() - static_cast<double>(skew) > static_cast<double>(now_s)))
    return Error::Unauthenticated("the token is not valid yet (nbf)");

  const std::string subject = claims.contains("sub") && claims["sub"].is_string() ? claims["sub"].get<std::string>() : "";
  if (subject.empty()) return Error::Unauthenticated("the token names no subject (sub)");

  // Last, as it may cost a fetch of the issuer's keys.
  const std::string kid = header.contains("kid") && header["kid"].is_string() ? header["kid"].get<std::string>() : "";
  auto key = keys.Find(kid);
  if (!key) return Error{key.error().code == ErrorCode::kUnavailable ? ErrorCode::kUnavailable : ErrorCode::kUnauthenticated,
                         key.error().message, {}};
  if ((*key)->alg() != alg)
    return Error::Unauthenticated("token algorithm " + alg + " does not fit key '" + kid + "' (" + (*key)->alg() + ")");
  if (!(*key)->Verifies(token.substr(0, dot2), *signature))
    return Error::Unauthenticated("the token's signature does not verify");

  Principal p;
  p.subject = subject;
  if (claims.contains("resource_access") && claims["resource_access"].is_object() &&
      claims["resource_access"].contains(expect.client_id))
    RolesFrom(claims["resource_access"][expect.client_id], p.roles);
  if (expect.realm_roles && claims.contains("realm_access")) RolesFrom(claims["realm_access"], p.roles);
  return p;
}

}  // namespace ccm::auth
