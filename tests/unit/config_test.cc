#include "main/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "support/temp_dir.h"

namespace ccm::main {
namespace {

TEST(Config, DefaultsAloneAreEnough) {
  auto c = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->listen_host, "127.0.0.1");
  EXPECT_EQ(c->listen_port, 8080);
  EXPECT_EQ(c->SqlitePath(), "ccm.db");
  EXPECT_EQ(c->cloudevents_source, "ccm");
  EXPECT_EQ(c->max_json_depth, 64);
  auto deeper = LoadConfig(std::nullopt, {{"CCM_MAX_JSON_DEPTH", "128"}});
  ASSERT_TRUE(deeper);
  EXPECT_EQ(deeper->max_json_depth, 128);
}

TEST(Config, TheConnectionLimitLeavesDescriptorsForTheRest) {
  // systemd's default soft limit: 256 kept back, the rest for connections.
  EXPECT_EQ(ConnectionLimit(10'000, 1024), 768);
  // A raised limit leaves the setting as it is.
  EXPECT_EQ(ConnectionLimit(10'000, 1'048'576), 10'000);
  EXPECT_EQ(ConnectionLimit(100, 1024), 100);
  // A limit too small for the whole reserve keeps half of it back; at least one connection.
  EXPECT_EQ(ConnectionLimit(10'000, 128), 64);
  EXPECT_EQ(ConnectionLimit(10'000, 1), 1);
}

TEST(Config, EnvironmentWinsOverTheFile) {
  ccm::testing::TempDir dir;
  std::ofstream(dir.File("ccm.yaml")) << "CCM_LISTEN: 0.0.0.0:9000\nCCM_STORE: sqlite:/var/lib/ccm.db\n";
  auto c = LoadConfig(dir.File("ccm.yaml"), {{"CCM_LISTEN", "127.0.0.1:0"}, {"UNRELATED", "x"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->listen_port, 0);
  EXPECT_EQ(c->listen_host, "127.0.0.1");
  EXPECT_EQ(c->SqlitePath(), "/var/lib/ccm.db");
}

TEST(Config, BadValuesNameTheSetting) {
  const std::pair<std::string, std::string> cases[] = {
      {"CCM_LISTEN", "8080"}, {"CCM_LISTEN", "h:99999"}, {"CCM_STORE", "postgres://x"},
      {"CCM_STORE", "sqlite:"}, {"CCM_HTTP_THREADS", "0"}, {"CCM_HTTP_READ_THREADS", "0"},
      {"CCM_HTTP_READ_THREADS", "1025"}, {"CCM_HTTP_QUEUEING_THREADS", "-1"}, {"CCM_HTTP_QUEUEING_THREADS", "1025"},
      {"CCM_LOG_LEVEL", "loud"}, {"CLOUDEVENTS_SOURCE", ""},
      {"CLOUDEVENTS_SINK_URL", "ftp://sink"}, {"CLOUDEVENTS_MODE", "avro"}, {"CCM_OUTBOX_MAX_ATTEMPTS", "0"},
      {"EVENT_DEDUP_TTL_HOURS", "0"}, {"ASSESSMENT_PLATFORM_URL", "platform:8080"}, {"OIDC_TOKEN_URL", "kc/token"},
      {"CML_USERNAME", ""}, {"CLOUD_PROVIDER_URL", "cloud"}, {"SCALE_UP_TEMPLATE", ""},
      {"ARCHIVE_RETENTION_MINUTES", "-1"}, {"RECONCILE_INTERVAL_MS", "5"}, {"CML_MAX_FAILURES", "0"},
      {"INSTANTIATION_TIMEOUT_SECONDS", "ten"}, {"SCHEDULE_AHEAD_MINUTES", "1.5"}, {"CCM_RECONCILERS", "off"},
      {"CCM_STORE", "etcd:"}, {"CCM_STORE", "etcd:host:2379"}, {"CCM_STORE", "etcd:http://a:2379,"},
      {"CCM_ETCD_PREFIX", "ccm"}, {"CCM_ETCD_PREFIX", "/ccm/"}, {"CCM_LEADER_TTL_SECONDS", "1"},
      {"ORPHAN_LAB_GRACE_SECONDS", "0"}, {"CCM_MAX_JSON_DEPTH", "7"}, {"CCM_MAX_JSON_DEPTH", "100000"},
      {"POD_HOST_ADDRESS", "internal"}, {"POD_HOST_ADDRESS", ""}, {"POD_HOST_ADDRESS", "PUBLIC"},
      {"CCM_DRAIN_GRACE_MS", "-1"}, {"CCM_DRAIN_GRACE_MS", "600001"}, {"CCM_DRAIN_TIMEOUT_MS", "5s"},
      {"CCM_DRAIN_TIMEOUT_MS", "3600001"}, {"CCM_LOG_FORMAT", "JSON"}, {"CCM_LOG_FORMAT", ""},
      {"CCM_ACCESS_LOG", "yes"}, {"CCM_WATCH_MAX_WATCHERS", "-1"}, {"CCM_WATCH_MAX_WATCHERS", "many"},
      {"CCM_WATCH_BUFFER_EVENTS", "0"}, {"CCM_WATCH_HEARTBEAT_MS", "99"}, {"CCM_WATCH_HEARTBEAT_MS", "3600001"}};
  for (const auto& [key, value] : cases) {
    auto c = LoadConfig(std::nullopt, {{key, value}});
    ASSERT_FALSE(c) << key << "=" << value;
    EXPECT_EQ(c.error().field, key);
  }
}

TEST(Config, AnEtcdStoreNamesEveryMember) {
  auto c = LoadConfig(std::nullopt, {{"CCM_STORE", "etcd:http://10.0.0.1:2379,http://10.0.0.2:2379/"},
                                     {"CCM_ETCD_PREFIX", "/exam"},
                                     {"CCM_LEADER_TTL_SECONDS", "4"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->EtcdEndpoints(), (std::vector<std::string>{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}));
  EXPECT_EQ(c->SqlitePath(), "");
  EXPECT_EQ(c->etcd_prefix, "/exam");
  EXPECT_EQ(c->leader_ttl_seconds, 4);
  auto sqlite = LoadConfig(std::nullopt, {});
  EXPECT_TRUE(sqlite->EtcdEndpoints().empty());
  EXPECT_EQ(sqlite->etcd_prefix, "/ccm");
  EXPECT_EQ(sqlite->leader_ttl_seconds, 10);
}

TEST(Config, EventAndPlatformSettings) {
  auto c = LoadConfig(std::nullopt, {{"CLOUDEVENTS_SINK_URL", "http://sink:8080/events/"},
                                     {"CLOUDEVENTS_MODE", "batch"},
                                     {"EVENT_DEDUP_TTL_HOURS", "48"},
                                     {"ASSESSMENT_PLATFORM_URL", "https://platform.example/"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sink_url, "http://sink:8080/events/");
  EXPECT_EQ(c->cloudevents_mode, "batch");
  EXPECT_EQ(c->event_dedup_ttl_hours, 48);
  EXPECT_EQ(c->assessment_platform_url, "https://platform.example");
}

TEST(Config, LifecycleSettings) {
  auto defaults = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->archive_retention_minutes, 60);
  EXPECT_EQ(defaults->orphan_lab_grace_seconds, 900);
  EXPECT_EQ(defaults->cloud_provider_url, "");
  auto c = LoadConfig(std::nullopt, {{"ARCHIVE_RETENTION_MINUTES", "0"},
                                     {"RECONCILE_INTERVAL_MS", "250"},
                                     {"INSTANTIATION_LEAD_SECONDS", "30"},
                                     {"CML_USERNAME", "ops"},
                                     {"CML_PASSWORD", "pw"},
                                     {"CLOUD_PROVIDER_URL", "http://cloud:9000/"},
                                     {"SCALE_DOWN_GRACE_MINUTES", "5"},
                                     {"COLLECTING_TIMEOUT_SECONDS", "90"},
                                     {"GRADING_TIMEOUT_SECONDS", "120"},
                                     {"INSTANCE_RETENTION_DAYS", "90"},
                                     {"EVENT_RETENTION_DAYS", "2"},
                                     {"ORPHAN_LAB_GRACE_SECONDS", "60"},
                                     {"CCM_RECONCILERS", "false"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->archive_retention_minutes, 0);
  EXPECT_EQ(c->reconcile_interval_ms, 250);
  EXPECT_EQ(c->instantiation_lead_seconds, 30);
  EXPECT_EQ(c->cml_username, "ops");
  EXPECT_EQ(c->cml_password, "pw");
  EXPECT_EQ(c->cloud_provider_url, "http://cloud:9000");
  EXPECT_EQ(c->scale_down_grace_minutes, 5);
  EXPECT_EQ(c->collecting_timeout_seconds, 90);
  EXPECT_EQ(c->grading_timeout_seconds, 120);
  EXPECT_EQ(defaults->collecting_timeout_seconds, 1800);
  EXPECT_EQ(defaults->grading_timeout_seconds, 3600);
  EXPECT_EQ(c->instance_retention_days, 90);
  EXPECT_EQ(c->event_retention_days, 2);
  EXPECT_EQ(defaults->instance_retention_days, 30);
  EXPECT_EQ(defaults->event_retention_days, 7);
  EXPECT_EQ(c->orphan_lab_grace_seconds, 60);
  EXPECT_FALSE(c->reconcilers);
  EXPECT_TRUE(defaults->reconcilers);
}

TEST(Config, OidcNeedsAClientId) {
  auto c = LoadConfig(std::nullopt, {{"OIDC_TOKEN_URL", "http://kc/token"}, {"OIDC_CLIENT_SECRET", "s3cret"}});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().field, "OIDC_CLIENT_ID");
  EXPECT_EQ(c.error().message.find("s3cret"), std::string::npos);
}

TEST(Config, AuthenticationSettings) {
  auto defaults = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->auth_client_id, "ccm");
  EXPECT_FALSE(defaults->auth_realm_roles);
  EXPECT_EQ(defaults->auth_jwks_refresh_seconds, 300);
  EXPECT_EQ(defaults->auth_jwks_max_stale_seconds, 3600);
  auto c = LoadConfig(std::nullopt, {{"AUTH_CLIENT_ID", "ccm-prod"}, {"AUTH_REALM_ROLES", "true"},
                                     {"AUTH_JWKS_REFRESH_SECONDS", "60"}, {"AUTH_JWKS_MAX_STALE_SECONDS", "600"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->auth_client_id, "ccm-prod");
  EXPECT_TRUE(c->auth_realm_roles);
  EXPECT_EQ(c->auth_jwks_refresh_seconds, 60);
  EXPECT_EQ(c->auth_jwks_max_stale_seconds, 600);
  const std::map<std::string, std::string> bad[] = {
      {{"AUTH_CLIENT_ID", ""}}, {{"AUTH_REALM_ROLES", "yes"}}, {{"AUTH_JWKS_REFRESH_SECONDS", "0"}},
      {{"AUTH_JWKS_REFRESH_SECONDS", "600"}, {"AUTH_JWKS_MAX_STALE_SECONDS", "300"}}};
  for (const auto& env : bad) EXPECT_FALSE(LoadConfig(std::nullopt, env)) << env.begin()->first;
}

TEST(Config, TheConsoleSignsInAtTheIssuerTheKeycloakWay) {
  auto none = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->console_client_id, "ccm-operators");  // the realm's public client (packaging/keycloak)
  EXPECT_EQ(none->console_authorize_url, "");
  EXPECT_EQ(none->console_token_url, "");
  auto derived = LoadConfig(std::nullopt, {{"AUTH_JWKS_URL", "https://sso.example.com/realms/labs/certs"},
                                           {"AUTH_ISSUER", "https://sso.example.com/realms/labs/"}});
  ASSERT_TRUE(derived) << derived.error().message;
  EXPECT_EQ(derived->console_authorize_url, "https://sso.example.com/realms/labs/protocol/openid-connect/auth");
  EXPECT_EQ(derived->console_token_url, "https://sso.example.com/realms/labs/protocol/openid-connect/token");
  auto told = LoadConfig(std::nullopt, {{"AUTH_ISSUER", "http://oidc-sim"},
                                        {"CCM_CONSOLE_CLIENT_ID", "console"},
                                        {"CCM_CONSOLE_AUTHORIZE_URL", "http://127.0.0.1:7000/authorize"},
                                        {"CCM_CONSOLE_TOKEN_URL", "http://127.0.0.1:7000/token/"}});
  ASSERT_TRUE(told) << told.error().message;
  EXPECT_EQ(told->console_client_id, "console");
  EXPECT_EQ(told->console_authorize_url, "http://127.0.0.1:7000/authorize");
  EXPECT_EQ(told->console_token_url, "http://127.0.0.1:7000/token");
  for (const char* key : {"CCM_CONSOLE_AUTHORIZE_URL", "CCM_CONSOLE_TOKEN_URL"}) {
    auto bad = LoadConfig(std::nullopt, {{key, "ftp://sso/x"}});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().field, key);
  }
  auto empty = LoadConfig(std::nullopt, {{"CCM_CONSOLE_CLIENT_ID", ""}});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().field, "CCM_CONSOLE_CLIENT_ID");
}

TEST(Config, CmlTrustAndAllowList) {
  auto defaults = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->cml_ca_file, "");  // the system's CA store
  EXPECT_TRUE(defaults->cml_url_allow.empty());

  ccm::testing::TempDir dir;
  std::ofstream(dir.File("ca.pem")) << "-----BEGIN CERTIFICATE-----\n";
  auto c = LoadConfig(std::nullopt, {{"CML_CA_FILE", dir.File("ca.pem")},
                                     {"CML_URL_ALLOW", " .lab.example.com, 10.0.0.5 ,cml-edge"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->cml_ca_file, dir.File("ca.pem"));
  EXPECT_EQ(c->cml_url_allow, (std::vector<std::string>{".lab.example.com", "10.0.0.5", "cml-edge"}));

  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"CML_CA_FILE", dir.File("missing.pem")},
           {"CML_URL_ALLOW", "https://cml1.example.com"},
           {"CML_URL_ALLOW", ".lab.example.com,,cml1"},
           {"CML_URL_ALLOW", "10.0.0.0/8"},
           {"CML_URL_ALLOW", "."}}) {
    auto bad = LoadConfig(std::nullopt, {{key, value}});
    ASSERT_FALSE(bad) << key << "=" << value;
    EXPECT_EQ(bad.error().field, key);
  }
}

TEST(Config, PodHostAddress) {
  auto defaults = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->pod_host_address, domain::PodAddress::kPublic);
  auto inside = LoadConfig(std::nullopt, {{"POD_HOST_ADDRESS", "private"}});
  ASSERT_TRUE(inside) << inside.error().message;
  EXPECT_EQ(inside->pod_host_address, domain::PodAddress::kPrivate);
  auto outside = LoadConfig(std::nullopt, {{"POD_HOST_ADDRESS", "public"}});
  ASSERT_TRUE(outside);
  EXPECT_EQ(outside->pod_host_address, domain::PodAddress::kPublic);
  ccm::testing::TempDir dir;
  std::ofstream(dir.File("ccm.yaml")) << "POD_HOST_ADDRESS: private\n";
  auto file = LoadConfig(dir.File("ccm.yaml"), {});
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(file->pod_host_address, domain::PodAddress::kPrivate);
}

TEST(Config, EtcdOverTlsWithAUser) {
  ccm::testing::TempDir dir;
  for (const char* f : {"ca.pem", "client.pem", "client.key"}) std::ofstream(dir.File(f)) << "-----BEGIN X-----\n";
  auto c = LoadConfig(std::nullopt, {{"CCM_STORE", "etcd:https://e1:2379,https://e2:2379"},
                                     {"CCM_ETCD_CA_FILE", dir.File("ca.pem")},
                                     {"CCM_ETCD_CERT_FILE", dir.File("client.pem")},
                                     {"CCM_ETCD_KEY_FILE", dir.File("client.key")},
                                     {"CCM_ETCD_USERNAME", "ccm"},
                                     {"CCM_ETCD_PASSWORD", "etcd-secret"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->EtcdEndpoints(), (std::vector<std::string>{"https://e1:2379", "https://e2:2379"}));
  EXPECT_EQ(c->etcd_ca_file, dir.File("ca.pem"));
  EXPECT_EQ(c->etcd_cert_file, dir.File("client.pem"));
  EXPECT_EQ(c->etcd_key_file, dir.File("client.key"));
  EXPECT_EQ(c->etcd_username, "ccm");
  EXPECT_EQ(c->etcd_password, "etcd-secret");
  // https with the system's CAs and no client certificate, and plain http with a user, are fine.
  EXPECT_TRUE(LoadConfig(std::nullopt, {{"CCM_STORE", "etcd:https://e1:2379"}}));
  EXPECT_TRUE(LoadConfig(std::nullopt, {{"CCM_STORE", "etcd:http://e1:2379"},
                                        {"CCM_ETCD_USERNAME", "ccm"},
                                        {"CCM_ETCD_PASSWORD", "p"}}));

  // Each refusal names the setting to fix.
  const std::string https = "etcd:https://e1:2379";
  const std::pair<std::map<std::string, std::string>, std::string> bad[] = {
      {{{"CCM_STORE", "etcd:https://e1:2379,http://e2:2379"}}, "CCM_STORE"},
      {{{"CCM_STORE", "etcd:https://"}}, "CCM_STORE"},
      {{{"CCM_STORE", https}, {"CCM_ETCD_CA_FILE", dir.File("missing.pem")}}, "CCM_ETCD_CA_FILE"},
      {{{"CCM_STORE", https}, {"CCM_ETCD_CERT_FILE", dir.File("missing.pem")}}, "CCM_ETCD_CERT_FILE"},
      {{{"CCM_STORE", https}, {"CCM_ETCD_KEY_FILE", dir.path()}}, "CCM_ETCD_KEY_FILE"},
      {{{"CCM_STORE", https}, {"CCM_ETCD_CERT_FILE", dir.File("client.pem")}}, "CCM_ETCD_KEY_FILE"},
      {{{"CCM_STORE", https}, {"CCM_ETCD_KEY_FILE", dir.File("client.key")}}, "CCM_ETCD_CERT_FILE"},
      {{{"CCM_STORE", https}, {"CCM_ETCD_USERNAME", "ccm"}}, "CCM_ETCD_PASSWORD"},
      {{{"CCM_STORE", https}, {"CCM_ETCD_PASSWORD", "p"}}, "CCM_ETCD_USERNAME"},
      {{{"CCM_STORE", "etcd:http://e1:2379"}, {"CCM_ETCD_CA_FILE", dir.File("ca.pem")}}, "CCM_ETCD_CA_FILE"},
      {{{"CCM_STORE", "etcd:http://e1:2379"},
        {"CCM_ETCD_CERT_FILE", dir.File("client.pem")},
        {"CCM_ETCD_KEY_FILE", dir.File("client.key")}},
       "CCM_ETCD_CERT_FILE"}};
  for (const auto& [env, field] : bad) {
    auto r = LoadConfig(std::nullopt, env);
    ASSERT_FALSE(r) << field;
    EXPECT_EQ(r.error().field, field) << r.error().message;
    EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
  }
  auto mixed = LoadConfig(std::nullopt, {{"CCM_STORE", "etcd:https://e1:2379,http://e2:2379"}});
  EXPECT_NE(mixed.error().message.find("mixes http:// and https://"), std::string::npos) << mixed.error().message;
}

TEST(Config, EverySecretAlsoComesFromAFile) {
  ccm::testing::TempDir dir;
  std::ofstream(dir.File("cml")) << "cml-secret\n";
  std::ofstream(dir.File("oidc")) << "oidc secret with spaces\r\n";
  std::ofstream(dir.File("etcd")) << "etcd-secret";  // no newline at all
  auto c = LoadConfig(std::nullopt, {{"CML_PASSWORD_FILE", dir.File("cml")},
                                     {"OIDC_CLIENT_SECRET_FILE", dir.File("oidc")},
                                     {"CCM_STORE", "etcd:https://e1:2379"},
                                     {"CCM_ETCD_USERNAME", "ccm"},
                                     {"CCM_ETCD_PASSWORD_FILE", dir.File("etcd")}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->cml_password, "cml-secret");
  EXPECT_EQ(c->oidc_client_secret, "oidc secret with spaces");
  EXPECT_EQ(c->etcd_password, "etcd-secret");
  EXPECT_EQ(std::size(kSecretSettings), 3u) << "a new secret: test its _FILE form here";

  // From the YAML file too; the environment still wins, with either form.
  std::ofstream(dir.File("ccm.yaml")) << "CML_PASSWORD_FILE: " << dir.File("cml") << "\n"
                                      << "OIDC_CLIENT_SECRET: from-yaml\n";
  auto yaml = LoadConfig(dir.File("ccm.yaml"), {});
  ASSERT_TRUE(yaml) << yaml.error().message;
  EXPECT_EQ(yaml->cml_password, "cml-secret");
  EXPECT_EQ(yaml->oidc_client_secret, "from-yaml");
  auto env = LoadConfig(dir.File("ccm.yaml"), {{"CML_PASSWORD", "from-env"}, {"OIDC_CLIENT_SECRET_FILE", dir.File("oidc")}});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->cml_password, "from-env");
  EXPECT_EQ(env->oidc_client_secret, "oidc secret with spaces");

  // Both forms in one source: refused, naming both.
  auto both = LoadConfig(std::nullopt, {{"CML_PASSWORD", "x"}, {"CML_PASSWORD_FILE", dir.File("cml")}});
  ASSERT_FALSE(both);
  EXPECT_EQ(both.error().field, "CML_PASSWORD_FILE");
  EXPECT_NE(both.error().message.find("CML_PASSWORD and CML_PASSWORD_FILE"), std::string::npos) << both.error().message;
  std::ofstream(dir.File("both.yaml")) << "OIDC_CLIENT_SECRET: a\nOIDC_CLIENT_SECRET_FILE: " << dir.File("oidc") << "\n";
  auto both_yaml = LoadConfig(dir.File("both.yaml"), {});
  ASSERT_FALSE(both_yaml);
  EXPECT_EQ(both_yaml.error().field, "OIDC_CLIENT_SECRET_FILE");

  // A file that cannot be read, or holds nothing, stops the start and names the setting
  // (never the value of a file that could be read).
  std::ofstream(dir.File("empty")) << "\n";
  for (const auto& path : {dir.File("missing"), dir.File("empty"), dir.path()}) {
    auto r = LoadConfig(std::nullopt, {{"CCM_ETCD_PASSWORD_FILE", path}});
    ASSERT_FALSE(r) << path;
    EXPECT_EQ(r.error().field, "CCM_ETCD_PASSWORD_FILE");
    EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
  }
  // NAME_FILE only exists for secrets.
  std::ofstream(dir.File("not-secret.yaml")) << "CCM_LISTEN_FILE: " << dir.File("cml") << "\n";
  EXPECT_FALSE(LoadConfig(dir.File("not-secret.yaml"), {}));
}

TEST(Config, DrainSettings) {
  auto defaults = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->drain_grace_ms, 5'000);
  EXPECT_EQ(defaults->drain_timeout_ms, 20'000);
  // 0 is allowed for both: the listener closes at once, and nothing in flight is waited for.
  auto none = LoadConfig(std::nullopt, {{"CCM_DRAIN_GRACE_MS", "0"}, {"CCM_DRAIN_TIMEOUT_MS", "0"}});
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_EQ(none->drain_grace_ms, 0);
  EXPECT_EQ(none->drain_timeout_ms, 0);
  ccm::testing::TempDir dir;
  std::ofstream(dir.File("ccm.yaml")) << "CCM_DRAIN_GRACE_MS: 15000\nCCM_DRAIN_TIMEOUT_MS: 60000\n";
  auto file = LoadConfig(dir.File("ccm.yaml"), {{"CCM_DRAIN_GRACE_MS", "2000"}});
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(file->drain_grace_ms, 2'000);
  EXPECT_EQ(file->drain_timeout_ms, 60'000);
  auto bad = LoadConfig(std::nullopt, {{"CCM_DRAIN_TIMEOUT_MS", "-5"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("CCM_DRAIN_TIMEOUT_MS must be an integer from 0 to 3600000"), std::string::npos)
      << bad.error().message;
}

TEST(Config, WatchSettings) {
  auto defaults = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->watch_max_watchers, 256);
  EXPECT_EQ(defaults->watch_buffer_events, 1024);
  EXPECT_EQ(defaults->watch_heartbeat_ms, 15'000);
  auto set = LoadConfig(std::nullopt, {{"CCM_WATCH_MAX_WATCHERS", "1"}, {"CCM_WATCH_BUFFER_EVENTS", "16"},
                                       {"CCM_WATCH_HEARTBEAT_MS", "500"}});
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ(set->watch_max_watchers, 1);
  EXPECT_EQ(set->watch_buffer_events, 16);
  EXPECT_EQ(set->watch_heartbeat_ms, 500);
  auto none = LoadConfig(std::nullopt, {{"CCM_WATCH_MAX_WATCHERS", "0"}});
  ASSERT_FALSE(none);  // a watcher limit of 0 would refuse every watcher with a 429 to retry forever
  auto bad = LoadConfig(std::nullopt, {{"CCM_WATCH_BUFFER_EVENTS", "0"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("CCM_WATCH_BUFFER_EVENTS must be an integer from 1 to 1000000"), std::string::npos)
      << bad.error().message;
}

TEST(Config, SinkConcurrency) {
  auto defaults = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->sink_concurrency, 8);
  auto one = LoadConfig(std::nullopt, {{"CLOUDEVENTS_SINK_CONCURRENCY", "1"}});
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(one->sink_concurrency, 1);
  auto most = LoadConfig(std::nullopt, {{"CLOUDEVENTS_SINK_CONCURRENCY", "64"}});
  ASSERT_TRUE(most) << most.error().message;
  EXPECT_EQ(most->sink_concurrency, 64);
  for (const char* bad : {"0", "65", "-1", "four"}) {
    auto c = LoadConfig(std::nullopt, {{"CLOUDEVENTS_SINK_CONCURRENCY", bad}});
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error().field, "CLOUDEVENTS_SINK_CONCURRENCY");
    EXPECT_NE(c.error().message.find("CLOUDEVENTS_SINK_CONCURRENCY must be an integer from 1 to 64"), std::string::npos)
        << c.error().message;
  }
}

TEST(Config, LogSettings) {
  auto defaults = LoadConfig(std::nullopt, {});
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->log_format, "text");
  EXPECT_TRUE(defaults->access_log);
  auto json = LoadConfig(std::nullopt, {{"CCM_LOG_FORMAT", "json"}, {"CCM_ACCESS_LOG", "false"}});
  ASSERT_TRUE(json) << json.error().message;
  EXPECT_EQ(json->log_format, "json");
  EXPECT_FALSE(json->access_log);
  auto bad = LoadConfig(std::nullopt, {{"CCM_LOG_FORMAT", "logfmt"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "CCM_LOG_FORMAT must be text or json, not 'logfmt'");
}

TEST(Config, FileErrors) {
  ccm::testing::TempDir dir;
  EXPECT_FALSE(LoadConfig(dir.File("missing.yaml"), {}));
  std::ofstream(dir.File("typo.yaml")) << "CCM_LISTN: 1.2.3.4:1\n";
  auto typo = LoadConfig(dir.File("typo.yaml"), {});
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("unknown setting CCM_LISTN"), std::string::npos);
}

}  // namespace
}  // namespace ccm::main
