#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "domain/pod.h"
#include "domain/result.h"

namespace ccm::main {

// Settings of `ccm serve`. Each has a default, so `ccm serve` alone starts. Read from a YAML
// file (--config), then from the environment, which wins.
struct Config {
  std::string listen_host = "127.0.0.1";  // CCM_LISTEN host:port
  int listen_port = 8080;
  std::string store = "sqlite:ccm.db";    // CCM_STORE: sqlite:PATH, or etcd:URL[,URL...], every URL http:// or every https://
  std::string etcd_prefix = "/ccm";       // CCM_ETCD_PREFIX: where ccm's keys live in etcd
  std::string etcd_ca_file;               // CCM_ETCD_CA_FILE: PEM CAs verifying the members (https); empty: the system's store
  std::string etcd_cert_file;             // CCM_ETCD_CERT_FILE: PEM client certificate (https, --client-cert-auth); with the key
  std::string etcd_key_file;              // CCM_ETCD_KEY_FILE: its PEM private key
  std::string etcd_username;              // CCM_ETCD_USERNAME: etcd user ccm signs in as; empty: etcd auth is off
  std::string etcd_password;              // CCM_ETCD_PASSWORD (never logged), or CCM_ETCD_PASSWORD_FILE
  int leader_ttl_seconds = 10;            // CCM_LEADER_TTL_SECONDS: the leader lease (etcd store); failover within 2x
  std::string cloudevents_source = "ccm"; // CLOUDEVENTS_SOURCE
  std::string public_url;                 // CCM_PUBLIC_URL: how others reach ccm (dataschema URIs); empty: http://CCM_LISTEN
  int http_threads = 32;                  // CCM_HTTP_THREADS: handler pool size (writes)
  int http_read_threads = 16;             // CCM_HTTP_READ_THREADS: read pool size (GET, HEAD)
  int http_queueing_threads = 0;          // CCM_HTTP_QUEUEING_THREADS: writes that queue their commit; 0: the cores
  int max_body_bytes = 1 << 20;           // CCM_MAX_BODY_BYTES: larger request bodies get 413
  int max_connections = 10'000;           // CCM_MAX_CONNECTIONS: more get 503 and are closed (see ConnectionLimit)
  int max_json_depth = 64;                // CCM_MAX_JSON_DEPTH: JSON nested deeper (bodies, events, remotes) is refused
  int request_timeout_ms = 30'000;        // CCM_REQUEST_TIMEOUT_MS: to send one request (or read one answer)
  int idle_timeout_ms = 60'000;           // CCM_IDLE_TIMEOUT_MS: a silent connection is closed after it
  int drain_grace_ms = 5'000;             // CCM_DRAIN_GRACE_MS: on SIGTERM, readiness 503 this long before the listener closes
  int drain_timeout_ms = 20'000;          // CCM_DRAIN_TIMEOUT_MS: then the longest wait for requests in flight
  int watch_max_watchers = 256;           // CCM_WATCH_MAX_WATCHERS: open GET /api/v1/watch streams; more get 429 (at least 1)
  int watch_buffer_events = 1024;         // CCM_WATCH_BUFFER_EVENTS: records a watcher may fall behind before it is cut off
  int watch_heartbeat_ms = 15'000;        // CCM_WATCH_HEARTBEAT_MS: a heartbeat comment after this long with nothing sent
  std::string log_level = "info";         // CCM_LOG_LEVEL: trace, debug, info, warn, error
  std::string log_format = "text";        // CCM_LOG_FORMAT: text, or json (one object per line)
  bool access_log = true;                 // CCM_ACCESS_LOG: a line per answered request (logger "access")
  std::string sink_url;                   // CLOUDEVENTS_SINK_URL: empty keeps events for audit only
  std::string cloudevents_mode = "structured";  // CLOUDEVENTS_MODE: structured, binary, batch
  int sink_concurrency = 8;               // CLOUDEVENTS_SINK_CONCURRENCY: requests in flight to the sink, order per subject kept
  int outbox_max_attempts = 12;           // CCM_OUTBOX_MAX_ATTEMPTS: then dead-lettered
  int outbox_max_retry_after_seconds = 300;  // CCM_OUTBOX_MAX_RETRY_AFTER_SECONDS: a longer Retry-After counts as this
  std::string assessment_platform_url;    // ASSESSMENT_PLATFORM_URL
  std::string grading_engine_url;         // GRADING_ENGINE_URL: empty assigns no pods
  std::string oidc_token_url;             // OIDC_TOKEN_URL: empty sends no bearer token
  std::string oidc_client_id;             // OIDC_CLIENT_ID
  std::string oidc_client_secret;         // OIDC_CLIENT_SECRET (never logged), or OIDC_CLIENT_SECRET_FILE
  std::string auth_jwks_url;              // AUTH_JWKS_URL: the issuer's keys for inbound bearer tokens
  std::string auth_issuer;                // AUTH_ISSUER: the `iss` inbound tokens must carry
  std::string auth_audience = "ccm";      // AUTH_AUDIENCE: the `aud` inbound tokens must hold
  int auth_clock_skew_seconds = 60;       // AUTH_CLOCK_SKEW_SECONDS: tolerance on exp and nbf
  std::string auth_client_id = "ccm";     // AUTH_CLIENT_ID: roles are read from resource_access.<it>.roles
  bool auth_realm_roles = false;          // AUTH_REALM_ROLES: realm_access.roles count too
  std::string console_client_id = "ccm-operators";  // CCM_CONSOLE_CLIENT_ID: the console's public OIDC client
  // CCM_CONSOLE_AUTHORIZE_URL, CCM_CONSOLE_TOKEN_URL: where the console signs in (authorization
  // code + PKCE) and trades codes for tokens; default AUTH_ISSUER + /protocol/openid-connect/auth
  // and /token, as Keycloak has them.
  std::string console_authorize_url;
  std::string console_token_url;
  int auth_jwks_refresh_seconds = 300;    // AUTH_JWKS_REFRESH_SECONDS: the JWKS is fetched again this often (jittered)
  int auth_jwks_max_stale_seconds = 3600; // AUTH_JWKS_MAX_STALE_SECONDS: the last good JWKS serves this long when the issuer is down
  int event_dedup_ttl_hours = 24;         // EVENT_DEDUP_TTL_HOURS: how long consumed event keys are kept
  std::string cml_username = "admin";     // CML_USERNAME: the account on every CML worker
  std::string cml_password;               // CML_PASSWORD (never logged), or CML_PASSWORD_FILE
  std::string cml_ca_file;                // CML_CA_FILE: PEM CAs verifying every CML over https; empty: the system's store
  std::vector<std::string> cml_url_allow; // CML_URL_ALLOW: hosts (".suffix" or exact) a worker's cml_url may name; empty: any
  // POD_HOST_ADDRESS: the worker address a pod names, the one graders reach. public:
  // public_ip, else private_ip, else hostname; private: private_ip, else hostname.
  domain::PodAddress pod_host_address = domain::PodAddress::kPublic;
  std::string cloud_provider_url;         // CLOUD_PROVIDER_URL: empty scales nothing
  std::string scale_up_template = "cml-enterprise";  // SCALE_UP_TEMPLATE: what the scaler asks for
  int scale_down_grace_minutes = 30;      // SCALE_DOWN_GRACE_MINUTES: idle time before a launched worker drains
  int archive_retention_minutes = 60;     // ARCHIVE_RETENTION_MINUTES: ARCHIVED -> TERMINATED after (0: at once)
  bool reconcilers = true;                // CCM_RECONCILERS: false serves the API and events endpoint only
  int reconcile_interval_ms = 1000;       // RECONCILE_INTERVAL_MS: sweep period of each reconciler
  int schedule_ahead_minutes = 60;        // SCHEDULE_AHEAD_MINUTES: scheduled once the timeslot starts within
  int instantiation_lead_seconds = 300;   // INSTANTIATION_LEAD_SECONDS: lab started this long before the timeslot
  int instantiation_timeout_seconds = 900;  // INSTANTIATION_TIMEOUT_SECONDS: then the instantiation failed
  int collecting_timeout_seconds = 1800;   // COLLECTING_TIMEOUT_SECONDS: then STOPPING without a score
  int grading_timeout_seconds = 3600;      // GRADING_TIMEOUT_SECONDS: then STOPPING without a score
  int instance_retention_days = 30;        // INSTANCE_RETENTION_DAYS: TERMINATED instances removed after
  int event_retention_days = 7;            // EVENT_RETENTION_DAYS: delivered events removed after
  int cml_max_failures = 3;               // CML_MAX_FAILURES: failed CML steps before an instantiation gives up
  int orphan_lab_grace_seconds = 900;     // ORPHAN_LAB_GRACE_SECONDS: a ccm lab no instance owns is removed after

  // The SQLite path of `store`, empty for etcd.
  std::string SqlitePath() const;
  // The etcd members of `store`, empty for SQLite.
  std::vector<std::string> EtcdEndpoints() const;
};

// The members named by a CCM_STORE value `etcd:URL,URL,...` (trailing slashes dropped); empty
// for any other value, or when one of them is empty.
std::vector<std::string> EtcdEndpointsOf(const std::string& store);

// The secret settings. Each NAME also accepts NAME_FILE, the path of a file that holds the
// value (its trailing newline dropped), as systemd's LoadCredential= and container secrets
// provide them.
inline constexpr const char* kSecretSettings[] = {"CML_PASSWORD", "OIDC_CLIENT_SECRET", "CCM_ETCD_PASSWORD"};

// Builds the configuration: defaults, then `yaml_file` (if given; keys are the setting
// names, as in the environment), then `env`. Errors: invalid_argument naming the setting
// and the rule, or the file that cannot be read; a source that sets both NAME and NAME_FILE
// of a secret, or a NAME_FILE that cannot be read or is empty; TLS files or credentials for
// etcd that do not fit CCM_STORE (a CA, certificate or key with http:// members, a
// certificate without its key, a user without a password).
Result<Config> LoadConfig(const std::optional<std::string>& yaml_file,
                          const std::map<std::string, std::string>& env);

// Descriptors kept out of the connection limit for everything else `ccm serve` opens: the
// store's files, outbound HTTP calls (sink, CML, assessment, grading, tokens, etcd), logs.
inline constexpr std::uint64_t kReservedDescriptors = 256;

// How many connections the server may hold: `configured` (CCM_MAX_CONNECTIONS), lowered so
// that the connections and the reserve fit in `descriptor_limit` (RLIMIT_NOFILE, soft). The
// reserve is kReservedDescriptors, or half of a limit too small for it; at least 1.
int ConnectionLimit(int configured, std::uint64_t descriptor_limit);

// The process environment as a map.
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace ccm::main
