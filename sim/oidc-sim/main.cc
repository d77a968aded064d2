// oidc-sim: an OAuth 2.0 client-credentials token endpoint (as Keycloak's) that issues RS256
// JWTs with `exp`, and the JWKS to check them. Short lifetimes are configurable to test
// refresh. Clients are --client-id/--client-secret, plus any number of
// --client ID:SECRET:ROLE,ROLE whose tokens carry those roles as client roles of the
// --roles-client (default ccm): resource_access.<roles-client>.roles, as Keycloak puts a
// client's roles and as ccm reads them.
//   POST /token  (grant_type=client_credentials, client_id, client_secret)
//   GET  /jwks   ({"keys": [{kty, kid, use, alg, n, e}]})
#include <CLI/CLI.hpp>

#include <map>
#include <sstream>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "auth/jwt.h"
#include "http/message.h"
#include "http/server.h"

namespace {

std::string Base64Url(const unsigned char* data, size_t n) {
  return ccm::auth::Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(data), n));
}
std::string Base64Url(const std::string& s) { return ccm::auth::Base64UrlEncode(s); }

std::string BigNum(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  std::vector<unsigned char> bytes(static_cast<size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, bytes.data());
  BN_free(bn);
  return Base64Url(bytes.data(), bytes.size());
}

std::string Sign(EVP_PKEY* key, const std::string& input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::vector<unsigned char> sig(len);
  EVP_DigestSign(ctx, sig.data(), &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  EVP_MD_CTX_free(ctx);
  return Base64Url(sig.data(), len);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"oidc-sim: client-credentials tokens (RS256 JWT) and JWKS"};
  std::string ready_file, client_id = "ccm", client_secret = "ccm-secret", issuer = "http://oidc-sim", audience = "ccm";
  int lifetime = 300;
  cli.add_option("--ready-file", ready_file, "Write host:port here once listening")->required();
  std::uint16_t listen_port = 0;
  cli.add_option("--port", listen_port, "Listen on this loopback port (default: any free one)");
  cli.add_option("--client-id", client_id)->capture_default_str();
  cli.add_option("--client-secret", client_secret)->capture_default_str();
  cli.add_option("--lifetime", lifetime, "Token lifetime in seconds")->capture_default_str();
  cli.add_option("--issuer", issuer)->capture_default_str();
  cli.add_option("--audience", audience)->capture_default_str();
  std::string roles_client = "ccm";
  cli.add_option("--roles-client", roles_client, "The client whose roles tokens carry (resource_access)")
      ->capture_default_str();
  std::vector<std::string> client_specs;
  cli.add_option("--client", client_specs, "ID:SECRET[:ROLE,ROLE...] (repeatable)");
  CLI11_PARSE(cli, argc, argv);
  struct Client {
    std::string secret;
    std::vector<std::string> roles;
  };
  std::map<std::string, Client> clients = {{client_id, {client_secret, {}}}};
  for (const auto& spec : client_specs) {
    const auto c1 = spec.find(':');
    const auto c2 = c1 == std::string::npos ? c1 : spec.find(':', c1 + 1);
    if (c1 == std::string::npos) {
      std::cerr << "oidc-sim: --client wants ID:SECRET[:ROLES], not " << spec << "\n";
      return 2;
    }
    Client c{spec.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1), {}};
    if (c2 != std::string::npos) {
      std::stringstream roles(spec.substr(c2 + 1));
      for (std::string r; std::getline(roles, r, ',');)
        if (!r.empty()) c.roles.push_back(r);
    }
    clients[spec.substr(0, c1)] = c;
  }

  EVP_PKEY* key = EVP_RSA_gen(2048);
  const std::string kid = "oidc-sim-1";
  const nlohmann::json jwks = {
      {"keys", {{{"kty", "RSA"}, {"kid", kid}, {"use", "sig"}, {"alg", "RS256"}, {"n", BigNum(key, OSSL_PKEY_PARAM_RSA_N)},
                 {"e", BigNum(key, OSSL_PKEY_PARAM_RSA_E)}}}}};
  std::atomic<int> issued{0};

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  ccm::http::ServerOptions options;
  options.port = listen_port;
  options.handler_threads = 4;
  ccm::http::Server server(options, [&](ccm::http::Request& r) {
    ccm::http::Response resp;
    if (r.method == "GET" && r.path == "/jwks") {
      resp.body = jwks.dump();
      return resp;
    }
    if (r.method != "POST" || r.path != "/token") {
      resp.status = 404;
      return resp;
    }
    const auto form = ccm::http::ParseQuery(r.body);
    auto get = [&](const char* k) { auto it = form.find(k); return it == form.end() ? std::string() : it->second; };
    if (get("grant_type") != "client_credentials") {
      resp.status = 400;
      resp.body = R"({"error":"unsupported_grant_type"})";
      return resp;
    }
    const auto client = clients.find(get("client_id"));
    if (client == clients.end() || get("client_secret") != client->second.secret) {
      resp.status = 401;
      resp.body = R"({"error":"invalid_client"})";
      return resp;
    }
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    const std::string header = Base64Url(nlohmann::json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", kid}}.dump());
    const std::string claims = Base64Url(nlohmann::json{{"iss", issuer}, {"aud", audience}, {"sub", client->first},
                                                        {"azp", client->first}, {"iat", now}, {"nbf", now},
                                                        {"exp", now + lifetime}, {"jti", std::to_string(++issued)},
                                                        {"resource_access", {{roles_client, {{"roles", client->second.roles}}}}}}
                                             .dump());
    const std::string token = header + "." + claims + "." + Sign(key, header + "." + claims);
    resp.body = nlohmann::json{{"access_token", token}, {"token_type", "Bearer"}, {"expires_in", lifetime}}.dump();
    return resp;
  });
  if (auto s = server.Start(); !s) {
    std::cerr << "oidc-sim: " << s.error().message << "\n";
    return 1;
  }
  std::ofstream(ready_file) << "127.0.0.1:" << server.port() << "\n";
  int sig = 0;
  sigwait(&stop, &sig);
  server.Stop();
  EVP_PKEY_free(key);
  return 0;
}
