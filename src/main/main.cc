#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>

#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "clients/assessment_platform_client.h"
#include "clients/cloud_provider_client.h"
#include "clients/cml_client.h"
#include "clients/http_event_sink.h"
#include "clients/jwks_key_set.h"
#include "clients/oidc_token_provider.h"
#include "cloudevents/json_parse.h"
#include "compose/composition.h"
#include "http/access_log.h"
#include "http/api.h"
#include "http/console.h"
#include "http/server.h"
#include "log/formatter.h"
#include "main/config.h"
#include "main/api_client.h"
#include "main/events_cli.h"
#include "main/resources_cli.h"
#include "main/watch_cli.h"
#include "metrics/metrics.h"
#include "os/clock.h"
#include "ports/outbox.h"
#include "ports/store.h"
#include "store/etcd/etcd_store.h"
#include "store/etcd/leader_election.h"
#include "store/sqlite/sqlite_store.h"

namespace {

using namespace ccm;

// The descriptor limit (RLIMIT_NOFILE, soft) before and after start-up, and the hard one.
struct DescriptorLimit {
  std::uint64_t was = 1024;
  std::uint64_t now = 1024;
  std::uint64_t hard = 1024;
};

// Raises the soft descriptor limit to the hard one: systemd starts services with a soft
// limit of 1024, far below what the connections need.
DescriptorLimit RaiseDescriptorLimit() {
  DescriptorLimit out;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return out;
  out.was = out.now = limit.rlim_cur;
  out.hard = limit.rlim_max;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
      out.now = raised.rlim_cur;
    else
      spdlog::warn("cannot raise the descriptor limit from {} to {}: {}", limit.rlim_cur, limit.rlim_max,
                   std::strerror(errno));
  }
  return out;
}

// Tells systemd (Type=notify) about the service's state: READY=1, STOPPING=1, WATCHDOG=1,
// STATUS=... A no-op when the process was not started with NOTIFY_SOCKET.
void Notify(const std::string& state) {
  if (const int r = sd_notify(0, state.c_str()); r < 0)
    spdlog::warn("cannot notify systemd ({}): {}", state.substr(0, state.find('\n')), std::strerror(-r));
}

// When systemd's watchdog is on for this process (WatchdogSec=, which sets WATCHDOG_USEC and
// WATCHDOG_PID), pings it every half period from the server's event loop: a loop that stops
// turning stops the pings, and systemd restarts the service.
void StartWatchdog(http::Server& server) {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  const auto period = std::chrono::milliseconds(std::max<std::uint64_t>(1, usec / 2000));
  server.Every(period, [] { sd_notify(0, "WATCHDOG=1"); });
  spdlog::info("systemd watchdog of {} ms: pinged every {} ms from the event loop", usec / 1000, period.count());
}

std::int64_t MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

// Waits until `until`, unless one of `signals` comes first (a second SIGTERM or SIGINT).
// Returns the signal, or 0.
int WaitForSignalUntil(const sigset_t& signals, std::chrono::steady_clock::time_point until) {
  for (;;) {
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return 0;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    const timespec wait{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig > 0) return sig;
    if (errno != EINTR) return 0;  // EAGAIN: the time is up
  }
}

// The graceful stop, from the first stop signal to the return of `ccm serve` (exit 0):
// readiness turns 503 and answers carry `Connection: close` at once, while the background
// work ends its current steps (a leader then resigns); after `grace` (cut short by a second
// signal) the listener closes; the requests in flight get up to `timeout` to be answered.
void Drain(int sig, const sigset_t& signals, http::Server& server, std::atomic<bool>& draining,
           std::chrono::milliseconds grace, std::chrono::milliseconds timeout,
           const std::function<void()>& stop_background) {
  const auto start = std::chrono::steady_clock::now();
  spdlog::info("draining on signal {} ({}): readiness answers 503 now, the listener closes in {} ms, then requests in "
               "flight get up to {} ms",
               sig, strsignal(sig), grace.count(), timeout.count());
  draining = true;
  Notify("STOPPING=1\nSTATUS=draining");
  server.BeginDrain();
  std::thread background([&] {
    stop_background();
    spdlog::info("drain: background work stopped after {} ms", MillisSince(start));
  });
  if (const int again = WaitForSignalUntil(signals, start + grace))
    spdlog::info("drain: signal {} again: the grace is cut short after {} ms", again, MillisSince(start));
  server.CloseListener();
  spdlog::info("drain: listener closed after {} ms; waiting for {} open connections", MillisSince(start),
               server.open_connections());
  if (const std::size_t left = server.AwaitConnections(timeout); left > 0)
    spdlog::warn("drain: {} connections still open after the drain timeout of {} ms: they are closed", left,
                 timeout.count());
  else
    spdlog::info("drain: every connection closed after {} ms", MillisSince(start));
  background.join();
  server.Stop();
  spdlog::info("ccm stopped after {} ms", MillisSince(start));
}

int Serve(const std::optional<std::string>& config_file, const std::optional<std::string>& ready_file,
          bool insecure_no_auth) {
  auto config = main::LoadConfig(config_file, main::ProcessEnvironment());
  if (!config) {
    std::cerr << "ccm: bad configuration: " << config.error().message << "\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  log::Configure(config->log_format == "json" ? log::Format::kJson : log::Format::kText);
  // Before any thread parses JSON: every parse in the process (requests, events, remotes) reads it.
  cloudevents::SetMaxJsonDepth(config->max_json_depth);
  // Every connection holds a descriptor: the limit on connections must leave room for the
  // rest, or accepts fail (EMFILE) while the store and outbound calls starve.
  const DescriptorLimit descriptors = RaiseDescriptorLimit();
  const int max_connections = main::ConnectionLimit(config->max_connections, descriptors.now);
  spdlog::info("descriptor limit {} (was {}, hard {}): at most {} connections, leaving {} descriptors for the store, "
               "outbound calls and logs",
               descriptors.now, descriptors.was, descriptors.hard, max_connections,
               descriptors.now - std::min<std::uint64_t>(descriptors.now, static_cast<std::uint64_t>(max_connections)));
  if (max_connections < config->max_connections)
    spdlog::warn("CCM_MAX_CONNECTIONS={} does not fit in the descriptor limit {}: at most {} connections are served; "
                 "raise the hard limit (systemd: LimitNOFILE=) to serve more",
                 config->max_connections, descriptors.now, max_connections);

  // Block the stop signals before any thread starts, so that only sigwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  os::SystemClock clock;
  os::UuidV7Generator ids;
  // The registry behind /metrics: build info, process, HTTP, remote calls, loops.
  metrics::Metrics metrics(CCM_VERSION);
  // Set once the use cases are wired; every commit carries events (a state change has one), so
  // the background work may have work.
  std::atomic<compose::Composition*> composed{nullptr};
  auto wake = [&composed] {
    if (auto* c = composed.load()) c->Wake();
  };
  std::unique_ptr<store::SqliteStore> sqlite;
  std::unique_ptr<store::EtcdStore> etcd;
  // The store's two ports, one object: its aggregates and commits, and its outbox.
  ports::Store* store = nullptr;
  ports::Outbox* outbox = nullptr;
  if (const auto endpoints = config->EtcdEndpoints(); !endpoints.empty()) {
    store::EtcdStore::Options options;
    // The one set of client options: the store, the watch and the leader election use it.
    options.client.endpoints = endpoints;
    options.client.ca_file = config->etcd_ca_file;
    options.client.cert_file = config->etcd_cert_file;
    options.client.key_file = config->etcd_key_file;
    options.client.username = config->etcd_username;
    options.client.password = config->etcd_password;
    options.client.tag = metrics.remotes().Tag("etcd");
    if (!config->etcd_username.empty() && endpoints.front().rfind("http://", 0) == 0)
      spdlog::warn("CCM_ETCD_USERNAME over http://: the etcd password and token cross the network in plain text");
    options.prefix = config->etcd_prefix;
    options.on_events_committed = wake;
    auto opened = store::EtcdStore::Open(options);
    if (!opened) {
      std::cerr << "ccm: cannot use the store " << config->store << ": " << opened.error().message << "\n";
      return 1;
    }
    etcd = std::move(opened.value());
    store = etcd.get();
    outbox = etcd.get();
  } else {
    store::SqliteStore::Options options{config->SqlitePath()};
    options.on_events_committed = wake;
    auto opened = store::SqliteStore::Open(options);
    if (!opened) {
      std::cerr << "ccm: cannot open the store " << config->store << ": " << opened.error().message << "\n";
      return 1;
    }
    sqlite = std::move(opened.value());
    store = sqlite.get();
    outbox = sqlite.get();
  }
  // On etcd, one replica leads: it alone runs the background work, and its commits are
  // fenced by its term. On SQLite the one process leads for ever.
  std::unique_ptr<store::LeaderElection> election;
  // Read by request handlers and the leader's loops; set once the server listens.
  std::atomic<store::LeaderElection*> elected{nullptr};
  std::unique_ptr<store::FencedStore> fenced;
  if (etcd)
    fenced = std::make_unique<store::FencedStore>(*etcd, [&elected]() -> std::optional<store::EtcdStore::Fence> {
      auto* e = elected.load();
      return e ? e->Fence() : std::nullopt;
    });

  // The adapters, one per port.
  std::unique_ptr<clients::HttpEventSink> sink;
  if (!config->sink_url.empty()) {
    clients::HttpEventSinkOptions sink_options;
    sink_options.url = config->sink_url;
    sink_options.mode = config->cloudevents_mode == "binary" ? cloudevents::Mode::kBinary
                        : config->cloudevents_mode == "batch" ? cloudevents::Mode::kBatch
                                                               : cloudevents::Mode::kStructured;
    sink_options.tag = metrics.remotes().Tag("sink");
    sink = std::make_unique<clients::HttpEventSink>(sink_options);
    spdlog::info("delivering CloudEvents to {} in {} mode", config->sink_url, config->cloudevents_mode);
  } else {
    spdlog::info("no CLOUDEVENTS_SINK_URL: events are kept in the outbox for audit and not sent");
  }
  std::unique_ptr<clients::OidcTokenProvider> tokens;
  if (!config->oidc_token_url.empty())
    tokens = std::make_unique<clients::OidcTokenProvider>(
        clients::OidcOptions{.token_url = config->oidc_token_url,
                             .client_id = config->oidc_client_id,
                             .client_secret = config->oidc_client_secret,
                             .tag = metrics.remotes().Tag("oidc")},
        clock);
  clients::RemoteOptions platform_options;
  platform_options.base_url = config->assessment_platform_url;
  platform_options.tag = metrics.remotes().Tag("platform");
  clients::AssessmentPlatformClient platform(platform_options, clock, tokens.get());
  if (config->assessment_platform_url.empty())
    spdlog::info("no ASSESSMENT_PLATFORM_URL: lablets are not collected; each goes to STOPPING at its timeslot's end");
  clients::RemoteOptions engine_options;
  engine_options.base_url = config->grading_engine_url;
  engine_options.tag = metrics.remotes().Tag("grading_engine");
  clients::GradingEngineClient engine(engine_options, clock, tokens.get());
  clients::CmlOptions cml_options;
  cml_options.username = config->cml_username;
  cml_options.password = config->cml_password;
  cml_options.ca_file = config->cml_ca_file;
  cml_options.tag = metrics.remotes().Tag("cml");
  clients::CmlClient cml(std::move(cml_options));
  std::unique_ptr<clients::CloudProviderClient> cloud;
  if (!config->cloud_provider_url.empty())
    cloud = std::make_unique<clients::CloudProviderClient>(config->cloud_provider_url,
                                                           metrics.remotes().Tag("cloud_provider"));
  if (config->reconcilers) {
    if (!cloud) spdlog::info("no CLOUD_PROVIDER_URL: workers are not scaled");
  } else {
    spdlog::warn("CCM_RECONCILERS=false: nothing is scheduled, started, stopped or scaled by this process");
  }

  // The use cases on those adapters.
  compose::Settings settings;
  settings.source = config->cloudevents_source;
  // The events' dataschema URIs point at ccm's own /schemas/; with port 0 the address is known
  // once listening (set below).
  std::string public_url = config->public_url;
  if (public_url.empty() && config->listen_port != 0)
    public_url = "http://" + config->listen_host + ":" + std::to_string(config->listen_port);
  settings.schema_base = public_url;
  settings.cml_url_allow = domain::CmlUrlAllowList{config->cml_url_allow};
  settings.pod_host = config->pod_host_address;
  settings.receive.dedup_ttl = std::chrono::hours(config->event_dedup_ttl_hours);
  settings.dispatch.max_attempts = config->outbox_max_attempts;
  settings.dispatch.concurrency = config->sink_concurrency;
  settings.dispatch.max_retry_after = std::chrono::seconds(config->outbox_max_retry_after_seconds);
  app::ReconcilerOptions& reconcile = settings.reconcile;
  reconcile.interval = std::chrono::milliseconds(config->reconcile_interval_ms);
  reconcile.schedule_ahead = std::chrono::minutes(config->schedule_ahead_minutes);
  reconcile.instantiation_lead = std::chrono::seconds(config->instantiation_lead_seconds);
  reconcile.instantiation_timeout = std::chrono::seconds(config->instantiation_timeout_seconds);
  reconcile.cml_max_failures = config->cml_max_failures;
  reconcile.archive_retention = std::chrono::minutes(config->archive_retention_minutes);
  reconcile.scale_up_template = config->scale_up_template;
  reconcile.scale_down_grace = std::chrono::minutes(config->scale_down_grace_minutes);
  reconcile.assessment_platform = !config->assessment_platform_url.empty();
  reconcile.collecting_timeout = std::chrono::seconds(config->collecting_timeout_seconds);
  reconcile.grading_timeout = std::chrono::seconds(config->grading_timeout_seconds);
  settings.orphans.grace = std::chrono::seconds(config->orphan_lab_grace_seconds);
  settings.retention.instances = std::chrono::hours(24 * config->instance_retention_days);
  settings.retention.events = std::chrono::hours(24 * config->event_retention_days);
  // etcd drops dedup keys with their hourly leases; SQLite needs the sweep.
  if (sqlite) settings.key_sweep = std::chrono::minutes(10);
  settings.watch.max_watchers = static_cast<std::size_t>(config->watch_max_watchers);
  settings.watch.buffer_events = static_cast<std::size_t>(config->watch_buffer_events);
  settings.watch.heartbeat = std::chrono::milliseconds(config->watch_heartbeat_ms);
  compose::Composition services({.store = *store,
                                 .outbox = *outbox,
                                 .clock = clock,
                                 .ids = ids,
                                 .platform = platform,
                                 .leader_store = fenced.get(),
                                 .engine = config->grading_engine_url.empty() ? nullptr : &engine,
                                 .cml = config->reconcilers ? &cml : nullptr,
                                 .cloud = cloud.get(),
                                 .sink = sink.get()},
                                std::move(settings), &metrics.loops());
  composed = &services;
  // Whichever way Serve returns, the store's commits stop reaching the use cases before they go.
  struct Unwire {
    std::atomic<compose::Composition*>& composed;
    ~Unwire() { composed = nullptr; }
  } unwire{composed};
  // The leader's work: delivery, collection requests, retention, the key sweep and the reconcilers.
  auto start_work = [&services] { services.background().Start(); };
  auto stop_work = [&services] {
    spdlog::info("background work: ending its current steps");
    services.background().Stop();
  };

  http::Router router;
  std::unique_ptr<clients::JwksKeySet> jwks;
  const auth::Expectations expect{config->auth_issuer, config->auth_audience,
                                  std::chrono::seconds(config->auth_clock_skew_seconds), config->auth_client_id,
                                  config->auth_realm_roles};
  if (insecure_no_auth) {
    spdlog::warn("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who reaches {}:{} can read, change and "
                 "delete everything. For local use only.",
                 config->listen_host, config->listen_port);
    // Said again on stderr, where a person starting it sees it; not in JSON, whose every
    // line must be an object (the warning above is one).
    if (config->log_format != "json")
      std::cerr << "ccm: WARNING: authentication is off (--insecure-no-auth); never run it like this in production\n";
  } else {
    if (!config->auth_jwks_url.empty()) {
      clients::JwksKeySet::Options keys;
      keys.refresh_period = std::chrono::seconds(config->auth_jwks_refresh_seconds);
      keys.min_refresh = std::min<std::chrono::milliseconds>(keys.min_refresh, keys.refresh_period);
      keys.max_stale = std::chrono::seconds(config->auth_jwks_max_stale_seconds);
      keys.tag = metrics.remotes().Tag("jwks");
      jwks = std::make_unique<clients::JwksKeySet>(config->auth_jwks_url, clock, keys);
      // The first set before the first request; when the issuer cannot be reached now, the
      // refresher keeps trying and requests are answered 503 until it can.
      if (auto fetched = jwks->Refresh(); !fetched)
        spdlog::warn("the issuer's keys cannot be fetched yet; requests get 503 until they can");
      jwks->Start();
    } else
      spdlog::warn("authentication is on and no AUTH_JWKS_URL is set: every request but the health probes is "
                   "refused (401); set AUTH_JWKS_URL and AUTH_ISSUER, or run with --insecure-no-auth locally");
    router.RequireAuthentication([&jwks, &expect, &clock](std::string_view token) -> Result<auth::Principal> {
      if (!jwks) return Error::Unauthenticated("no token can be checked: AUTH_JWKS_URL is not set");
      return auth::Verify(token, *jwks, expect, clock.Now());
    });
  }
  // Set on the first stop signal: readiness answers 503 from then on.
  std::atomic<bool> draining{false};
  auto leading = [&elected, on_etcd = etcd != nullptr] {
    auto* e = elected.load();
    return !on_etcd || (e && e->IsLeader());
  };
  compose::Counters& counters = services.counters();
  metrics.Watch({.outbox = [outbox] { return outbox->GetOutboxStats(); },
                 .dispatch = services.dispatcher() ? &counters.dispatch : nullptr,
                 .receive = &counters.receive,
                 .lifecycle = &counters.lifecycle,
                 .collection = &counters.collection,
                 .orphans = &counters.orphans,
                 .retention = &counters.retention,
                 .clock = &clock,
                 .leading = leading,
                 .watch = [&services] { return services.watch().counts(); }});
  http::AddApiRoutes(router, services.Api(leading, [&metrics] { return metrics.Text(); },
                                          [&draining] { return draining.load(); }));
  http::AddConsoleRoutes(router, {.auth = !insecure_no_auth,
                                  .client_id = config->console_client_id,
                                  .authorize_url = config->console_authorize_url,
                                  .token_url = config->console_token_url,
                                  .roles_client = config->auth_client_id,
                                  .realm_roles = config->auth_realm_roles,
                                  .instantiation_timeout_seconds = config->instantiation_timeout_seconds,
                                  .collecting_timeout_seconds = config->collecting_timeout_seconds,
                                  .grading_timeout_seconds = config->grading_timeout_seconds});
  http::ServerOptions options;
  options.address = config->listen_host;
  options.port = static_cast<std::uint16_t>(config->listen_port);
  options.handler_threads = config->http_threads;
  options.read_threads = config->http_read_threads;
  // On SQLite events and a move queue their commits and hold no thread for them:
  // a few threads decide them. On etcd every commit waits on the caller's thread (CommitThen
  // is Commit), so they stay with the other writes.
  if (!etcd) {
    options.queues_commit = [&router](http::Request& r) { return router.QueuesCommit(r); };
    options.queueing_threads = config->http_queueing_threads > 0
                                   ? config->http_queueing_threads
                                   : static_cast<int>(std::max(2U, std::thread::hardware_concurrency()));
  }
  // Answers without touching the store or the issuer: a liveness probe answers while every
  // read and write waits on a slow store.
  options.inline_paths = {"/health/live"};
  options.body_limit = static_cast<std::size_t>(config->max_body_bytes);
  options.max_connections = static_cast<std::size_t>(max_connections);
  options.read_timeout = std::chrono::milliseconds(config->request_timeout_ms);
  options.idle_timeout = std::chrono::milliseconds(config->idle_timeout_ms);
  const http::AccessLog access_log(config->access_log);
  options.observe = [&access_log, &http_metrics = metrics.http()](
                        const http::Request& request, const http::Response& response, std::chrono::nanoseconds took) {
    http_metrics.Observe(request, response, took);
    access_log.Record(request, response, took);
  };
  http::Server server(options, [&router](http::Request& r) { return router.Dispatch(r); });
  if (auto s = server.Start(); !s) {
    std::cerr << "ccm: " << s.error().message << "\n";
    return 1;
  }
  const std::string where = config->listen_host + ":" + std::to_string(server.port());
  if (public_url.empty()) services.events().SetSchemaBase("http://" + where);
  spdlog::info("ccm serving on http://{} with store {}", where, config->store);
  std::vector<std::unique_ptr<store::etcd::Watch>> watches;
  if (etcd) {
    // Every replica serves; the one holding the leader key works. Commits with events made
    // through the other replicas reach the leader's loops through watches (the periodic
    // sweeps remain): what wakes them on the replica that commits is a commit with events,
    // and each new event puts a key with an empty value under the pending index (or the held
    // index, behind a dead letter) in the commit that carries it. Not the whole prefix: there
    // each change would come back with every key it wrote, values included.
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    store::LeaderElection::Options election_options{etcd->prefix() + "/controller/leader",
                                                    std::string(host) + " http://" + where + " pid " +
                                                        std::to_string(getpid()),
                                                    std::chrono::seconds(config->leader_ttl_seconds)};
    election = std::make_unique<store::LeaderElection>(etcd->client(), election_options, start_work, stop_work);
    elected = election.get();
    for (const auto& prefix : etcd->EventIndexPrefixes())
      watches.push_back(std::make_unique<store::etcd::Watch>(etcd->client().options(), prefix, wake,
                                                             store::etcd::WatchFor::kPuts));
    for (auto& w : watches) w->Start();
    election->Start();
  } else {
    start_work();
  }
  if (ready_file) std::ofstream(*ready_file) << where << "\n";
  Notify("READY=1\nSTATUS=serving on " + where);
  StartWatchdog(server);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  Drain(sig, stop_signals, server, draining, std::chrono::milliseconds(config->drain_grace_ms),
        std::chrono::milliseconds(config->drain_timeout_ms), [&] {
          // A leader stops its work while its term holds, then revokes its lease: another
          // replica takes over at once (it watches the key) instead of after the TTL.
          if (election)
            election->Stop();
          else
            stop_work();
          for (auto& w : watches) w->Stop();
        });
  return 0;
}

// `ccm backup`: a consistent copy of the SQLite store, taken while ccm serves from it. The
// store is the one the settings name (CCM_STORE, from --config and the environment, as for
// serve), or --store. Exit codes: 0 copied, 1 the copy failed, 2 bad arguments or settings.
int Backup(const std::optional<std::string>& config_file, std::optional<std::string> store_setting,
           const std::string& to) {
  if (!store_setting) {
    auto config = main::LoadConfig(config_file, main::ProcessEnvironment());
    if (!config) {
      std::cerr << "ccm backup: bad configuration: " << config.error().message << "\n";
      return 2;
    }
    store_setting = config->store;
  }
  if (!main::EtcdEndpointsOf(*store_setting).empty()) {
    std::cerr << "ccm backup: " << *store_setting
              << " is an etcd cluster: take a snapshot with `etcdctl snapshot save FILE` against one member "
                 "(docs/operations.md, Backup and restore)\n";
    return 2;
  }
  main::Config c;
  c.store = *store_setting;
  const std::string path = c.SqlitePath();
  if (path.empty() || path == ":memory:") {
    std::cerr << "ccm backup: the store must be sqlite:PATH, not '" << *store_setting << "'\n";
    return 2;
  }
  auto copied = store::SqliteStore::Backup(path, to);
  if (!copied) {
    std::cerr << "ccm backup: " << copied.error().message << "\n";
    return copied.error().code == ErrorCode::kInvalidArgument ? 2 : 1;
  }
  std::cout << "ccm backup: " << path << " -> " << to << " (" << copied->bytes << " bytes, schema version "
            << copied->schema_version << ")\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"ccm: control plane for lablets on CML workers"};
  cli.require_subcommand(1);
  std::optional<std::string> config_file, ready_file;
  bool insecure_no_auth = false;
  auto* serve = cli.add_subcommand("serve", "Run the API, the store and the background work in one process");
  serve->add_option("--config", config_file, "YAML file of settings (the environment wins over it)");
  serve->add_option("--ready-file", ready_file, "Write host:port here once listening");
  serve->add_flag("--insecure-no-auth", insecure_no_auth,
                  "Accept requests without a bearer token (local use only; says so loudly)");
  cli.set_version_flag("--version", std::string("ccm ") + CCM_VERSION);
  cli.add_subcommand("version", "Print the version");
  std::optional<std::string> backup_store;
  std::string backup_to;
  auto* backup = cli.add_subcommand("backup", "Copy the SQLite store, consistently, while ccm serves from it");
  backup->add_option("--config", config_file, "YAML file of settings naming CCM_STORE (the environment wins)");
  backup->add_option("--store", backup_store, "The store to copy, as CCM_STORE spells it (sqlite:PATH)");
  backup->add_option("--to", backup_to, "The new file to write (never overwritten)")->required();
  main::AddEventsCommands(cli);
  main::AddResourceCommands(cli);
  main::AddWatchCommand(cli);
  cli.footer(main::ExitCodesHelp());
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // The commands end by throwing their exit code (RuntimeError); help and the version
    // exit 0; every other parse error is a usage error, exit 2, whatever CLI11 numbers it.
    const int code = cli.exit(e);
    const std::string name = e.get_name();
    if (name == "RuntimeError" || name == "CallForHelp" || name == "CallForAllHelp" || name == "CallForVersion")
      return code;
    return main::kExitUsage;
  }
  if (cli.got_subcommand("version")) {
    std::cout << "ccm " << CCM_VERSION << "\n";
    return 0;
  }
  if (cli.got_subcommand("backup")) return Backup(config_file, backup_store, backup_to);
  return Serve(config_file, ready_file, insecure_no_auth);
}
