#include "support/jwt_mint.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <chrono>
#include <stdexcept>
#include <vector>

namespace ccm::testing {

using nlohmann::json;

namespace {

std::string Bytes(const BIGNUM* bn, int width = 0) {
  std::vector<unsigned char> out(static_cast<size_t>(width ? width : BN_num_bytes(bn)));
  if (width) BN_bn2binpad(bn, out.data(), width);
  else BN_bn2bin(bn, out.data());
  return {out.begin(), out.end()};
}

std::string Param(EVP_PKEY* key, const char* name, int width = 0) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  std::string out = Bytes(bn, width);
  BN_free(bn);
  return out;
}

}  // namespace

SigningKey::SigningKey(std::string alg, std::string kid) : alg_(std::move(alg)), kid_(std::move(kid)) {
  pkey_ = alg_ == "ES256" ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
  if (!pkey_) throw std::runtime_error("cannot make a test key");
}

SigningKey::~SigningKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

json SigningKey::Jwk() const {
  auto* key = static_cast<EVP_PKEY*>(pkey_);
  if (alg_ == "ES256")
    return {{"kty", "EC"}, {"crv", "P-256"}, {"kid", kid_}, {"use", "sig"}, {"alg", "ES256"},
            {"x", auth::Base64UrlEncode(Param(key, OSSL_PKEY_PARAM_EC_PUB_X, 32))},
            {"y", auth::Base64UrlEncode(Param(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32))}};
  return {{"kty", "RSA"}, {"kid", kid_}, {"use", "sig"}, {"alg", "RS256"},
          {"n", auth::Base64UrlEncode(Param(key, OSSL_PKEY_PARAM_RSA_N))},
          {"e", auth::Base64UrlEncode(Param(key, OSSL_PKEY_PARAM_RSA_E))}};
}

std::string SigningKey::Sign(const json& claims, const json& header) const {
  json h = {{"alg", alg_}, {"typ", "JWT"}, {"kid", kid_}};
  h.update(header);
  const std::string input = auth::Base64UrlEncode(h.dump()) + "." + auth::Base64UrlEncode(claims.dump());
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  auto* key = static_cast<EVP_PKEY*>(pkey_);
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::vector<unsigned char> sig(len);
  EVP_DigestSign(ctx, sig.data(), &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  EVP_MD_CTX_free(ctx);
  std::string raw(sig.begin(), sig.begin() + static_cast<long>(len));
  if (alg_ == "ES256") {
    // DER ECDSA-Sig-Value -> r || s, as JWS wants.
    const unsigned char* p = sig.data();
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len));
    raw = Bytes(ECDSA_SIG_get0_r(es), 32) + Bytes(ECDSA_SIG_get0_s(es), 32);
    ECDSA_SIG_free(es);
  }
  return input + "." + auth::Base64UrlEncode(raw);
}

std::string SigningKey::PublicPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, static_cast<EVP_PKEY*>(pkey_));
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

json GoodClaims(const std::vector<std::string>& roles, const std::string& subject) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  return {{"iss", "https://issuer.test"}, {"aud", "ccm"},       {"sub", subject},
          {"iat", now},                   {"nbf", now},         {"exp", now + 300},
          {"resource_access", {{"ccm", {{"roles", roles}}}}}};
}

std::string SignHs256(const json& header, const json& claims, const std::string& secret) {
  const std::string input = auth::Base64UrlEncode(header.dump()) + "." + auth::Base64UrlEncode(claims.dump());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + auth::Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), len));
}

}  // namespace ccm::testing
