#include "store/etcd/etcd_client.h"

#include <algorithm>
#include <fstream>
#include <iterator>

#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace ccm::store::etcd {

namespace pb = etcdserverpb;

namespace {

// Channels (HTTP/2 connections) per member, which every thread shares. One carries any number
// of concurrent calls; one, four and sixteen gave the same rates under ccm's moves
// (docs/benchmarks.md, "etcd over gRPC"); a few keep one slow connection from holding all.
constexpr int kChannelsPerMember = 4;

// gRPC's own log lines (a refused handshake, a connection lost) go to ccm's log, at debug:
// what matters of them reaches the caller in the call's status.
void RouteGrpcLog() {
  static std::once_flag once;
  std::call_once(once, [] {
    gpr_set_log_function([](gpr_log_func_args* args) { spdlog::debug("etcd: grpc: {}", args->message); });
  });
}

// etcd refused the call for its token alone: it expired (simple tokens live --auth-token-ttl
// after their last use), the auth store changed since it was issued, or none was sent.
bool TokenRefused(const grpc::Status& s) {
  const std::string& message = s.error_message();
  return s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         message.find("invalid auth token") != std::string::npos ||
         message.find("revision of auth store is old") != std::string::npos ||
         message.find("user name is empty") != std::string::npos;
}

// Another member may serve the call: this one cannot be reached, has no leader, is stopping,
// or did not answer in time.
bool TryAnotherMember(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

ports::RemoteOutcome OutcomeOf(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return ports::RemoteOutcome::kOk;
    // No answer from this member (unreachable, no leader, stopping, too slow): counted as a
    // transport failure, as the call then moves on to the next member.
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return ports::RemoteOutcome::kTransport;
    // What etcd's gateway answered 4xx for (400, 401, 403, 404, 408, 409, 429).
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNAUTHENTICATED:
      return ports::RemoteOutcome::kHttp4xx;
    default:
      return ports::RemoteOutcome::kHttp5xx;
  }
}

// Why a member could not be reached, and what an operator can do about it.
std::string Unreachable(const grpc::Status& s, bool tls, const ClientOptions& o) {
  std::string out = s.error_message();
  if (!tls) return out;
  const auto has = [&out](const char* what) { return out.find(what) != std::string::npos; };
  if (has("CERTIFICATE_VERIFY_FAILED") || has("certificate verify failed") || has("Peer name") ||
      has("not in peer certificate"))
    out += ": the member's certificate is not signed by the CA of CCM_ETCD_CA_FILE, or does not name its host";
  else if (has("alert") || has("andshake"))
    out += o.cert_file.empty()
               ? ": the member refused the TLS handshake (does it require a client certificate, CCM_ETCD_CERT_FILE?)"
               : ": the member refused the TLS handshake (is CCM_ETCD_CERT_FILE signed by a CA the member trusts?)";
  else if (o.cert_file.empty() && (has("Endpoint read failed") || has("Socket closed") || has("Connection reset")))
    // Under TLS 1.3 a member that wants a certificate closes the connection after the
    // handshake; a member that stopped does the same.
    out += ": the member closed the connection (stopped, or does it require a client certificate, CCM_ETCD_CERT_FILE?)";
  return out;
}

Result<std::string> ReadPem(const std::string& path, const char* setting) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::Unavailable(std::string("etcd: cannot read ") + setting + " (" + path + ")");
  std::string text{std::istreambuf_iterator<char>(in), {}};
  if (text.find("-----BEGIN") == std::string::npos)
    return Error::Unavailable(std::string("etcd: ") + setting + " (" + path + ") holds no PEM block");
  return text;
}

// The client certificate and its key as OpenSSL reads them, and whether they belong
// together: a mistake is named here, at start-up, rather than as a handshake that fails.
Status CheckKeyPair(const std::string& cert_pem, const std::string& key_pem, const ClientOptions& o) {
  // OpenSSL's reasons stay off this thread's error queue, where a later TLS call would find them.
  struct ClearErrors {
    ~ClearErrors() { ERR_clear_error(); }
  } clear_errors;
  using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
  Bio cert_bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr),
                                                   X509_free);
  if (!cert) return Error::Unavailable("etcd: CCM_ETCD_CERT_FILE (" + o.cert_file + ") holds no certificate");
  Bio key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), BIO_free);
  // No passphrase is asked for (nor read from a terminal): an encrypted key is refused.
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr), EVP_PKEY_free);
  if (!key)
    return Error::Unavailable("etcd: CCM_ETCD_KEY_FILE (" + o.key_file +
                              ") holds no private key that can be read without a passphrase");
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    return Error::Unavailable("etcd: CCM_ETCD_KEY_FILE (" + o.key_file + ") is not the key of CCM_ETCD_CERT_FILE (" +
                              o.cert_file + ")");
  return {};
}

// The credentials of the member's URL: TLS for https://, with the CA and client certificate
// of `o`; none for http://.
Result<std::shared_ptr<grpc::ChannelCredentials>> CredentialsFor(bool tls, const ClientOptions& o) {
  if (!tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!o.ca_file.empty()) {
    auto ca = ReadPem(o.ca_file, "CCM_ETCD_CA_FILE");
    if (!ca) return ca.error();
    ssl.pem_root_certs = std::move(*ca);
  }
  if (o.cert_file.empty() != o.key_file.empty())
    return Error::Unavailable("etcd: CCM_ETCD_CERT_FILE and CCM_ETCD_KEY_FILE go together");
  if (!o.cert_file.empty()) {
    auto cert = ReadPem(o.cert_file, "CCM_ETCD_CERT_FILE");
    if (!cert) return cert.error();
    auto key = ReadPem(o.key_file, "CCM_ETCD_KEY_FILE");
    if (!key) return key.error();
    if (auto pair = CheckKeyPair(*cert, *key, o); !pair) return pair.error();
    ssl.pem_cert_chain = std::move(*cert);
    ssl.pem_private_key = std::move(*key);
  }
  return grpc::SslCredentials(ssl);
}

RangeResult ReadRange(pb::RangeResponse& r) {
  RangeResult out;
  out.revision = r.header().revision();
  out.more = r.more();
  out.count = r.count();
  out.kvs.reserve(static_cast<size_t>(r.kvs_size()));
  for (auto& kv : *r.mutable_kvs())
    out.kvs.push_back({std::move(*kv.mutable_key()), std::move(*kv.mutable_value()), kv.create_revision(),
                       kv.mod_revision(), kv.version(), kv.lease()});
  return out;
}

void Fill(pb::RequestOp& to, Op&& op) {
  switch (op.kind) {
    case Op::Kind::kPut: {
      auto* put = to.mutable_request_put();
      put->set_key(std::move(op.key));
      put->set_value(std::move(op.value));
      put->set_lease(op.lease);
      break;
    }
    case Op::Kind::kDelete:
      to.mutable_request_delete_range()->set_key(std::move(op.key));
      break;
    case Op::Kind::kGet: {
      auto* get = to.mutable_request_range();
      get->set_key(std::move(op.key));
      get->set_range_end(std::move(op.range_end));
      get->set_limit(op.limit);
      break;
    }
  }
}

void Fill(pb::Compare& to, Compare&& c) {
  to.set_key(std::move(c.key));
  to.set_range_end(std::move(c.range_end));
  to.set_result(c.relation == Compare::Relation::kEqual ? pb::Compare::EQUAL : pb::Compare::LESS);
  switch (c.target) {
    case Compare::Target::kMod:
      to.set_target(pb::Compare::MOD);
      to.set_mod_revision(c.value);
      break;
    case Compare::Target::kCreate:
      to.set_target(pb::Compare::CREATE);
      to.set_create_revision(c.value);
      break;
    case Compare::Target::kLease:
      to.set_target(pb::Compare::LEASE);
      to.set_lease(c.value);
      break;
  }
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

Op PutOp(std::string key, std::string value, std::int64_t lease) {
  return {Op::Kind::kPut, std::move(key), std::move(value), {}, lease, 0};
}

Op DeleteOp(std::string key) { return {Op::Kind::kDelete, std::move(key)}; }

Op GetOp(std::string key, std::string range_end, std::int64_t limit) {
  return {Op::Kind::kGet, std::move(key), {}, std::move(range_end), 0, limit};
}

Compare ModRevisionIs(std::string key, std::int64_t revision) {
  return {std::move(key), {}, Compare::Target::kMod, Compare::Relation::kEqual, revision};
}

Compare NothingChangedSince(const std::string& prefix, std::int64_t revision) {
  return {prefix, PrefixEnd(prefix), Compare::Target::kMod, Compare::Relation::kLess, revision + 1};
}

Compare CreateRevisionIs(std::string key, std::int64_t revision) {
  return {std::move(key), {}, Compare::Target::kCreate, Compare::Relation::kEqual, revision};
}

Compare LeaseIs(std::string key, std::int64_t lease) {
  return {std::move(key), {}, Compare::Target::kLease, Compare::Relation::kEqual, lease};
}

// ---- members -------------------------------------------------------------------------------

struct Client::Member {
  std::string url;    // as configured, for errors
  bool tls = false;   // https://
  Status usable{};    // why the member cannot be used (a TLS file that cannot be read)
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<pb::KV::Stub>> kv;
  std::vector<std::unique_ptr<pb::Lease::Stub>> lease;
  std::vector<std::unique_ptr<pb::Auth::Stub>> auth;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::atomic<size_t> next{0};

  Member(const std::string& endpoint, const ClientOptions& o) : url(endpoint) {
    std::string target = endpoint;
    if (target.starts_with("https://")) {
      tls = true;
      target.erase(0, 8);
    } else if (target.starts_with("http://")) {
      target.erase(0, 7);
    }
    while (!target.empty() && target.back() == '/') target.pop_back();
    auto credentials = CredentialsFor(tls, o);
    if (!credentials) {
      usable = credentials.error();
      return;
    }
    for (int n = 0; n < kChannelsPerMember; ++n) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
      args.SetMaxReceiveMessageSize(-1);                    // ranges as large as etcd sends
      // Back at a restarted member within a second; a connection attempt lasts connect_timeout.
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(o.connect_timeout.count()));
      // A member gone silent (its host lost, a partition) ends the calls and streams on it
      // within 15 s: pings every 10 s, also on a watch that sends nothing after its request
      // (gRPC stops pinging after two pings without data unless told otherwise).
      args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
      args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
      auto channel = grpc::CreateCustomChannel(target, *credentials, args);
      kv.push_back(pb::KV::NewStub(channel));
      lease.push_back(pb::Lease::NewStub(channel));
      auth.push_back(pb::Auth::NewStub(channel));
      if (!watch) watch = pb::Watch::NewStub(channel);
      channels.push_back(std::move(channel));
    }
  }

  size_t Pick() { return next.fetch_add(1, std::memory_order_relaxed) % channels.size(); }
};

Client::Client(ClientOptions options) : options_(std::move(options)) {
  RouteGrpcLog();
  for (const auto& endpoint : options_.endpoints) members_.push_back(std::make_unique<Member>(endpoint, options_));
}

Client::~Client() = default;

template <typename Reply, typename Send>
Result<Reply> Client::Call(const char* what, Send send) {
  ++calls_;
  auto token = Token();
  if (!token) return token.error();
  bool refused = false;
  auto answer = CallOnce<Reply>(what, *token, refused, send);
  if (!refused) return answer;
  // Once more with a new token: the caller sees no expiry.
  token = Token(*token);
  if (!token) return token.error();
  return CallOnce<Reply>(what, *token, refused, send);
}

template <typename Reply, typename Send>
Result<Reply> Client::CallOnce(const char* what, const std::string& token, bool& token_refused, Send& send) {
  token_refused = false;
  if (members_.empty()) return Error::Unavailable("etcd: no endpoints");
  std::string last_error;
  const size_t n = members_.size();
  const size_t first = preferred_.load();
  for (size_t attempt = 0; attempt < n; ++attempt) {
    const size_t at = (first + attempt) % n;
    Member& member = *members_[at];
    if (!member.usable) {
      last_error = member.url + ": " + member.usable.error().message;
      continue;
    }
    const size_t channel = member.Pick();
    grpc::ClientContext context;
    const auto started = std::chrono::steady_clock::now();
    context.set_deadline(std::chrono::system_clock::now() + options_.request_timeout);
    if (!token.empty()) context.AddMetadata("token", token);
    Reply reply;
    const grpc::Status status = send(member, channel, context, reply);
    options_.tag.Observe(OutcomeOf(status), std::chrono::steady_clock::now() - started);
    if (status.ok()) {
      if (at != first) preferred_.store(at);
      return reply;
    }
    if (TryAnotherMember(status)) {
      last_error = member.url + ": " + Unreachable(status, member.tls, options_);
      continue;
    }
    token_refused = !token.empty() && TokenRefused(status);
    return Error::Internal("etcd: " + member.url + " refused " + what + ": " + status.error_message());
  }
  return Error::Unavailable(std::string("etcd: no member answered ") + what + " (last: " + last_error + ")");
}

Result<std::string> Client::Token(const std::string& stale) {
  if (options_.username.empty()) return std::string();
  std::lock_guard lock(token_mu_);
  if (!token_.empty() && token_ != stale) return token_;
  pb::AuthenticateRequest request;
  request.set_name(options_.username);
  request.set_password(options_.password);
  auto send = [&request](Member& m, size_t c, grpc::ClientContext& context, pb::AuthenticateResponse& reply) {
    return m.auth[c]->Authenticate(&context, request, &reply);
  };
  bool refused = false;
  auto answer = CallOnce<pb::AuthenticateResponse>("Authenticate", {}, refused, send);
  ++authentications_;
  // Unavailable, not unauthenticated: the store cannot be used (a password rotated under a
  // running replica), which says nothing about the credentials of ccm's own callers.
  if (!answer) {
    if (answer.error().code == ErrorCode::kUnavailable) return answer.error();
    return Error::Unavailable("etcd: signing in as user '" + options_.username + "' failed: " + answer.error().message);
  }
  if (answer->token().empty())
    return Error::Unavailable("etcd: signing in as user '" + options_.username +
                              "' gave no token (is authentication enabled on etcd?)");
  token_ = answer->token();
  return token_;
}

Result<RangeResult> Client::Range(const std::string& key, const std::string& range_end, std::int64_t limit,
                                  bool count_only) {
  pb::RangeRequest request;
  request.set_key(key);
  request.set_range_end(range_end);
  request.set_limit(limit);
  request.set_count_only(count_only);
  return RangeOf(request);
}

Result<RangeResult> Client::RangeByCreation(const std::string& prefix, std::int64_t min_create_revision,
                                            std::int64_t limit, bool newest_first) {
  pb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixEnd(prefix));
  request.set_limit(limit);
  request.set_sort_order(newest_first ? pb::RangeRequest::DESCEND : pb::RangeRequest::ASCEND);
  request.set_sort_target(pb::RangeRequest::CREATE);
  request.set_min_create_revision(min_create_revision);
  return RangeOf(request);
}

Result<RangeResult> Client::RangeOf(const pb::RangeRequest& request) {
  auto r = Call<pb::RangeResponse>("Range", [&request](Member& m, size_t c, grpc::ClientContext& context,
                                                       pb::RangeResponse& reply) {
    return m.kv[c]->Range(&context, request, &reply);
  });
  if (!r) return r.error();
  return ReadRange(*r);
}

Result<TxnResult> Client::Txn(std::vector<Compare> compare, std::vector<Op> success, std::vector<Op> failure) {
  pb::TxnRequest request;
  request.mutable_compare()->Reserve(static_cast<int>(compare.size()));
  for (auto& c : compare) Fill(*request.add_compare(), std::move(c));
  request.mutable_success()->Reserve(static_cast<int>(success.size()));
  for (auto& op : success) Fill(*request.add_success(), std::move(op));
  for (auto& op : failure) Fill(*request.add_failure(), std::move(op));
  auto r = Call<pb::TxnResponse>("Txn", [&request](Member& m, size_t c, grpc::ClientContext& context,
                                                   pb::TxnResponse& reply) {
    return m.kv[c]->Txn(&context, request, &reply);
  });
  if (!r) return r.error();
  TxnResult t;
  t.succeeded = r->succeeded();
  t.revision = r->header().revision();
  t.ranges.reserve(static_cast<size_t>(r->responses_size()));
  for (auto& op : *r->mutable_responses())
    t.ranges.push_back(op.has_response_range() ? ReadRange(*op.mutable_response_range()) : RangeResult{});
  return t;
}

Result<std::int64_t> Client::GrantLease(std::chrono::seconds ttl) {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl.count());
  auto r = Call<pb::LeaseGrantResponse>("LeaseGrant", [&request](Member& m, size_t c, grpc::ClientContext& context,
                                                                 pb::LeaseGrantResponse& reply) {
    return m.lease[c]->LeaseGrant(&context, request, &reply);
  });
  if (!r) return r.error();
  if (r->id() == 0) return Error::Internal("etcd: lease grant returned no id: " + r->error());
  return r->id();
}

Result<std::int64_t> Client::KeepAlive(std::int64_t lease) {
  // LeaseKeepAlive is a stream; one renewal is one request and its answer on a stream of its own.
  auto r = Call<pb::LeaseKeepAliveResponse>("LeaseKeepAlive", [lease](Member& m, size_t c,
                                                                      grpc::ClientContext& context,
                                                                      pb::LeaseKeepAliveResponse& reply) {
    auto stream = m.lease[c]->LeaseKeepAlive(&context);
    pb::LeaseKeepAliveRequest request;
    request.set_id(lease);
    // Finish without a cancel: it gives the stream's own status (a cancel would turn every
    // failure into CANCELLED, which no other member is tried for). The deadline bounds it.
    const bool answered = stream->Write(request) && stream->WritesDone() && stream->Read(&reply);
    grpc::Status status = stream->Finish();
    if (answered) return grpc::Status::OK;
    if (status.ok()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the keepalive stream ended unanswered");
    return status;
  });
  if (!r) return r.error();
  return r->ttl();
}

Result<std::int64_t> Client::TimeToLive(std::int64_t lease) {
  pb::LeaseTimeToLiveRequest request;
  request.set_id(lease);
  auto r = Call<pb::LeaseTimeToLiveResponse>("LeaseTimeToLive", [&request](Member& m, size_t c,
                                                                           grpc::ClientContext& context,
                                                                           pb::LeaseTimeToLiveResponse& reply) {
    return m.lease[c]->LeaseTimeToLive(&context, request, &reply);
  });
  if (!r) return r.error();
  return r->ttl();
}

Status Client::Revoke(std::int64_t lease) {
  pb::LeaseRevokeRequest request;
  request.set_id(lease);
  auto r = Call<pb::LeaseRevokeResponse>("LeaseRevoke", [&request](Member& m, size_t c, grpc::ClientContext& context,
                                                                   pb::LeaseRevokeResponse& reply) {
    return m.lease[c]->LeaseRevoke(&context, request, &reply);
  });
  if (!r) return r.error();
  return {};
}

// ---- watch ---------------------------------------------------------------------------------

Watch::Watch(ClientOptions options, std::string prefix, std::function<void()> on_change, WatchFor changes)
    : client_(std::move(options)), prefix_(std::move(prefix)), on_change_(std::move(on_change)), changes_(changes) {}

Watch::~Watch() { Stop(); }

void Watch::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void Watch::Stop() {
  stop_ = true;
  {
    std::lock_guard lock(stream_mu_);
    if (stream_) stream_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void Watch::Run() {
  pb::WatchRequest create;
  create.mutable_create_request()->set_key(prefix_);
  create.mutable_create_request()->set_range_end(PrefixEnd(prefix_));
  if (changes_ == WatchFor::kPuts) create.mutable_create_request()->add_filters(pb::WatchCreateRequest::NODELETE);
  size_t at = 0;
  std::string stale;  // the token etcd refused last, so that the next stream gets a new one
  int refusals = 0;   // in a row
  while (!stop_ && !client_.members_.empty()) {
    bool refused = false;
    auto token = client_.Token(stale);
    Client::Member& member = *client_.members_[at % client_.members_.size()];
    if (token && member.usable) {
      // One stream at a time, with no deadline; Stop cancels it.
      grpc::ClientContext context;
      if (!token->empty()) context.AddMetadata("token", *token);
      // A member that loses its leader ends the stream (as etcd's own client asks), so that
      // the watch moves to a member that still sees the cluster's changes.
      context.AddMetadata("hasleader", "true");
      {
        std::lock_guard lock(stream_mu_);
        stream_ = &context;
      }
      if (stop_) context.TryCancel();
      auto stream = member.watch->Watch(&context);
      if (stream->Write(create)) {
        pb::WatchResponse response;
        while (stream->Read(&response)) {
          if (response.canceled()) {
            // Refused at creation (a token that expired between signing in and the stream
            // counts as "permission denied" there), or compacted: start over.
            refused = true;
            break;
          }
          // After (re)creating the stream, changes may have been missed: report one as well.
          if (response.created() || response.events_size() > 0) {
            ++batches_;
            on_change_();
          }
        }
      }
      // An open stream is cancelled before Finish; one that ended keeps its own status.
      if (refused) context.TryCancel();
      const grpc::Status status = stream->Finish();
      refused = refused || TokenRefused(status);
      {
        std::lock_guard lock(stream_mu_);
        stream_ = nullptr;
      }
      stale = refused ? *token : std::string();
    }
    if (stop_) break;
    if (!refused) ++at;  // try the next member
    // Half a second between streams; while refusals repeat (a role that may not read the
    // prefix, signing in each time), doubling up to 30 s.
    refusals = refused ? refusals + 1 : 0;
    const int pause_ms = std::min(30000, 500 << std::min(std::max(refusals - 1, 0), 6));
    for (int waited = 0; waited < pause_ms && !stop_; waited += 100)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace ccm::store::etcd
