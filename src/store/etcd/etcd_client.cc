#include "store/etcd/etcd_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include "cloudevents/json_parse.h"

namespace ccm::store::etcd {

using nlohmann::json;

namespace {

std::string Encode(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string Decode(const std::string& text) {
  if (text.empty()) return {};
  std::string out(3 * (text.size() / 4) + 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return {};
  size_t len = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (text.size() >= 1 && text[text.size() - 1] == '=') --len;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

// The gateway writes int64 fields as strings and leaves out those that are zero.
std::int64_t Int(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end()) return 0;
  if (it->is_string()) return std::stoll(it->get<std::string>());
  if (it->is_number()) return it->get<std::int64_t>();
  return 0;
}

RangeResult ReadRange(const json& j) {
  RangeResult r;
  if (auto h = j.find("header"); h != j.end()) r.revision = Int(*h, "revision");
  r.more = j.value("more", false);
  r.count = Int(j, "count");
  if (auto kvs = j.find("kvs"); kvs != j.end())
    for (const auto& kv : *kvs)
      r.kvs.push_back({Decode(kv.value("key", "")), Decode(kv.value("value", "")), Int(kv, "create_revision"),
                       Int(kv, "mod_revision"), Int(kv, "version"), Int(kv, "lease")});
  return r;
}

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// What every connection to a member shares: HTTP/1.1 (the gateway's JSON, not gRPC over h2),
// the connect timeout, and the TLS files. Verification stays on (libcurl's default).
void SetTransport(CURL* c, const ClientOptions& o) {
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (!o.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, o.ca_file.c_str());
  if (!o.cert_file.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, o.cert_file.c_str());
  if (!o.key_file.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, o.key_file.c_str());
}

// curl's reason for a failed transfer, with the detail of its error buffer (for TLS: which
// certificate was refused, or the member's alert), and what an operator can do about it.
std::string TransferError(CURLcode rc, const char* detail) {
  std::string out = curl_easy_strerror(rc);
  if (detail && *detail) out += std::string(" (") + detail + ")";
  switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
      out += ": the member's certificate is not signed by the CA of CCM_ETCD_CA_FILE, or does not name its host";
      break;
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
      out += ": check CCM_ETCD_CA_FILE, CCM_ETCD_CERT_FILE and CCM_ETCD_KEY_FILE";
      break;
    default:
      if (std::string_view(out).find("alert") != std::string_view::npos)
        out += ": the member refused the TLS handshake (does it require a client certificate, CCM_ETCD_CERT_FILE?)";
  }
  return out;
}

// etcd refused the call for its token alone: it expired (simple tokens live --auth-token-ttl
// after their last use), the auth store changed since it was issued, or none was sent.
bool TokenRefused(long status, int code, const std::string& message) {
  return status == 401 || code == 16 || message.find("invalid auth token") != std::string::npos ||
         message.find("revision of auth store is old") != std::string::npos ||
         message.find("user name is empty") != std::string::npos;
}

}  // namespace

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

json PutOp(const std::string& key, const std::string& value, std::int64_t lease) {
  json put = {{"key", Encode(key)}, {"value", Encode(value)}};
  if (lease != 0) put["lease"] = std::to_string(lease);
  return {{"request_put", put}};
}

json DeleteOp(const std::string& key) { return {{"request_delete_range", {{"key", Encode(key)}}}}; }

json GetOp(const std::string& key, const std::string& range_end, std::int64_t limit) {
  json get = {{"key", Encode(key)}};
  if (!range_end.empty()) get["range_end"] = Encode(range_end);
  if (limit > 0) get["limit"] = std::to_string(limit);
  return {{"request_range", get}};
}

json ModRevisionIs(const std::string& key, std::int64_t revision) {
  return {{"key", Encode(key)}, {"target", "MOD"}, {"result", "EQUAL"}, {"mod_revision", std::to_string(revision)}};
}

json NothingChangedSince(const std::string& prefix, std::int64_t revision) {
  return {{"key", Encode(prefix)},
          {"range_end", Encode(PrefixEnd(prefix))},
          {"target", "MOD"},
          {"result", "LESS"},
          {"mod_revision", std::to_string(revision + 1)}};
}

json CreateRevisionIs(const std::string& key, std::int64_t revision) {
  return {{"key", Encode(key)},
          {"target", "CREATE"},
          {"result", "EQUAL"},
          {"create_revision", std::to_string(revision)}};
}

json LeaseIs(const std::string& key, std::int64_t lease) {
  return {{"key", Encode(key)}, {"target", "LEASE"}, {"result", "EQUAL"}, {"lease", std::to_string(lease)}};
}

struct Client::Handle {
  CURL* curl = curl_easy_init();
  ~Handle() { curl_easy_cleanup(curl); }
};

Client::Client(ClientOptions options) : options_(std::move(options)) {}
Client::~Client() = default;

std::unique_ptr<Client::Handle> Client::Borrow() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  return std::make_unique<Handle>();
}

void Client::Return(std::unique_ptr<Handle> h) {
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(h));
}

Result<json> Client::Call(const std::string& path, const json& body) {
  const std::string payload = body.dump();
  auto token = Token();
  if (!token) return token.error();
  bool refused = false;
  auto answer = CallOnce(path, payload, *token, refused);
  if (!refused) return answer;
  // Once more with a new token: the caller sees no expiry.
  token = Token(*token);
  if (!token) return token.error();
  return CallOnce(path, payload, *token, refused);
}

Result<std::string> Client::Token(const std::string& stale) {
  if (options_.username.empty()) return std::string();
  std::lock_guard lock(token_mu_);
  if (!token_.empty() && token_ != stale) return token_;
  bool refused = false;
  auto j = CallOnce("/v3/auth/authenticate", json{{"name", options_.username}, {"password", options_.password}}.dump(),
                    {}, refused);
  ++authentications_;
  // Unavailable, not unauthenticated: the store cannot be used (a password rotated under a
  // running replica), which says nothing about the credentials of ccm's own callers.
  if (!j) {
    if (j.error().code == ErrorCode::kUnavailable) return j.error();
    return Error::Unavailable("etcd: signing in as user '" + options_.username + "' failed: " + j.error().message);
  }
  auto t = j->find("token");
  if (t == j->end() || !t->is_string() || t->get<std::string>().empty())
    return Error::Unavailable("etcd: signing in as user '" + options_.username +
                              "' gave no token (is authentication enabled on etcd?)");
  token_ = t->get<std::string>();
  return token_;
}

Result<json> Client::CallOnce(const std::string& path, const std::string& payload, const std::string& token,
                              bool& token_refused) {
  token_refused = false;
  if (options_.endpoints.empty()) return Error::Unavailable("etcd: no endpoints");
  auto handle = Borrow();
  CURL* c = handle->curl;
  const std::string authorization = "Authorization: " + token;
  curl_slist* headers = token.empty() ? nullptr : curl_slist_append(nullptr, authorization.c_str());
  std::string last_error;
  const size_t n = options_.endpoints.size();
  const size_t first = preferred_.load();
  auto done = [&](Result<json> r) {
    curl_slist_free_all(headers);
    Return(std::move(handle));
    return r;
  };
  for (size_t attempt = 0; attempt < n; ++attempt) {
    const size_t at = (first + attempt) % n;
    const std::string url = options_.endpoints[at] + path;
    std::string answer;
    char detail[CURL_ERROR_SIZE] = {};
    curl_easy_reset(c);
    SetTransport(c, options_);
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
    const auto started = std::chrono::steady_clock::now();
    const CURLcode rc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    options_.tag.Observe(app::RemoteOutcomeOf(status, rc != CURLE_OK), std::chrono::steady_clock::now() - started);
    if (rc != CURLE_OK) {
      last_error = options_.endpoints[at] + ": " + TransferError(rc, detail);
      continue;
    }
    json j = cloudevents::ParseJsonOrDiscarded(answer);
    if (status == 200 && !j.is_discarded()) {
      if (at != first) preferred_.store(at);
      return done(std::move(j));
    }
    std::string message = j.is_object() ? j.value("message", j.value("error", answer)) : answer;
    const int code = j.is_object() ? j.value("code", 0) : 0;
    last_error = options_.endpoints[at] + " answered " + std::to_string(status) + ": " + message;
    if (message.find("CommonName of client") != std::string::npos)
      last_error += " (with --client-cert-auth and authentication on, etcd's gateway refuses a client certificate "
                    "that has a CommonName: CCM_ETCD_CERT_FILE needs one whose subject has no CN)";
    // 14 unavailable (no leader, stopping), 4 deadline exceeded: another member may serve.
    if (status >= 500 && (code == 14 || code == 4 || code == 0)) continue;
    token_refused = !token.empty() && TokenRefused(status, code, message);
    return done(Error::Internal("etcd: " + last_error));
  }
  return done(Error::Unavailable("etcd: no member answered " + path + " (last: " + last_error + ")"));
}

Result<RangeResult> Client::Range(const std::string& key, const std::string& range_end, std::int64_t limit,
                                  bool count_only) {
  json body = GetOp(key, range_end, limit)["request_range"];
  if (count_only) body["count_only"] = true;
  auto j = Call("/v3/kv/range", body);
  if (!j) return j.error();
  return ReadRange(*j);
}

Result<RangeResult> Client::RangeByCreation(const std::string& prefix, std::int64_t min_create_revision,
                                            std::int64_t limit) {
  json body = GetOp(prefix, PrefixEnd(prefix), limit)["request_range"];
  body["sort_order"] = "ASCEND";
  body["sort_target"] = "CREATE";
  if (min_create_revision > 0) body["min_create_revision"] = std::to_string(min_create_revision);
  auto j = Call("/v3/kv/range", body);
  if (!j) return j.error();
  return ReadRange(*j);
}

Result<TxnResult> Client::Txn(const json& compare, const json& success, const json& failure) {
  auto j = Call("/v3/kv/txn", {{"compare", compare}, {"success", success}, {"failure", failure}});
  if (!j) return j.error();
  TxnResult t;
  t.succeeded = j->value("succeeded", false);
  if (auto h = j->find("header"); h != j->end()) t.revision = Int(*h, "revision");
  if (auto rs = j->find("responses"); rs != j->end())
    for (const auto& r : *rs) {
      auto range = r.find("response_range");
      t.ranges.push_back(range != r.end() ? ReadRange(*range) : RangeResult{});
    }
  return t;
}

Result<std::int64_t> Client::GrantLease(std::chrono::seconds ttl) {
  auto j = Call("/v3/lease/grant", {{"TTL", std::to_string(ttl.count())}});
  if (!j) return j.error();
  const std::int64_t id = Int(*j, "ID");
  if (id == 0) return Error::Internal("etcd: lease grant returned no id: " + j->value("error", j->dump()));
  return id;
}

Result<std::int64_t> Client::KeepAlive(std::int64_t lease) {
  auto j = Call("/v3/lease/keepalive", {{"ID", std::to_string(lease)}});
  if (!j) return j.error();
  auto result = j->find("result");
  if (result == j->end()) return Error::Unavailable("etcd: keepalive had no result: " + j->dump());
  return Int(*result, "TTL");
}

Status Client::Revoke(std::int64_t lease) {
  auto j = Call("/v3/lease/revoke", {{"ID", std::to_string(lease)}});
  if (!j) return j.error();
  return {};
}

// ---- watch ---------------------------------------------------------------------------------

Watch::Watch(ClientOptions options, std::string prefix, std::function<void()> on_change)
    : options_(std::move(options)), auth_(options_), prefix_(std::move(prefix)), on_change_(std::move(on_change)) {}

Watch::~Watch() { Stop(); }

void Watch::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void Watch::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

namespace {

struct Stream {
  std::atomic<bool>* stop;
  std::string buffer;
  std::function<void()> on_line;  // called for each complete line in `line`
  std::string line;
  bool ended = false;  // etcd cancelled the watch or answered an error: reconnect
};

size_t OnStreamData(char* data, size_t size, size_t n, void* p) {
  auto* s = static_cast<Stream*>(p);
  s->buffer.append(data, size * n);
  for (size_t nl; (nl = s->buffer.find('\n')) != std::string::npos;) {
    s->line = s->buffer.substr(0, nl);
    s->buffer.erase(0, nl + 1);
    s->on_line();
  }
  return size * n;
}

int OnStreamProgress(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* s = static_cast<Stream*>(p);
  return s->stop->load() || s->ended ? 1 : 0;
}

}  // namespace

void Watch::Run() {
  CURL* c = curl_easy_init();
  const json request = {{"create_request", {{"key", Encode(prefix_)}, {"range_end", Encode(PrefixEnd(prefix_))}}}};
  const std::string payload = request.dump();
  size_t at = 0;
  std::string stale;  // the token etcd refused last, so that the next stream gets a new one
  while (!stop_) {
    Stream s{&stop_, {}, {}, {}, false};
    bool refused = false;
    s.on_line = [this, &s, &refused] {
      json j = cloudevents::ParseJsonOrDiscarded(s.line);
      if (j.is_discarded() || !j.is_object()) return;
      if (auto e = j.find("error"); e != j.end()) {
        // The gateway ends a refused stream with {"error": {grpc_code, message, ...}}.
        const std::string message = e->is_object() ? e->value("message", "") : e->dump();
        const int code = e->is_object() ? e->value("grpc_code", 0) : 0;
        refused = TokenRefused(e->is_object() ? e->value("http_code", 0L) : 0L, code, message);
        s.ended = true;
        return;
      }
      const json& result = j.contains("result") ? j["result"] : j;
      if (result.value("canceled", false)) {
        // Refused at creation (a token that expired between signing in and the stream counts
        // as "permission denied" there), or compacted: start over.
        refused = true;
        s.ended = true;
        return;
      }
      // After (re)creating the stream, changes may have been missed: report one as well.
      if (result.value("created", false) || result.contains("events")) {
        ++batches_;
        on_change_();
      }
    };
    auto token = auth_.Token(stale);
    curl_slist* headers = nullptr;
    if (token && !token->empty()) headers = curl_slist_append(nullptr, ("Authorization: " + *token).c_str());
    if (token) {
      const std::string url = options_.endpoints[at % options_.endpoints.size()] + "/v3/watch";
      curl_easy_reset(c);
      SetTransport(c, options_);
      curl_easy_setopt(c, CURLOPT_URL, url.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
      if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnStreamData);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnStreamProgress);
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
      curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
      curl_easy_perform(c);  // returns when the stream breaks, etcd ends it, or Stop aborts it
      curl_slist_free_all(headers);
      stale = refused ? *token : std::string();
    }
    if (stop_) break;
    if (!refused) ++at;  // try the next member
    for (int i = 0; i < 5 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  curl_easy_cleanup(c);
}

}  // namespace ccm::store::etcd
