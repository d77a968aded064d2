#include "main/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>

extern char** environ;

namespace ccm::main {

namespace {

const char* const kKnown[] = {"CCM_LISTEN",           "CCM_STORE",        "CLOUDEVENTS_SOURCE",
                              "CCM_HTTP_THREADS",     "CCM_LOG_LEVEL",    "CLOUDEVENTS_SINK_URL",
                              "CLOUDEVENTS_MODE",     "CCM_OUTBOX_MAX_ATTEMPTS", "EVENT_DEDUP_TTL_HOURS",
                              "ASSESSMENT_PLATFORM_URL", "GRADING_ENGINE_URL", "OIDC_TOKEN_URL", "OIDC_CLIENT_ID",
                              "OIDC_CLIENT_SECRET"};

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

Status Apply(Config& c, const std::string& key, const std::string& v) {
  if (key == "CCM_LISTEN") {
    const auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0)
      return Error::InvalidArgument("CCM_LISTEN must be host:port, not '" + v + "'", key);
    auto port = ParseInt(key, v.substr(colon + 1), 0, 65535);
    if (!port) return port.error();
    c.listen_host = v.substr(0, colon);
    c.listen_port = *port;
  } else if (key == "CCM_STORE") {
    if (v.rfind("sqlite:", 0) != 0 || v.size() == 7)
      return Error::InvalidArgument("CCM_STORE must be sqlite:PATH, not '" + v + "'", key);
    c.store = v;
  } else if (key == "CLOUDEVENTS_SOURCE") {
    if (v.empty()) return Error::InvalidArgument("CLOUDEVENTS_SOURCE must not be empty", key);
    c.cloudevents_source = v;
  } else if (key == "CCM_HTTP_THREADS") {
    auto n = ParseInt(key, v, 1, 1024);
    if (!n) return n.error();
    c.http_threads = *n;
  } else if (key == "CLOUDEVENTS_SINK_URL") {
    // Kept as given: the sink's own path matters, trailing slash included.
    if (auto url = ParseUrl(key, v); !url) return url.error();
    c.sink_url = v;
  } else if (key == "CLOUDEVENTS_MODE") {
    if (v != "structured" && v != "binary" && v != "batch")
      return Error::InvalidArgument("CLOUDEVENTS_MODE must be structured, binary or batch", key);
    c.cloudevents_mode = v;
  } else if (key == "CCM_OUTBOX_MAX_ATTEMPTS") {
    auto n = ParseInt(key, v, 1, 1000);
    if (!n) return n.error();
    c.outbox_max_attempts = *n;
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
  } else if (key == "EVENT_DEDUP_TTL_HOURS") {
    auto n = ParseInt(key, v, 1, 24 * 365);
    if (!n) return n.error();
    c.event_dedup_ttl_hours = *n;
  } else if (key == "CCM_LOG_LEVEL") {
    if (v != "trace" && v != "debug" && v != "info" && v != "warn" && v != "error")
      return Error::InvalidArgument("CCM_LOG_LEVEL must be trace, debug, info, warn or error", key);
    c.log_level = v;
  }
  return {};
}

}  // namespace

std::string Config::SqlitePath() const { return store.substr(7); }

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
      for (const auto& kv : root) {
        const std::string key = kv.first.as<std::string>();
        if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown))
          return Error::InvalidArgument("config " + *yaml_file + ": unknown setting " + key, key);
        if (!kv.second.IsScalar())
          return Error::InvalidArgument("config " + *yaml_file + ": " + key + " must be a scalar", key);
        if (auto s = Apply(c, key, kv.second.Scalar()); !s) return s.error();
      }
    }
  }
  for (const char* key : kKnown) {
    if (auto it = env.find(key); it != env.end())
      if (auto s = Apply(c, key, it->second); !s) return s.error();
  }
  if (!c.oidc_token_url.empty() && c.oidc_client_id.empty())
    return Error::InvalidArgument("OIDC_CLIENT_ID is required with OIDC_TOKEN_URL", "OIDC_CLIENT_ID");
  return c;
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
