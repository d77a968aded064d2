#include "main/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>

extern char** environ;

namespace ccm::main {

namespace {

const char* const kKnown[] = {"CCM_LISTEN",           "CCM_STORE",        "CLOUDEVENTS_SOURCE",
                              "CCM_HTTP_THREADS",     "CCM_LOG_LEVEL",    "CLOUDEVENTS_SINK_URL",
                              "CCM_HTTP_READ_THREADS", "CCM_HTTP_QUEUEING_THREADS",
                              "CLOUDEVENTS_MODE",     "CLOUDEVENTS_SINK_CONCURRENCY", "CCM_OUTBOX_MAX_ATTEMPTS", "CCM_OUTBOX_MAX_RETRY_AFTER_SECONDS", "EVENT_DEDUP_TTL_HOURS",
                              "ASSESSMENT_PLATFORM_URL", "GRADING_ENGINE_URL", "OIDC_TOKEN_URL", "OIDC_CLIENT_ID",
                              "OIDC_CLIENT_SECRET", "CML_USERNAME", "CML_PASSWORD", "CLOUD_PROVIDER_URL",
                              "SCALE_UP_TEMPLATE", "SCALE_DOWN_GRACE_MINUTES", "ARCHIVE_RETENTION_MINUTES",
                              "RECONCILE_INTERVAL_MS", "SCHEDULE_AHEAD_MINUTES", "INSTANTIATION_LEAD_SECONDS",
                              "INSTANTIATION_TIMEOUT_SECONDS", "COLLECTING_TIMEOUT_SECONDS", "GRADING_TIMEOUT_SECONDS", "INSTANCE_RETENTION_DAYS",
                              "EVENT_RETENTION_DAYS", "CML_MAX_FAILURES", "CCM_RECONCILERS", "AUTH_JWKS_URL", "AUTH_ISSUER",
                              "AUTH_AUDIENCE", "AUTH_CLOCK_SKEW_SECONDS", "AUTH_CLIENT_ID", "AUTH_REALM_ROLES",
                              "AUTH_JWKS_REFRESH_SECONDS", "AUTH_JWKS_MAX_STALE_SECONDS", "CCM_MAX_BODY_BYTES", "CCM_MAX_JSON_DEPTH",
                              "CCM_MAX_CONNECTIONS", "CCM_REQUEST_TIMEOUT_MS", "CCM_IDLE_TIMEOUT_MS", "CCM_ETCD_PREFIX", "CCM_LEADER_TTL_SECONDS",
                              "CCM_PUBLIC_URL", "ORPHAN_LAB_GRACE_SECONDS", "CML_CA_FILE", "CML_URL_ALLOW",
                              "POD_HOST_ADDRESS", "CCM_ETCD_CA_FILE", "CCM_ETCD_CERT_FILE", "CCM_ETCD_KEY_FILE",
                              "CCM_ETCD_USERNAME", "CCM_ETCD_PASSWORD",
                              "CCM_DRAIN_GRACE_MS", "CCM_DRAIN_TIMEOUT_MS", "CCM_LOG_FORMAT", "CCM_ACCESS_LOG",
                              "CCM_CONSOLE_CLIENT_ID", "CCM_CONSOLE_AUTHORIZE_URL", "CCM_CONSOLE_TOKEN_URL",
                              "CCM_WATCH_MAX_WATCHERS", "CCM_WATCH_BUFFER_EVENTS", "CCM_WATCH_HEARTBEAT_MS"};

// The NAME_FILE setting of a secret NAME, or "" when `key` is none.
std::string SecretOfFileSetting(const std::string& key) {
  for (const char* secret : kSecretSettings)
    if (key == std::string(secret) + "_FILE") return secret;
  return {};
}

bool IsKnown(const std::string& key) {
  return std::find_if(std::begin(kKnown), std::end(kKnown), [&](const char* k) { return key == k; }) !=
             std::end(kKnown) ||
         !SecretOfFileSetting(key).empty();
}

// A file the process must be able to read: checked now, so that a wrong path stops the
// start instead of failing every call later. Errors: invalid_argument naming `key`.
Status CheckReadable(const std::string& key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char first = 0;
  if (!in || !in.get(first)) return Error::InvalidArgument(key + " " + path + " cannot be read (or is empty)", key);
  return {};
}

// The value held by the file of `file_key` (NAME_FILE), its trailing newlines dropped.
// Errors: invalid_argument when it cannot be read or holds nothing.
Result<std::string> ReadSecretFile(const std::string& file_key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::InvalidArgument(file_key + ": the file " + path + " cannot be read", file_key);
  std::string value;
  try {
    value.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception&) {  // libstdc++ throws on a read error (a directory, EIO)
    return Error::InvalidArgument(file_key + ": the file " + path + " cannot be read", file_key);
  }
  if (in.bad()) return Error::InvalidArgument(file_key + ": the file " + path + " cannot be read", file_key);
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  if (value.empty()) return Error::InvalidArgument(file_key + ": the file " + path + " is empty", file_key);
  return value;
}

// The integer settings: name, field, smallest and largest value.
struct IntSetting {
  const char* key;
  int Config::*field;
  int min;
  int max;
};
const IntSetting kInts[] = {
    {"CCM_HTTP_THREADS", &Config::http_threads, 1, 1024},
    {"CCM_HTTP_READ_THREADS", &Config::http_read_threads, 1, 1024},
    {"CCM_HTTP_QUEUEING_THREADS", &Config::http_queueing_threads, 0, 1024},
    {"CLOUDEVENTS_SINK_CONCURRENCY", &Config::sink_concurrency, 1, 64},
    {"CCM_OUTBOX_MAX_ATTEMPTS", &Config::outbox_max_attempts, 1, 1000},
    {"CCM_OUTBOX_MAX_RETRY_AFTER_SECONDS", &Config::outbox_max_retry_after_seconds, 1, 24 * 3600},
    {"EVENT_DEDUP_TTL_HOURS", &Config::event_dedup_ttl_hours, 1, 24 * 365},
    {"SCALE_DOWN_GRACE_MINUTES", &Config::scale_down_grace_minutes, 0, 7 * 24 * 60},
    {"ARCHIVE_RETENTION_MINUTES", &Config::archive_retention_minutes, 0, 365 * 24 * 60},
    {"RECONCILE_INTERVAL_MS", &Config::reconcile_interval_ms, 10, 3'600'000},
    {"SCHEDULE_AHEAD_MINUTES", &Config::schedule_ahead_minutes, 0, 365 * 24 * 60},
    {"INSTANTIATION_LEAD_SECONDS", &Config::instantiation_lead_seconds, 0, 24 * 3600},
    {"INSTANTIATION_TIMEOUT_SECONDS", &Config::instantiation_timeout_seconds, 10, 24 * 3600},
    {"COLLECTING_TIMEOUT_SECONDS", &Config::collecting_timeout_seconds, 1, 7 * 24 * 3600},
    {"GRADING_TIMEOUT_SECONDS", &Config::grading_timeout_seconds, 1, 7 * 24 * 3600},
    {"INSTANCE_RETENTION_DAYS", &Config::instance_retention_days, 1, 3650},
    {"EVENT_RETENTION_DAYS", &Config::event_retention_days, 1, 3650},
    {"CML_MAX_FAILURES", &Config::cml_max_failures, 1, 100},
    {"ORPHAN_LAB_GRACE_SECONDS", &Config::orphan_lab_grace_seconds, 10, 7 * 24 * 3600},
    {"AUTH_CLOCK_SKEW_SECONDS", &Config::auth_clock_skew_seconds, 0, 600},
    {"AUTH_JWKS_REFRESH_SECONDS", &Config::auth_jwks_refresh_seconds, 1, 24 * 3600},
    {"AUTH_JWKS_MAX_STALE_SECONDS", &Config::auth_jwks_max_stale_seconds, 1, 7 * 24 * 3600},
    {"CCM_MAX_BODY_BYTES", &Config::max_body_bytes, 1024, 64 << 20},
    {"CCM_MAX_CONNECTIONS", &Config::max_connections, 1, 1'000'000},
    // cloudevents::kMinMaxJsonDepth to kMaxMaxJsonDepth.
    {"CCM_MAX_JSON_DEPTH", &Config::max_json_depth, 8, 1000},
    {"CCM_REQUEST_TIMEOUT_MS", &Config::request_timeout_ms, 100, 3'600'000},
    {"CCM_IDLE_TIMEOUT_MS", &Config::idle_timeout_ms, 100, 3'600'000},
    {"CCM_LEADER_TTL_SECONDS", &Config::leader_ttl_seconds, 2, 600},
    {"CCM_DRAIN_GRACE_MS", &Config::drain_grace_ms, 0, 600'000},
    {"CCM_DRAIN_TIMEOUT_MS", &Config::drain_timeout_ms, 0, 3'600'000},
    {"CCM_WATCH_MAX_WATCHERS", &Config::watch_max_watchers, 1, 100'000},
    {"CCM_WATCH_BUFFER_EVENTS", &Config::watch_buffer_events, 1, 1'000'000},
    {"CCM_WATCH_HEARTBEAT_MS", &Config::watch_heartbeat_ms, 100, 3'600'000},
};

Result<int> ParseInt(const std::string& key, const std::string& v, int min, int max) {
  int n = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < min || n > max)
    return Error::InvalidArgument(key + " must be an integer from " + std::to_string(min) + " to " +
                                      std::to_string(max) + ", not '" + v + "'",
                                  key);
  return n;
}

// An optional http(s) URL, without trailing slashes. Errors: invalid_argument naming `key`.
Result<std::string> ParseUrl(const std::string& key, std::string v) {
  if (!v.empty() && v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0)
    return Error::InvalidArgument(key + " must be an http:// or https:// URL", key);
  while (!v.empty() && v.back() == '/') v.pop_back();
  return v;
}

// CML_URL_ALLOW: host names, IP literals or ".suffix"es separated by commas, blanks around
// them dropped. Errors: invalid_argument for an entry that is empty or holds more than a host.
Result<std::vector<std::string>> ParseAllowList(const std::string& v) {
  std::vector<std::string> out;
  if (v.find_first_not_of(" \t") == std::string::npos) return out;
  for (size_t from = 0; from <= v.size();) {
    const size_t comma = std::min(v.find(',', from), v.size());
    std::string e = v.substr(from, comma - from);
    e.erase(0, e.find_first_not_of(" \t"));
    e.erase(e.find_last_not_of(" \t") + 1);
    const bool host_only = !e.empty() && e != "." && std::all_of(e.begin(), e.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' || ch == '_' || ch == ':';
    });
    if (!host_only)
      return Error::InvalidArgument(
          "CML_URL_ALLOW must be hosts or .suffixes separated by commas (like .lab.example.com,10.0.0.5), not '" + v + "'",
          "CML_URL_ALLOW");
    out.push_back(e);
    from = comma + 1;
  }
  return out;
}

Status Apply(Config& c, const std::string& key, const std::string& v) {
  for (const auto& setting : kInts) {
    if (key != setting.key) continue;
    auto n = ParseInt(key, v, setting.min, setting.max);
    if (!n) return n.error();
    c.*setting.field = *n;
    return {};
  }
  if (key == "CCM_LISTEN") {
    const auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0)
      return Error::InvalidArgument("CCM_LISTEN must be host:port, not '" + v + "'", key);
    auto port = ParseInt(key, v.substr(colon + 1), 0, 65535);
    if (!port) return port.error();
    c.listen_host = v.substr(0, colon);
    c.listen_port = *port;
  } else if (key == "CCM_STORE") {
    const std::string rule =
        "CCM_STORE must be sqlite:PATH or etcd:URL[,URL...] with URLs like http://HOST:PORT or https://HOST:PORT, not '";
    if (v.rfind("sqlite:", 0) == 0) {
      if (v.size() == 7) return Error::InvalidArgument(rule + v + "'", key);
    } else if (v.rfind("etcd:", 0) == 0) {
      const auto endpoints = EtcdEndpointsOf(v);
      if (endpoints.empty()) return Error::InvalidArgument(rule + v + "'", key);
      size_t https = 0;
      for (const auto& e : endpoints) {
        const size_t scheme = e.rfind("https://", 0) == 0 ? 8 : e.rfind("http://", 0) == 0 ? 7 : 0;
        if (scheme == 0 || e.size() == scheme) return Error::InvalidArgument(rule + v + "'", key);
        if (scheme == 8) ++https;
      }
      // One scheme: a member reached in plain text would expose what TLS protects on the others.
      if (https != 0 && https != endpoints.size())
        return Error::InvalidArgument("CCM_STORE mixes http:// and https:// etcd members; use https:// for all: '" + v + "'",
                                      key);
    } else {
      return Error::InvalidArgument(rule + v + "'", key);
    }
    c.store = v;
  } else if (key == "CCM_ETCD_PREFIX") {
    if (v.size() < 2 || v[0] != '/' || v.back() == '/')
      return Error::InvalidArgument("CCM_ETCD_PREFIX must start with / and not end with one, like /ccm", key);
    c.etcd_prefix = v;
  } else if (key == "CLOUDEVENTS_SOURCE") {
    if (v.empty()) return Error::InvalidArgument("CLOUDEVENTS_SOURCE must not be empty", key);
    c.cloudevents_source = v;
  } else if (key == "CLOUDEVENTS_SINK_URL") {
    // Kept as given: the sink's own path matters, trailing slash included.
    if (auto url = ParseUrl(key, v); !url) return url.error();
    c.sink_url = v;
  } else if (key == "CLOUDEVENTS_MODE") {
    if (v != "structured" && v != "binary" && v != "batch")
      return Error::InvalidArgument("CLOUDEVENTS_MODE must be structured, binary or batch", key);
    c.cloudevents_mode = v;
  } else if (key == "ASSESSMENT_PLATFORM_URL") {
    auto url = ParseUrl(key, v);
    if (!url) return url.error();
    c.assessment_platform_url = *url;
  } else if (key == "GRADING_ENGINE_URL") {
    auto url = ParseUrl(key, v);
    if (!url) return url.error();
    c.grading_engine_url = *url;
  } else if (key == "OIDC_TOKEN_URL") {
    if (auto url = ParseUrl(key, v); !url) return url.error();
    c.oidc_token_url = v;
  } else if (key == "OIDC_CLIENT_ID") {
    c.oidc_client_id = v;
  } else if (key == "OIDC_CLIENT_SECRET") {
    c.oidc_client_secret = v;
  } else if (key == "AUTH_JWKS_URL") {
    if (auto url = ParseUrl(key, v); !url) return url.error();
    c.auth_jwks_url = v;
  } else if (key == "AUTH_ISSUER") {
    c.auth_issuer = v;
  } else if (key == "AUTH_AUDIENCE") {
    if (v.empty()) return Error::InvalidArgument("AUTH_AUDIENCE must not be empty", key);
    c.auth_audience = v;
  } else if (key == "AUTH_CLIENT_ID") {
    if (v.empty()) return Error::InvalidArgument("AUTH_CLIENT_ID must not be empty", key);
    c.auth_client_id = v;
  } else if (key == "AUTH_REALM_ROLES") {
    if (v != "true" && v != "false") return Error::InvalidArgument("AUTH_REALM_ROLES must be true or false", key);
    c.auth_realm_roles = v == "true";
  } else if (key == "CCM_CONSOLE_CLIENT_ID") {
    if (v.empty()) return Error::InvalidArgument("CCM_CONSOLE_CLIENT_ID must not be empty", key);
    c.console_client_id = v;
  } else if (key == "CCM_CONSOLE_AUTHORIZE_URL" || key == "CCM_CONSOLE_TOKEN_URL") {
    auto url = ParseUrl(key, v);
    if (!url) return url.error();
    (key == "CCM_CONSOLE_AUTHORIZE_URL" ? c.console_authorize_url : c.console_token_url) = *url;
  } else if (key == "CCM_PUBLIC_URL") {
    auto url = ParseUrl(key, v);
    if (!url) return url.error();
    c.public_url = *url;
  } else if (key == "CCM_RECONCILERS") {
    if (v != "true" && v != "false") return Error::InvalidArgument("CCM_RECONCILERS must be true or false", key);
    c.reconcilers = v == "true";
  } else if (key == "CML_USERNAME") {
    if (v.empty()) return Error::InvalidArgument("CML_USERNAME must not be empty", key);
    c.cml_username = v;
  } else if (key == "CML_PASSWORD") {
    c.cml_password = v;
  } else if (key == "CML_CA_FILE") {
    if (!v.empty())
      if (auto s = CheckReadable(key, v); !s) return s.error();
    c.cml_ca_file = v;
  } else if (key == "CCM_ETCD_CA_FILE" || key == "CCM_ETCD_CERT_FILE" || key == "CCM_ETCD_KEY_FILE") {
    if (!v.empty())
      if (auto s = CheckReadable(key, v); !s) return s.error();
    (key == "CCM_ETCD_CA_FILE" ? c.etcd_ca_file : key == "CCM_ETCD_CERT_FILE" ? c.etcd_cert_file : c.etcd_key_file) = v;
  } else if (key == "CCM_ETCD_USERNAME") {
    c.etcd_username = v;
  } else if (key == "CCM_ETCD_PASSWORD") {
    c.etcd_password = v;
  } else if (key == "CML_URL_ALLOW") {
    auto allow = ParseAllowList(v);
    if (!allow) return allow.error();
    c.cml_url_allow = std::move(*allow);
  } else if (key == "POD_HOST_ADDRESS") {
    if (v != "public" && v != "private")
      return Error::InvalidArgument("POD_HOST_ADDRESS must be public or private, not '" + v + "'", key);
    c.pod_host_address = v == "public" ? domain::PodAddress::kPublic : domain::PodAddress::kPrivate;
  } else if (key == "CLOUD_PROVIDER_URL") {
    auto url = ParseUrl(key, v);
    if (!url) return url.error();
    c.cloud_provider_url = *url;
  } else if (key == "SCALE_UP_TEMPLATE") {
    if (v.empty()) return Error::InvalidArgument("SCALE_UP_TEMPLATE must not be empty", key);
    c.scale_up_template = v;
  } else if (key == "CCM_LOG_LEVEL") {
    if (v != "trace" && v != "debug" && v != "info" && v != "warn" && v != "error")
      return Error::InvalidArgument("CCM_LOG_LEVEL must be trace, debug, info, warn or error", key);
    c.log_level = v;
  } else if (key == "CCM_LOG_FORMAT") {
    if (v != "text" && v != "json")
      return Error::InvalidArgument("CCM_LOG_FORMAT must be text or json, not '" + v + "'", key);
    c.log_format = v;
  } else if (key == "CCM_ACCESS_LOG") {
    if (v != "true" && v != "false") return Error::InvalidArgument("CCM_ACCESS_LOG must be true or false", key);
    c.access_log = v == "true";
  }
  return {};
}

}  // namespace

std::string Config::SqlitePath() const { return store.rfind("sqlite:", 0) == 0 ? store.substr(7) : std::string(); }

std::vector<std::string> Config::EtcdEndpoints() const { return EtcdEndpointsOf(store); }

std::vector<std::string> EtcdEndpointsOf(const std::string& store) {
  std::vector<std::string> out;
  if (store.rfind("etcd:", 0) != 0) return out;
  std::string rest = store.substr(5);
  for (size_t from = 0; from <= rest.size();) {
    const size_t comma = std::min(rest.find(',', from), rest.size());
    std::string e = rest.substr(from, comma - from);
    while (!e.empty() && e.back() == '/') e.pop_back();
    if (e.empty()) return {};
    out.push_back(e);
    from = comma + 1;
  }
  return out;
}

namespace {

// Applies one source of settings (the YAML file or the environment). A secret's NAME_FILE is
// read here and applied as NAME. Errors: as LoadConfig.
Status ApplySource(Config& c, const std::map<std::string, std::string>& values) {
  for (const char* secret : kSecretSettings) {
    const std::string file_key = std::string(secret) + "_FILE";
    auto file = values.find(file_key);
    if (file == values.end()) continue;
    if (values.count(secret))
      return Error::InvalidArgument(std::string(secret) + " and " + file_key + " are both set; set one of them", file_key);
    auto value = ReadSecretFile(file_key, file->second);
    if (!value) return value.error();
    if (auto s = Apply(c, secret, *value); !s) return s.error();
  }
  for (const char* key : kKnown) {
    if (auto it = values.find(key); it != values.end())
      if (auto s = Apply(c, key, it->second); !s) return s.error();
  }
  return {};
}

// The etcd settings that only make sense together.
Status CheckEtcd(const Config& c) {
  if (c.etcd_cert_file.empty() != c.etcd_key_file.empty())
    return Error::InvalidArgument("CCM_ETCD_CERT_FILE and CCM_ETCD_KEY_FILE go together: set both or neither",
                                  c.etcd_cert_file.empty() ? "CCM_ETCD_CERT_FILE" : "CCM_ETCD_KEY_FILE");
  if (c.etcd_username.empty() != c.etcd_password.empty())
    return Error::InvalidArgument(
        "CCM_ETCD_USERNAME and CCM_ETCD_PASSWORD (or CCM_ETCD_PASSWORD_FILE) go together: set both or neither",
        c.etcd_username.empty() ? "CCM_ETCD_USERNAME" : "CCM_ETCD_PASSWORD");
  const auto endpoints = c.EtcdEndpoints();
  const bool plain = !endpoints.empty() && endpoints.front().rfind("http://", 0) == 0;
  // TLS files with plain members: the operator means TLS and would not get it.
  if (plain && (!c.etcd_ca_file.empty() || !c.etcd_cert_file.empty())) {
    const char* key = !c.etcd_ca_file.empty() ? "CCM_ETCD_CA_FILE" : "CCM_ETCD_CERT_FILE";
    return Error::InvalidArgument(std::string(key) + " is set but CCM_STORE names http:// etcd members; use https://",
                                  key);
  }
  return {};
}

}  // namespace

Result<Config> LoadConfig(const std::optional<std::string>& yaml_file, const std::map<std::string, std::string>& env) {
  Config c;
  if (yaml_file) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(*yaml_file);
    } catch (const YAML::Exception& e) {
      return Error::InvalidArgument("cannot read config " + *yaml_file + ": " + e.what(), "config");
    }
    if (root && !root.IsNull()) {
      if (!root.IsMap()) return Error::InvalidArgument("config " + *yaml_file + " must be a mapping", "config");
      std::map<std::string, std::string> values;
      for (const auto& kv : root) {
        const std::string key = kv.first.as<std::string>();
        if (!IsKnown(key)) return Error::InvalidArgument("config " + *yaml_file + ": unknown setting " + key, key);
        if (!kv.second.IsScalar())
          return Error::InvalidArgument("config " + *yaml_file + ": " + key + " must be a scalar", key);
        values[key] = kv.second.Scalar();
      }
      if (auto s = ApplySource(c, values); !s) return s.error();
    }
  }
  if (auto s = ApplySource(c, env); !s) return s.error();
  if (!c.auth_jwks_url.empty() && c.auth_issuer.empty())
    return Error::InvalidArgument("AUTH_ISSUER is required with AUTH_JWKS_URL", "AUTH_ISSUER");
  // The console signs in at the issuer's endpoints where Keycloak has them, unless told others.
  if (!c.auth_issuer.empty()) {
    std::string issuer = c.auth_issuer;
    while (!issuer.empty() && issuer.back() == '/') issuer.pop_back();
    if (c.console_authorize_url.empty()) c.console_authorize_url = issuer + "/protocol/openid-connect/auth";
    if (c.console_token_url.empty()) c.console_token_url = issuer + "/protocol/openid-connect/token";
  }
  if (c.auth_jwks_max_stale_seconds < c.auth_jwks_refresh_seconds)
    return Error::InvalidArgument("AUTH_JWKS_MAX_STALE_SECONDS must be at least AUTH_JWKS_REFRESH_SECONDS",
                                  "AUTH_JWKS_MAX_STALE_SECONDS");
  if (!c.oidc_token_url.empty() && c.oidc_client_id.empty())
    return Error::InvalidArgument("OIDC_CLIENT_ID is required with OIDC_TOKEN_URL", "OIDC_CLIENT_ID");
  if (auto s = CheckEtcd(c); !s) return s.error();
  return c;
}

int ConnectionLimit(int configured, std::uint64_t descriptor_limit) {
  const std::uint64_t reserve = std::min(kReservedDescriptors, descriptor_limit / 2);
  const std::uint64_t fit = std::max<std::uint64_t>(1, descriptor_limit - reserve);
  return static_cast<int>(std::min<std::uint64_t>(static_cast<std::uint64_t>(std::max(1, configured)), fit));
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string_view::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

}  // namespace ccm::main
