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
  std::vector<std::string> endpoints;  // http://host:port of each member
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds request_timeout{5000};
};

// etcd's v3 API through its JSON gateway (POST /v3/...), with libcurl. Calls go to one
// member and move to the next when it cannot be reached or has no leader, so that losing a
// member costs one failed attempt. Thread-safe: each thread borrows its own keep-alive handle.
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
  // sorts them; `limit` applies after the sort).
  Result<RangeResult> RangeByCreation(const std::string& prefix, std::int64_t min_create_revision,
                                      std::int64_t limit);
  Result<TxnResult> Txn(const nlohmann::json& compare, const nlohmann::json& success,
                        const nlohmann::json& failure = nlohmann::json::array());
  // A new lease; its id.
  Result<std::int64_t> GrantLease(std::chrono::seconds ttl);
  // Renews the lease once; its remaining TTL in seconds, 0 when it has expired or is unknown.
  Result<std::int64_t> KeepAlive(std::int64_t lease);
  Status Revoke(std::int64_t lease);

  // One gateway call: `path` like "/v3/kv/range"; the answer's JSON.
  Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& body);

  const ClientOptions& options() const { return options_; }

 private:
  struct Handle;
  std::unique_ptr<Handle> Borrow();
  void Return(std::unique_ptr<Handle> h);

  ClientOptions options_;
  std::atomic<size_t> preferred_{0};
  std::mutex mu_;
  std::vector<std::unique_ptr<Handle>> idle_;
};

// Follows every change under `prefix` through the gateway's streaming watch and calls
// `on_change` (on its own thread) after each batch of events. Reconnects, moving from member
// to member, when the stream breaks. Start and Stop are not thread-safe with each other.
class Watch {
 public:
  Watch(ClientOptions options, std::string prefix, std::function<void()> on_change);
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
  std::string prefix_;
  std::function<void()> on_change_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> batches_{0};
  std::thread thread_;
};

}  // namespace ccm::store::etcd
