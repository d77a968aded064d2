#pragma once

#include <map>
#include <optional>
#include <string>

#include "domain/result.h"

namespace ccm::main {

// Settings of `ccm serve`. Each has a default, so `ccm serve` alone starts. Read from a YAML
// file (--config), then from the environment, which wins.
struct Config {
  std::string listen_host = "127.0.0.1";  // CCM_LISTEN host:port
  int listen_port = 8080;
  std::string store = "sqlite:ccm.db";    // CCM_STORE: sqlite:PATH
  std::string cloudevents_source = "ccm"; // CLOUDEVENTS_SOURCE
  int http_threads = 32;                  // CCM_HTTP_THREADS: handler pool size
  std::string log_level = "info";         // CCM_LOG_LEVEL: trace, debug, info, warn, error
  std::string sink_url;                   // CLOUDEVENTS_SINK_URL: empty keeps events for audit only
  std::string cloudevents_mode = "structured";  // CLOUDEVENTS_MODE: structured, binary, batch
  int outbox_max_attempts = 12;           // CCM_OUTBOX_MAX_ATTEMPTS: then dead-lettered
  std::string assessment_platform_url;    // ASSESSMENT_PLATFORM_URL
  std::string grading_engine_url;         // GRADING_ENGINE_URL: empty assigns no pods
  std::string oidc_token_url;             // OIDC_TOKEN_URL: empty sends no bearer token
  std::string oidc_client_id;             // OIDC_CLIENT_ID
  std::string oidc_client_secret;         // OIDC_CLIENT_SECRET (never logged)
  int event_dedup_ttl_hours = 24;         // EVENT_DEDUP_TTL_HOURS: how long consumed event keys are kept

  // The SQLite path of `store`.
  std::string SqlitePath() const;
};

// Builds the configuration: defaults, then `yaml_file` (if given; keys are the setting
// names, as in the environment), then `env`. Errors: invalid_argument naming the setting
// and the rule, or the file that cannot be read.
Result<Config> LoadConfig(const std::optional<std::string>& yaml_file,
                          const std::map<std::string, std::string>& env);

// The process environment as a map.
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace ccm::main
