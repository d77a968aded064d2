#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "domain/result.h"
#include "ports/observers.h"

namespace grpc {
class ClientContext;
}
namespace etcdserverpb {
class RangeRequest;
}

namespace ccm::store::etcd {

// One key as etcd returns it (mvccpb.KeyValue). Revisions are 0 for a key that is absent.
struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};

struct RangeResult {
  std::vector<KeyValue> kvs;
  bool more = false;
  std::int64_t count = 0;
  std::int64_t revision = 0;  // the store's revision when the range was served
};

// What a transaction did: which branch ran, and for each of its operations in order the
// keys a range operation read (empty for puts and deletes).
struct TxnResult {
  bool succeeded = false;
  std::int64_t revision = 0;
  std::vector<RangeResult> ranges;
};

// The first key after every key that starts with `prefix` (etcd's range_end for a prefix).
std::string PrefixEnd(const std::string& prefix);

// One comparison of a transaction (etcdserverpb.Compare): the key's (or, with a range_end,
// every key's in [key, range_end)) mod revision, create revision or lease against `value`.
struct Compare {
  enum class Target { kMod, kCreate, kLease };
  enum class Relation { kEqual, kLess };
  std::string key;
  std::string range_end{};
  Target target = Target::kMod;
  Relation relation = Relation::kEqual;
  std::int64_t value = 0;
};

// One operation of a transaction (etcdserverpb.RequestOp): a put, a delete of one key, or a
// read of a key or of [key, range_end).
struct Op {
  enum class Kind { kPut, kDelete, kGet };
  Kind kind = Kind::kGet;
  std::string key;
  std::string value{};      // kPut
  std::string range_end{};  // kGet
  std::int64_t lease = 0;   // kPut
  std::int64_t limit = 0;   // kGet
};

Op PutOp(std::string key, std::string value, std::int64_t lease = 0);
Op DeleteOp(std::string key);
Op GetOp(std::string key, std::string range_end = {}, std::int64_t limit = 0);
// The key's mod revision equals `revision` (0: the key is absent).
Compare ModRevisionIs(std::string key, std::int64_t revision);
// No key under `prefix` was written (created or changed) after `revision`.
Compare NothingChangedSince(const std::string& prefix, std::int64_t revision);
// The key's create revision equals `revision` (0: the key is absent).
Compare CreateRevisionIs(std::string key, std::int64_t revision);
// The key is attached to `lease`.
Compare LeaseIs(std::string key, std::int64_t lease);

struct ClientOptions {
  std::vector<std::string> endpoints;  // http://host:port or https://host:port of each member
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds request_timeout{5000};
  // TLS (https:// endpoints): PEM files. `ca_file` verifies the members' certificates (empty:
  // the system's CA store); `cert_file` and `key_file` are the client certificate and its key,
  // for members started with --client-cert-auth (empty: none is presented). Verification of
  // the member's certificate and host name is never turned off.
  std::string ca_file{};
  std::string cert_file{};
  std::string key_file{};
  // etcd's user/password authentication (empty `username`: none, or the client certificate's
  // CN as the user when etcd runs with --client-cert-auth). The password is sent only to
  // Auth.Authenticate and never appears in an error or a log line; nor does the token.
  std::string username{};
  std::string password{};
  // Who counts each call to a member (the watch stream aside), under the remote's metric name ("etcd").
  ports::RemoteTag tag{};
};

// etcd's v3 API over gRPC (the KV, Lease, Auth and Watch services of etcdserverpb, generated
// from etcd's own .proto files). Calls go to one member and move to the next when it cannot be
// reached or has no leader, so that losing a member costs one failed attempt. Thread-safe:
// each member is reached through a few HTTP/2 channels that every thread shares.
//
// With a username, the client signs in (Auth.Authenticate) before its first call and sends
// the token in the "token" metadata of every call. etcd's simple tokens expire after
// --auth-token-ttl of disuse, and every token goes stale when the auth store changes: a call
// refused for its token signs in again and is sent once more, so that the caller never sees
// the expiry. One token serves every thread.
class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Errors: unavailable when no member answers (TLS failures included, with the reason and
  // the setting to check) or signing in is refused; internal when etcd refuses the request
  // (permission denied included).
  Result<RangeResult> Range(const std::string& key, const std::string& range_end = {}, std::int64_t limit = 0,
                            bool count_only = false);
  // The keys under `prefix` created at or after `min_create_revision`, in creation order (etcd
  // sorts them; `limit` applies after the sort), the newest first when `newest_first`.
  Result<RangeResult> RangeByCreation(const std::string& prefix, std::int64_t min_create_revision,
                                      std::int64_t limit, bool newest_first = false);
  Result<TxnResult> Txn(std::vector<Compare> compare, std::vector<Op> success, std::vector<Op> failure = {});
  // A new lease; its id.
  Result<std::int64_t> GrantLease(std::chrono::seconds ttl);
  // Renews the lease once; its remaining TTL in seconds, 0 when it has expired or is unknown.
  Result<std::int64_t> KeepAlive(std::int64_t lease);
  // The lease's remaining TTL in seconds (-1 when it has expired or is unknown).
  Result<std::int64_t> TimeToLive(std::int64_t lease);
  Status Revoke(std::int64_t lease);

  // The token to send: "" without a username; the current one, or a new one when there is
  // none yet or the current one is `stale` (so that threads that saw the same token refused
  // sign in once). Errors: as the calls; unavailable for a wrong user or password.
  Result<std::string> Token(const std::string& stale = {});
  // How many times the client tried to sign in (for tests and metrics).
  std::uint64_t authentications() const { return authentications_.load(); }
  // How many calls the client was asked to make, sign-ins and retries not counted (for tests).
  std::uint64_t calls() const { return calls_.load(); }

  const ClientOptions& options() const { return options_; }

  // The channels and stubs of one member (defined in the .cc).
  struct Member;

 private:
  friend class Watch;
  template <typename Reply, typename Send>
  Result<Reply> Call(const char* what, Send send);
  template <typename Reply, typename Send>
  Result<Reply> CallOnce(const char* what, const std::string& token, bool& token_refused, Send& send);
  Result<RangeResult> RangeOf(const etcdserverpb::RangeRequest& request);

  ClientOptions options_;
  std::vector<std::unique_ptr<Member>> members_;
  std::mutex token_mu_;  // held while signing in, so that one thread does it
  std::string token_;
  std::atomic<std::uint64_t> authentications_{0};
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<size_t> preferred_{0};
};

// What a Watch reports: every change under its prefix, or only puts (etcd leaves the
// deletes out of the stream, so they cost no batch and no wake-up).
enum class WatchFor { kEveryChange, kPuts };

// Follows the changes under `prefix` through etcd's Watch stream and calls `on_change` (on
// its own thread) after each batch of events. Reconnects, moving from member to member, when
// the stream breaks or etcd cancels the watch (with a new token when it was refused for its
// token). Uses the TLS files and credentials of `options`. Start and Stop are not
// thread-safe with each other.
class Watch {
 public:
  Watch(ClientOptions options, std::string prefix, std::function<void()> on_change,
        WatchFor changes = WatchFor::kEveryChange);
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  void Start();
  void Stop();
  // Batches of events received so far (for tests and metrics).
  std::uint64_t batches() const { return batches_.load(); }

 private:
  void Run();

  Client client_;  // its members' channels, and the token for the stream
  std::string prefix_;
  std::function<void()> on_change_;
  WatchFor changes_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> batches_{0};
  std::mutex stream_mu_;
  grpc::ClientContext* stream_ = nullptr;  // the open stream's context, for Stop to cancel
  std::thread thread_;
};

}  // namespace ccm::store::etcd
