// oidc-sim: the parts of an OpenID Connect issuer (as Keycloak's) that ccm and its console use,
// issuing RS256 JWTs with `exp` and the JWKS to check them. Short lifetimes are configurable
// to test refresh.
//
// Machines: the client-credentials grant. Clients are --client-id/--client-secret, plus any
// number of --client ID:SECRET:ROLE,ROLE whose tokens carry those roles as client roles of the
// --roles-client (default ccm): resource_access.<roles-client>.roles, as Keycloak puts a
// client's roles and as ccm reads them.
//
// People: the authorization code grant with PKCE (S256 only), for public clients
// (--public-client ID) and users (--user NAME:PASSWORD:ROLE,ROLE). A public client may
// redirect to any http://127.0.0.1:* or http://localhost:* address. Codes are single-use and
// live 60 s; refresh tokens rotate (a used one is refused) and live 30 minutes.
//
//   GET  /authorize  a login form for response_type=code, client_id, redirect_uri, state,
//                    code_challenge, code_challenge_method=S256 (scope and nonce optional)
//   POST /authorize  the form: wrong credentials show it again, right ones redirect with a code
//   POST /token      grant_type=client_credentials | authorization_code | refresh_token
//   GET  /jwks       {"keys": [{kty, kid, use, alg, n, e}]}
//   GET  /.well-known/openid-configuration
// /token and /jwks answer a browser's CORS requests from any origin.
#include <CLI/CLI.hpp>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "auth/jwt.h"
#include "http/message.h"
#include "http/server.h"
#include "transport/http_connection.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using ccm::http::Request;
using ccm::http::Response;

constexpr auto kCodeLifetime = std::chrono::seconds(60);
constexpr int kRefreshLifetimeSeconds = 1800;

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

// 32 random bytes, base64url: codes and refresh tokens.
std::string RandomToken() {
  unsigned char bytes[32];
  RAND_bytes(bytes, sizeof bytes);
  return Base64Url(bytes, sizeof bytes);
}

// The S256 code challenge of a verifier (RFC 7636, 4.2).
std::string S256(const std::string& verifier) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(verifier.data(), verifier.size(), digest, &n, EVP_sha256(), nullptr);
  return Base64Url(digest, n);
}

std::string HtmlEscape(std::string_view in) {
  std::string out;
  for (char c : in) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<std::string> SplitRoles(const std::string& list) {
  std::vector<std::string> roles;
  std::stringstream in(list);
  for (std::string r; std::getline(in, r, ',');)
    if (!r.empty()) roles.push_back(r);
  return roles;
}

// "A:B:C,D" -> {"A", "B", ["C", "D"]}; the roles part may be absent.
std::optional<std::pair<std::string, std::pair<std::string, std::vector<std::string>>>> ParseSpec(
    const std::string& spec) {
  const auto c1 = spec.find(':');
  if (c1 == std::string::npos || c1 == 0) return std::nullopt;
  const auto c2 = spec.find(':', c1 + 1);
  std::string secret = spec.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1);
  return std::pair{spec.substr(0, c1),
                   std::pair{std::move(secret), c2 == std::string::npos ? std::vector<std::string>{}
                                                                       : SplitRoles(spec.substr(c2 + 1))}};
}

// A public client may send its users back to a loopback address only: http, host exactly
// 127.0.0.1 or localhost, an optional numeric port, no user information, no control
// characters (the address goes into a Location header).
bool LoopbackRedirect(const std::string& uri) {
  constexpr std::string_view kScheme = "http://";
  if (uri.rfind(kScheme, 0) != 0) return false;
  for (unsigned char c : uri)
    if (c < 0x21 || c == 0x7f) return false;
  const std::string_view rest = std::string_view(uri).substr(kScheme.size());
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  const auto colon = authority.find(':');
  const std::string_view host = authority.substr(0, colon);
  if (host != "127.0.0.1" && host != "localhost") return false;
  if (colon == std::string_view::npos) return true;
  const std::string_view port = authority.substr(colon + 1);
  return !port.empty() && port.size() <= 5 &&
         port.find_first_not_of("0123456789") == std::string_view::npos;
}

Response JsonAnswer(int status, const json& body) {
  Response r;
  r.status = status;
  r.body = body.dump();
  r.headers["Cache-Control"] = "no-store";
  return r;
}

Response OAuthError(int status, const std::string& error, const std::string& description) {
  return JsonAnswer(status, {{"error", error}, {"error_description", description}});
}

struct Account {
  std::string secret;  // a client's secret or a user's password
  std::vector<std::string> roles;
};

// What a code stands for until it is exchanged.
struct CodeGrant {
  std::string client_id, redirect_uri, challenge, user, scope, nonce;
  Clock::time_point expires;
};

struct RefreshGrant {
  std::string client_id, user, scope;
  Clock::time_point expires;
};

// The fields of an authorization request, from the query (GET) or the form (POST).
struct AuthorizeRequest {
  std::string response_type, client_id, redirect_uri, state, code_challenge, code_challenge_method, scope, nonce;

  static AuthorizeRequest From(const std::map<std::string, std::string>& fields) {
    auto get = [&](const char* k) {
      auto it = fields.find(k);
      return it == fields.end() ? std::string() : it->second;
    };
    return {get("response_type"), get("client_id"), get("redirect_uri"), get("state"),
            get("code_challenge"), get("code_challenge_method"), get("scope"), get("nonce")};
  }
};

class Issuer {
 public:
  struct Options {
    std::string issuer, audience, roles_client;
    int lifetime = 300;
  };

  Issuer(Options options, std::map<std::string, Account> clients, std::map<std::string, Account> users,
         std::vector<std::string> public_clients)
      : options_(std::move(options)),
        clients_(std::move(clients)),
        users_(std::move(users)),
        public_clients_(public_clients.begin(), public_clients.end()),
        key_(EVP_RSA_gen(2048)) {}
  ~Issuer() { EVP_PKEY_free(key_); }
  Issuer(const Issuer&) = delete;
  Issuer& operator=(const Issuer&) = delete;

  Response Handle(Request& r) {
    Response resp = Route(r);
    if (r.path == "/token" || r.path == "/jwks") AllowOrigin(r, resp);
    return resp;
  }

 private:
  Response Route(Request& r) {
    if (r.method == "OPTIONS" && (r.path == "/token" || r.path == "/jwks")) {
      Response preflight;
      preflight.status = 204;
      preflight.headers["Access-Control-Allow-Methods"] = "GET, POST";
      preflight.headers["Access-Control-Allow-Headers"] = "Content-Type";
      preflight.headers["Access-Control-Max-Age"] = "600";
      return preflight;
    }
    if (r.method == "GET" && r.path == "/jwks") return JsonAnswer(200, Jwks());
    if (r.method == "GET" && r.path == "/.well-known/openid-configuration") return JsonAnswer(200, Discovery(r));
    if (r.path == "/authorize" && r.method == "GET") return Authorize(AuthorizeRequest::From(r.query), std::nullopt);
    if (r.path == "/authorize" && r.method == "POST") {
      const auto form = ccm::http::ParseQuery(r.body);
      auto get = [&](const char* k) {
        auto it = form.find(k);
        return it == form.end() ? std::string() : it->second;
      };
      return Authorize(AuthorizeRequest::From(form), std::pair{get("username"), get("password")});
    }
    if (r.method == "POST" && r.path == "/token") return Token(ccm::http::ParseQuery(r.body));
    Response missing;
    missing.status = 404;
    return missing;
  }

  static void AllowOrigin(const Request& r, Response& resp) {
    const std::string origin(r.Header("origin"));
    if (origin.empty()) return;
    resp.headers["Access-Control-Allow-Origin"] = origin;
    resp.headers["Vary"] = "Origin";
  }

  json Jwks() const {
    return {{"keys",
             {{{"kty", "RSA"}, {"kid", kKid}, {"use", "sig"}, {"alg", "RS256"}, {"n", BigNum(key_, OSSL_PKEY_PARAM_RSA_N)},
               {"e", BigNum(key_, OSSL_PKEY_PARAM_RSA_E)}}}}};
  }

  json Discovery(const Request& r) const {
    const std::string base = "http://" + std::string(r.Header("host"));
    return {{"issuer", options_.issuer},
            {"authorization_endpoint", base + "/authorize"},
            {"token_endpoint", base + "/token"},
            {"jwks_uri", base + "/jwks"},
            {"grant_types_supported", {"client_credentials", "authorization_code", "refresh_token"}},
            {"code_challenge_methods_supported", {"S256"}},
            {"response_types_supported", {"code"}}};
  }

  // GET shows the form; POST checks the credentials. Errors about the client or where to send
  // the user back are shown here (redirecting to an unchecked address would be an open
  // redirect); the others go back to the client as ?error=.
  Response Authorize(const AuthorizeRequest& a, const std::optional<std::pair<std::string, std::string>>& login) {
    if (!public_clients_.contains(a.client_id)) return Page(400, "Unknown client: " + a.client_id);
    if (!LoopbackRedirect(a.redirect_uri)) return Page(400, "This client may not redirect to " + a.redirect_uri);
    if (a.response_type != "code") return BackWithError(a, "unsupported_response_type", "response_type must be code");
    if (a.code_challenge.empty() || a.code_challenge_method != "S256")
      return BackWithError(a, "invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256");
    if (!login) return LoginForm(a, "");
    const auto user = users_.find(login->first);
    if (user == users_.end() || user->second.secret != login->second)
      return LoginForm(a, "Invalid username or password.");
    const std::string code = RandomToken();
    {
      std::lock_guard lock(mu_);
      codes_[code] = {a.client_id, a.redirect_uri, a.code_challenge, login->first, a.scope, a.nonce,
                      Clock::now() + kCodeLifetime};
    }
    Response redirect;
    redirect.status = 302;
    redirect.headers["Location"] = a.redirect_uri + (a.redirect_uri.find('?') == std::string::npos ? "?" : "&") +
                                   "code=" + ccm::transport::UrlEscape(code) +
                                   "&state=" + ccm::transport::UrlEscape(a.state);
    return redirect;
  }

  static Response BackWithError(const AuthorizeRequest& a, const std::string& error, const std::string& description) {
    Response redirect;
    redirect.status = 302;
    redirect.headers["Location"] = a.redirect_uri + (a.redirect_uri.find('?') == std::string::npos ? "?" : "&") +
                                   "error=" + error + "&error_description=" +
                                   ccm::transport::UrlEscape(description) +
                                   "&state=" + ccm::transport::UrlEscape(a.state);
    return redirect;
  }

  static Response Page(int status, const std::string& message) {
    Response page;
    page.status = status;
    page.content_type = "text/html; charset=utf-8";
    page.body = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in</title></head>"
                "<body><main><h1>Sign in</h1><p role=\"alert\">" + HtmlEscape(message) + "</p></main></body></html>";
    return page;
  }

  static Response LoginForm(const AuthorizeRequest& a, const std::string& error) {
    std::string hidden;
    for (const auto& [name, value] : {std::pair{"response_type", a.response_type}, {"client_id", a.client_id},
                                      {"redirect_uri", a.redirect_uri}, {"state", a.state},
                                      {"code_challenge", a.code_challenge},
                                      {"code_challenge_method", a.code_challenge_method}, {"scope", a.scope},
                                      {"nonce", a.nonce}})
      hidden += std::string("<input type=\"hidden\" name=\"") + name + "\" value=\"" + HtmlEscape(value) + "\">";
    Response form;
    form.content_type = "text/html; charset=utf-8";
    form.headers["Cache-Control"] = "no-store";
    form.body =
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign in to ccm</title>"
        "</head><body><main><h1>Sign in to ccm</h1>" +
        (error.empty() ? std::string() : "<p role=\"alert\" id=\"input-error\">" + HtmlEscape(error) + "</p>") +
        "<form id=\"kc-form-login\" method=\"post\" action=\"/authorize\">" + hidden +
        "<p><label for=\"username\">Username</label> <input id=\"username\" name=\"username\" "
        "autocomplete=\"username\" autofocus required></p>"
        "<p><label for=\"password\">Password</label> <input id=\"password\" name=\"password\" type=\"password\" "
        "autocomplete=\"current-password\" required></p>"
        "<p><button id=\"kc-login\" type=\"submit\">Sign in</button></p></form></main></body></html>";
    return form;
  }

  Response Token(const std::map<std::string, std::string>& form) {
    auto get = [&](const char* k) {
      auto it = form.find(k);
      return it == form.end() ? std::string() : it->second;
    };
    const std::string grant = get("grant_type");
    if (grant == "client_credentials") {
      const auto client = clients_.find(get("client_id"));
      if (client == clients_.end() || get("client_secret") != client->second.secret)
        return OAuthError(401, "invalid_client", "unknown client or wrong secret");
      return JsonAnswer(200, {{"access_token", AccessToken(client->first, client->first, client->second.roles, {})},
                              {"token_type", "Bearer"},
                              {"expires_in", options_.lifetime}});
    }
    if (grant == "authorization_code") return ExchangeCode(get("code"), get("redirect_uri"), get("client_id"),
                                                           get("code_verifier"));
    if (grant == "refresh_token") return Refresh(get("refresh_token"), get("client_id"));
    return OAuthError(400, "unsupported_grant_type",
                      "grant_type must be client_credentials, authorization_code or refresh_token");
  }

  Response ExchangeCode(const std::string& code, const std::string& redirect_uri, const std::string& client_id,
                        const std::string& verifier) {
    CodeGrant g;
    {
      std::lock_guard lock(mu_);
      auto it = codes_.find(code);
      if (it == codes_.end()) return OAuthError(400, "invalid_grant", "unknown or already used code");
      g = it->second;
      codes_.erase(it);  // single use, whatever happens next
    }
    if (Clock::now() > g.expires) return OAuthError(400, "invalid_grant", "the code has expired");
    if (client_id != g.client_id) return OAuthError(400, "invalid_grant", "the code was issued to another client");
    if (redirect_uri != g.redirect_uri) return OAuthError(400, "invalid_grant", "redirect_uri differs from the request's");
    if (verifier.empty()) return OAuthError(400, "invalid_request", "code_verifier is required");
    if (S256(verifier) != g.challenge) return OAuthError(400, "invalid_grant", "code_verifier does not match the challenge");
    return UserTokens(g.client_id, g.user, g.scope, g.nonce);
  }

  Response Refresh(const std::string& token, const std::string& client_id) {
    RefreshGrant g;
    {
      std::lock_guard lock(mu_);
      auto it = refresh_.find(token);
      if (it == refresh_.end()) return OAuthError(400, "invalid_grant", "unknown or already used refresh token");
      g = it->second;
      refresh_.erase(it);  // rotation: a refresh token works once
    }
    if (Clock::now() > g.expires) return OAuthError(400, "invalid_grant", "the refresh token has expired");
    if (client_id != g.client_id) return OAuthError(400, "invalid_grant", "the refresh token was issued to another client");
    return UserTokens(g.client_id, g.user, g.scope, "");
  }

  Response UserTokens(const std::string& client_id, const std::string& user, const std::string& scope,
                      const std::string& nonce) {
    const auto& roles = users_.at(user).roles;
    const std::string refresh = RandomToken();
    {
      std::lock_guard lock(mu_);
      refresh_[refresh] = {client_id, user, scope, Clock::now() + std::chrono::seconds(kRefreshLifetimeSeconds)};
    }
    json id_claims = {{"preferred_username", user}};
    if (!nonce.empty()) id_claims["nonce"] = nonce;
    return JsonAnswer(200, {{"access_token", AccessToken(user, client_id, roles, {{"preferred_username", user}})},
                            {"token_type", "Bearer"},
                            {"expires_in", options_.lifetime},
                            {"refresh_token", refresh},
                            {"refresh_expires_in", kRefreshLifetimeSeconds},
                            {"id_token", Jwt(user, client_id, client_id, id_claims)},
                            {"scope", scope.empty() ? "openid" : scope}});
  }

  std::string AccessToken(const std::string& sub, const std::string& azp, const std::vector<std::string>& roles,
                          json extra) {
    extra["resource_access"] = {{options_.roles_client, {{"roles", roles}}}};
    return Jwt(sub, azp, options_.audience, std::move(extra));
  }

  std::string Jwt(const std::string& sub, const std::string& azp, const std::string& audience, json claims) {
    const auto now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    claims.update({{"iss", options_.issuer}, {"aud", audience}, {"sub", sub}, {"azp", azp}, {"iat", now},
                   {"nbf", now}, {"exp", now + options_.lifetime}, {"jti", std::to_string(++issued_)}});
    const std::string header = Base64Url(json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", kKid}}.dump());
    const std::string body = Base64Url(claims.dump());
    return header + "." + body + "." + Sign(key_, header + "." + body);
  }

  static constexpr const char* kKid = "oidc-sim-1";
  const Options options_;
  const std::map<std::string, Account> clients_;
  const std::map<std::string, Account> users_;
  const std::set<std::string> public_clients_;
  EVP_PKEY* const key_;
  std::atomic<int> issued_{0};
  std::mutex mu_;
  std::map<std::string, CodeGrant> codes_;
  std::map<std::string, RefreshGrant> refresh_;
};

// Parses repeated ID:SECRET[:ROLES] specs into `into`; false (with a message) on a bad one.
bool AddAccounts(const std::vector<std::string>& specs, const char* flag, std::map<std::string, Account>& into) {
  for (const auto& spec : specs) {
    auto parsed = ParseSpec(spec);
    if (!parsed) {
      std::cerr << "oidc-sim: " << flag << " wants NAME:SECRET[:ROLE,ROLE...], not " << spec << "\n";
      return false;
    }
    into[parsed->first] = {parsed->second.first, parsed->second.second};
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"oidc-sim: an OpenID Connect issuer for tests and the demo (RS256 JWTs, JWKS, "
               "client credentials, authorization code with PKCE, refresh)"};
  std::string ready_file, client_id = "ccm", client_secret = "ccm-secret";
  Issuer::Options options{.issuer = "http://oidc-sim", .audience = "ccm", .roles_client = "ccm"};
  cli.add_option("--ready-file", ready_file, "Write host:port here once listening")->required();
  std::uint16_t listen_port = 0;
  cli.add_option("--port", listen_port, "Listen on this loopback port (default: any free one)");
  cli.add_option("--client-id", client_id)->capture_default_str();
  cli.add_option("--client-secret", client_secret)->capture_default_str();
  cli.add_option("--lifetime,--token-ttl-seconds", options.lifetime, "Access token lifetime in seconds")
      ->capture_default_str();
  cli.add_option("--issuer", options.issuer)->capture_default_str();
  cli.add_option("--audience", options.audience)->capture_default_str();
  cli.add_option("--roles-client", options.roles_client, "The client whose roles tokens carry (resource_access)")
      ->capture_default_str();
  std::vector<std::string> client_specs, user_specs, public_clients;
  cli.add_option("--client", client_specs, "ID:SECRET[:ROLE,ROLE...] (repeatable)");
  cli.add_option("--user", user_specs, "NAME:PASSWORD[:ROLE,ROLE...] (repeatable), for the code grant");
  cli.add_option("--public-client", public_clients, "ID of a public client of the code grant (repeatable)");
  CLI11_PARSE(cli, argc, argv);
  std::map<std::string, Account> clients = {{client_id, {client_secret, {}}}}, users;
  if (!AddAccounts(client_specs, "--client", clients) || !AddAccounts(user_specs, "--user", users)) return 2;
  Issuer issuer(options, std::move(clients), std::move(users), public_clients);

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  ccm::http::ServerOptions server_options;
  server_options.port = listen_port;
  server_options.handler_threads = 4;
  ccm::http::Server server(server_options, [&](Request& r) { return issuer.Handle(r); });
  if (auto s = server.Start(); !s) {
    std::cerr << "oidc-sim: " << s.error().message << "\n";
    return 1;
  }
  std::ofstream(ready_file) << "127.0.0.1:" << server.port() << "\n";
  int sig = 0;
  sigwait(&stop, &sig);
  server.Stop();
  return 0;
}
