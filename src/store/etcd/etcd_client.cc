#include "store/etcd/etcd_client.h"

#include <openssl/evp.h>

#include "cloudevents/json_parse.h"
#include "transport/http_connection.h"

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

// What every connection to a member shares: HTTP/1.1 (the gateway's JSON, not gRPC over h2)
// and the TLS files. Verification stays on (the transport never turns it off). No trace
// context: etcd does not take part in ccm's traces.
transport::ConnectionOptions ConnectionOptionsOf(const ClientOptions& o) {
  transport::ConnectionOptions c;
  c.tls.ca_file = o.ca_file;
  c.tls.cert_file = o.cert_file;
  c.tls.key_file = o.key_file;
  c.http1_only = true;
  c.propagate_trace = false;
  return c;
}

// The transport's reason for a failed transfer (with libcurl's detail: for TLS, which
// certificate was refused, or the member's alert), and what an operator can do about it.
std::string TransferError(const transport::Response& r) {
  std::string out = r.transport_error;
  switch (r.failure) {
    case transport::Failure::kTlsPeerUnverified:
      out += ": the member's certificate is not signed by the CA of CCM_ETCD_CA_FILE, or does not name its host";
      break;
    case transport::Failure::kTlsLocalFiles:
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
  explicit Handle(transport::ConnectionOptions options) : connection(std::move(options)) {}
  transport::Connection connection;
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
  transport::ConnectionOptions o = ConnectionOptionsOf(options_);
  o.observer = [this](long status, bool transport_failed, std::chrono::nanoseconds took) {
    options_.tag.Observe(ports::RemoteOutcomeOf(status, transport_failed), took);
  };
  return std::make_unique<Handle>(std::move(o));
}

void Client::Return(std::unique_ptr<Handle> h) {
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(h));
}

Result<json> Client::Call(const std::string& path, const json& body) {
  ++calls_;
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
  transport::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", token);
  transport::Request request;
  request.headers = &headers;
  request.body = payload;
  request.connect_timeout = options_.connect_timeout;
  request.total_timeout = options_.request_timeout;
  std::string last_error;
  const size_t n = options_.endpoints.size();
  const size_t first = preferred_.load();
  auto done = [&](Result<json> r) {
    Return(std::move(handle));
    return r;
  };
  for (size_t attempt = 0; attempt < n; ++attempt) {
    const size_t at = (first + attempt) % n;
    const transport::Response r = handle->connection.Send(options_.endpoints[at] + path, request);
    if (!r.transport_error.empty()) {
      last_error = options_.endpoints[at] + ": " + TransferError(r);
      continue;
    }
    const std::string& answer = r.body;
    const long status = r.status;
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
                                            std::int64_t limit, bool newest_first) {
  json body = GetOp(prefix, PrefixEnd(prefix), limit)["request_range"];
  body["sort_order"] = newest_first ? "DESCEND" : "ASCEND";
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

Watch::Watch(ClientOptions options, std::string prefix, std::function<void()> on_change, WatchFor changes)
    : options_(std::move(options)),
      auth_(options_),
      prefix_(std::move(prefix)),
      on_change_(std::move(on_change)),
      changes_(changes) {}

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

void Watch::Run() {
  // One stream at a time, on the transport's streaming mode: no total timeout, lines
  // handed over as they arrive, aborted by Stop within about a second.
  transport::Connection connection(ConnectionOptionsOf(options_));
  json create = {{"key", Encode(prefix_)}, {"range_end", Encode(PrefixEnd(prefix_))}};
  if (changes_ == WatchFor::kPuts) create["filters"] = json::array({"NODELETE"});
  const json request = {{"create_request", std::move(create)}};
  const std::string payload = request.dump();
  size_t at = 0;
  std::string stale;  // the token etcd refused last, so that the next stream gets a new one
  while (!stop_) {
    std::string buffer;      // what arrived after the last complete line
    bool ended = false;      // etcd cancelled the watch or answered an error: reconnect
    bool refused = false;
    auto on_line = [this, &ended, &refused](std::string_view line) {
      json j = cloudevents::ParseJsonOrDiscarded(line);
      if (j.is_discarded() || !j.is_object()) return;
      if (auto e = j.find("error"); e != j.end()) {
        // The gateway ends a refused stream with {"error": {grpc_code, message, ...}}.
        const std::string message = e->is_object() ? e->value("message", "") : e->dump();
        const int code = e->is_object() ? e->value("grpc_code", 0) : 0;
        refused = TokenRefused(e->is_object() ? e->value("http_code", 0L) : 0L, code, message);
        ended = true;
        return;
      }
      const json& result = j.contains("result") ? j["result"] : j;
      if (result.value("canceled", false)) {
        // Refused at creation (a token that expired between signing in and the stream counts
        // as "permission denied" there), or compacted: start over.
        refused = true;
        ended = true;
        return;
      }
      // After (re)creating the stream, changes may have been missed: report one as well.
      if (result.value("created", false) || result.contains("events")) {
        ++batches_;
        on_change_();
      }
    };
    auto token = auth_.Token(stale);
    if (token) {
      transport::Headers headers;
      if (!token->empty()) headers.emplace("Authorization", *token);
      transport::Request watch;
      watch.headers = &headers;
      watch.body = payload;
      watch.connect_timeout = options_.connect_timeout;
      watch.on_chunk = [&](std::string_view chunk) {
        buffer.append(chunk);
        size_t from = 0;
        for (size_t nl; !ended && (nl = buffer.find('\n', from)) != std::string::npos; from = nl + 1)
          on_line(std::string_view(buffer).substr(from, nl - from));
        buffer.erase(0, from);
        return !ended && !stop_;
      };
      watch.keep_going = [&] { return !ended && !stop_; };
      // Returns when the stream breaks, etcd ends it, or Stop aborts it.
      (void)connection.Send(options_.endpoints[at % options_.endpoints.size()] + "/v3/watch", watch);
      stale = refused ? *token : std::string();
    }
    if (stop_) break;
    if (!refused) ++at;  // try the next member
    for (int i = 0; i < 5 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace ccm::store::etcd
