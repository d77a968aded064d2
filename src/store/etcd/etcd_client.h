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

#include <nlohmann/json.hpp>

#include "domain/result.h"
#include "ports/observers.h"

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

// Operations and comparisons of a transaction, in the JSON of etcd's v3 gateway.
nlohmann::json PutOp(const std::string& key, const std::string& value, std::int64_t lease = 0);
nlohmann::json DeleteOp(const std::string& key);
nlohmann::json GetOp(const std::string& key, const std::string& range_end = {}, std::int64_t limit = 0);
// The key's mod revision equals `revision` (0: the key is absent).
nlohmann::json ModRevisionIs(const std::string& key, std::int64_t revision);
// No key under `prefix` was written (created or changed) after `revision`.
nlohmann::json NothingChangedSince(const std::string& prefix, std::int64_t revision);
// The key's create revision equals `revision` (0: the key is absent).
nlohmann::json CreateRevisionIs(const std::string& key, std::int64_t revision);
// The key is attached to `lease`.
nlohmann::json LeaseIs(const std::string& key, std::int64_t lease);

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
  // etcd's user/password authentication (empty `username`: none). The password is sent only
  // to /v3/auth/authenticate and never appears in an error or a log line; nor does the token.
  std::string username{};
  std::string password{};
  // Who counts each request to a member (the watch stream aside), under the remote's metric name ("etcd").
  ports::RemoteTag tag{};
};

// etcd's v3 API through its JSON gateway (POST /v3/...), over ccm_transport. Calls go to one
// member and move to the next when it cannot be reached or has no leader, so that losing a
// member costs one failed attempt. Thread-safe: each thread borrows its own keep-alive handle.
//
// With a username, the client signs in (/v3/auth/authenticate) before its first call and
// sends the token, bare, in the Authorization header of every call. etcd's simple tokens
// expire after --auth-token-ttl of disuse, and every token goes stale when the auth store
// changes: a call refused for its token signs in again and is sent once more, so that the
// caller never sees the expiry. One token serves every thread.
class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Errors: unavailable when no member answers; internal when etcd refuses the request.
  Result<RangeResult> Range(const std::string& key, const std::string& range_end = {}, std::int64_t limit = 0,
                            bool count_only = false);
  // The keys under `prefix` created at or after `min_create_revision`, in creation order (etcd
  // sorts them; `limit` applies after the sort), the newest first when `newest_first`.
  Result<RangeResult> RangeByCreation(const std::string& prefix, std::int64_t min_create_revision,
                                      std::int64_t limit, bool newest_first = false);
  Result<TxnResult> Txn(const nlohmann::json& compare, const nlohmann::json& success,
                        const nlohmann::json& failure = nlohmann::json::array());
  // A new lease; its id.
  Result<std::int64_t> GrantLease(std::chrono::seconds ttl);
  // Renews the lease once; its remaining TTL in seconds, 0 when it has expired or is unknown.
  Result<std::int64_t> KeepAlive(std::int64_t lease);
  Status Revoke(std::int64_t lease);

  // One gateway call: `path` like "/v3/kv/range"; the answer's JSON. Errors: unavailable
  // when no member answers (TLS failures included, with curl's reason) or signing in is
  // refused; internal when etcd refuses the request (permission denied included).
  Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& body);

  // The token to send: "" without a username; the current one, or a new one when there is
  // none yet or the current one is `stale` (so that threads that saw the same token refused
  // sign in once). Errors: as Call; unavailable for a wrong user or password.
  Result<std::string> Token(const std::string& stale = {});
  // How many times the client tried to sign in (for tests and metrics).
  std::uint64_t authentications() const { return authentications_.load(); }
  // How many calls the client was asked to make, sign-ins and retries not counted (for tests).
  std::uint64_t calls() const { return calls_.load(); }

  const ClientOptions& options() const { return options_; }

 private:
  struct Handle;
  std::unique_ptr<Handle> Borrow();
  void Return(std::unique_ptr<Handle> h);
  // One call with `token` (empty: no Authorization header). `token_refused` is set when etcd
  // refused the call for its token alone.
  Result<nlohmann::json> CallOnce(const std::string& path, const std::string& payload, const std::string& token,
                                  bool& token_refused);

  ClientOptions options_;
  std::mutex token_mu_;  // held while signing in, so that one thread does it
  std::string token_;
  std::atomic<std::uint64_t> authentications_{0};
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<size_t> preferred_{0};
  std::mutex mu_;
  std::vector<std::unique_ptr<Handle>> idle_;
};

// What a Watch reports: every change under its prefix, or only puts (etcd leaves the
// deletes out of the stream, so they cost no batch and no wake-up).
enum class WatchFor { kEveryChange, kPuts };

// Follows the changes under `prefix` through the gateway's streaming watch and calls
// `on_change` (on its own thread) after each batch of events. Reconnects, moving from member
// to member, when the stream breaks or etcd cancels the watch (with a new token when it was
// refused for its token). Uses the TLS files and credentials of `options`. Start and Stop
// are not thread-safe with each other.
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

  ClientOptions options_;
  Client auth_;  // signs in for the stream
  std::string prefix_;
  std::function<void()> on_change_;
  WatchFor changes_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> batches_{0};
  std::thread thread_;
};

}  // namespace ccm::store::etcd
