// Every lablet ends, whatever the outside world does: many lablets at once against cml-sim
// (whose starts and stops fail now and then), assessment-sim drawing a behaviour per lablet
// from a seed (silent, slow, 503s, refusals, failures, no grade, events sent twice; pods
// refused or 503 first) and a sink that is down for a while. Short time-outs. Every lablet
// must reach TERMINATED within a bound, with its lab wiped and deleted, nothing held on its
// worker, its events complete and in order (at ccm and at the sink), and a reason that
// matches what was done to it.
//
// CCM_CHAOS_SEED (printed) seeds the timeslots and the simulator's draws, which it keys by
// instance id; ids are new in every run, so a seed gives the same timeslots but not the same
// fault for the same lablet. CCM_CHAOS_LABLETS sets how
// many (default 50). `make chaos` runs longer draws.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <set>

#include "domain/states.h"
#include "support/test_sink.h"
#include "support/wait.h"
#include "support/world.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::Column;
using testing::Eventually;
using testing::ReasonOf;
using testing::World;

std::uint64_t EnvNumber(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

TEST(Chaos, EveryLabletEndsWhateverTheOutsideWorldDoes) {
  const std::uint64_t seed = EnvNumber("CCM_CHAOS_SEED", 20261129);
  const int lablets = static_cast<int>(EnvNumber("CCM_CHAOS_LABLETS", 50));
  std::cout << "chaos: seed " << seed << ", " << lablets << " lablets (CCM_CHAOS_SEED=" << seed
            << " gives the same timeslots)\n";
  std::mt19937_64 rng(seed);

  testing::TempDir side;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::ChildProcess platform({ASSESSMENT_SIM_BINARY, "--ready-file", side.File("sim.ready"), "--events-url",
                                  "http://" + address + "/api/v1/events", "--grading-schema",
                                  std::string(CCM_TEST_DATA) + "/grading-engine.openapi.json", "--delay-ms", "50",
                                  "--chaos-seed", std::to_string(seed)},
                                 {}, side.File("sim.ready"));
  // The sink is down (503) for its first 7 requests: the dispatcher's breaker opens, and its
  // probes find it back a few seconds later.
  std::vector<testing::TestSink::Step> down(7, {503, "", std::chrono::milliseconds(0)});
  testing::TestSink sink(0, down);
  // Longer than the platform client's breaker cooldown (10 s) plus its backoff, so that a
  // collection delayed by other lablets' 503s is still made in time.
  constexpr int kCollectingTimeout = 25, kGradingTimeout = 4;
  World world({"--fail-starts", "4", "--fail-stops", "3"},
              {{"CCM_LISTEN", address},
               {"ASSESSMENT_PLATFORM_URL", platform.BaseUrl()},
               {"GRADING_ENGINE_URL", platform.BaseUrl()},
               {"CLOUDEVENTS_SINK_URL", "http://127.0.0.1:" + std::to_string(sink.port()) + "/events"},
               {"COLLECTING_TIMEOUT_SECONDS", std::to_string(kCollectingTimeout)},
               {"GRADING_TIMEOUT_SECONDS", std::to_string(kGradingTimeout)},
               {"CML_MAX_FAILURES", "2"},
               {"ARCHIVE_RETENTION_MINUTES", "0"}});
  std::vector<std::string> workers;
  for (int w = 0; w < (lablets + 15) / 16; ++w) workers.push_back(world.AddWorker("w" + std::to_string(w), 64));
  const std::string definition = world.AddDefinition();
  std::vector<std::string> ids;
  int longest_slot = 0;
  for (int n = 0; n < lablets; ++n) {
    const int slot = std::uniform_int_distribution<int>(2, 5)(rng);
    longest_slot = std::max(longest_slot, slot);
    ids.push_back(world.AddInstance(definition, n, std::chrono::seconds(-60), std::chrono::seconds(slot)));
  }

  // The bound, from the last booking: the longest timeslot, a few CML retries, both time-outs,
  // the retention (0), and the sweeps between (longer for more lablets); every lablet must be
  // TERMINATED by then.
  const auto bound =
      std::chrono::seconds(longest_slot + 10 + kCollectingTimeout + kGradingTimeout + 10 + lablets / 10);
  const auto deadline = std::chrono::steady_clock::now() + bound;
  for (const auto& id : ids) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    ASSERT_TRUE(Eventually([&] { return world.InState(id, "TERMINATED"); }, std::max(left, std::chrono::milliseconds(0))))
        << "seed " << seed << ", not TERMINATED within " << bound.count() << " s: " << world.Instance(id);
  }

  // Nothing left on CML or on the workers.
  for (const auto& lab : world.Labs()) EXPECT_TRUE(lab["deleted"].get<bool>()) << "seed " << seed << ": " << lab;
  for (const auto& w : workers) {
    const json worker = world.http->Get("/api/v1/workers/" + w).Json();
    EXPECT_TRUE(worker["reservations"].empty()) << worker;
    EXPECT_TRUE(worker["port_allocations"].empty()) << worker;
  }

  const json sim_state = testing::HttpClient(platform.BaseUrl()).Get("/sim/state").Json();
  const json& faults = sim_state["faults"];
  std::set<std::string> collected;  // the instances whose collection the platform accepted (202)
  for (const auto& c : sim_state["collections"]) collected.insert(c["instance_id"].get<std::string>());
  // Every event reaches the sink once it is back (the dispatcher's backoff is at most 5 min;
  // its first retries come within seconds).
  ASSERT_TRUE(Eventually([&] { return world.http->Get("/metrics").body.find("ccm_outbox_depth 0\n") != std::string::npos; },
                         std::chrono::seconds(120)))
      << world.http->Get("/metrics").body << world.http->Get("/api/v1/events?state=pending&limit=5").body;
  const auto arrivals = sink.FirstArrivals();
  std::map<std::string, int> ways_out;
  // Per collection fault: how many lablets drew it, and how many of them ended its own way.
  std::map<std::string, int> drawn, own_way;
  for (const auto& id : ids) {
    const json i = world.Instance(id);
    const auto path = Column(i["state_history"], "to");
    // A legal path, each state once (a duplicated event applied twice would show).
    std::string from = "PENDING";
    for (const auto& to : path) {
      EXPECT_TRUE(domain::IsLegalMove(*domain::ParseInstanceState(from), *domain::ParseInstanceState(to)))
          << "seed " << seed << ": " << id << " " << from << " -> " << to;
      from = to;
    }
    EXPECT_EQ(std::set<std::string>(path.begin(), path.end()).size(), path.size()) << i;
    for (const auto& h : i["state_history"]) EXPECT_FALSE(h["reason"].get<std::string>().empty()) << i;

    // Its events: one per state, in the order of its history, and the sink got them in that order.
    const json events = world.Events(id);
    std::vector<std::string> moves;
    for (const auto& e : events) {
      const std::string type = e["type"];
      if (type != domain::kPodAssignedEventType && type != domain::kGradingCompletedEventType)
        moves.push_back(e["event"]["data"]["new_state"]);
      EXPECT_EQ(e["state"], "delivered") << e;
    }
    std::vector<std::string> expected = {"PENDING"};
    expected.insert(expected.end(), path.begin(), path.end());
    EXPECT_EQ(moves, expected) << "seed " << seed << ": " << id;
    auto sent = arrivals.find(id);
    ASSERT_NE(sent, arrivals.end()) << id;
    EXPECT_EQ(sent->second, Column(events, "id")) << "seed " << seed << ": " << id;

    // The way out matches what was done to it.
    const std::string stopping = ReasonOf(i, "STOPPING");
    std::string way;
    if (std::find(path.begin(), path.end(), "RUNNING") == path.end()) {
      way = "instantiation_failed";
      EXPECT_TRUE(StartsWith(ReasonOf(i, "TERMINATED"), "instantiation failed: ")) << i;
    } else {
      // While other lablets' 503s keep the platform client's shared breaker open (5 failures in
      // a row open it for 10 s; a failed half-open probe opens it again), a lablet's collection
      // request may not get through before its time-out, whatever its own fault would have
      // been: it times out naming its last request's failure, which is the open breaker, the
      // client's own 5 s time-out on a loaded machine, or, for a lablet drawn to answer 503 a
      // few times, that 503 (its rounds spaced out by the open breaker). Nothing else. A
      // request the platform took after the client gave up on it gives a late grade; without
      // a collection taken, there is no grade.
      const bool timed_out_on_requests = StartsWith(stopping, "collection timed out after " +
                                                                  std::to_string(kCollectingTimeout) + " s (last request: ");
      const auto says = [&](const char* what) { return stopping.find(what) != std::string::npos; };
      if (!faults.contains(id)) {
        // Every request for it was kept out by the breakers.
        EXPECT_TRUE(timed_out_on_requests && says("circuit open"))
            << "seed " << seed << ": the platform never heard of " << i;
        EXPECT_TRUE(i["grading_score"].is_null()) << i;
        ++ways_out["kept_out_until_timeout"];
        continue;
      }
      const std::string fault = faults[id]["collection"];
      way = fault;
      ++drawn[fault];
      if (!timed_out_on_requests) ++own_way[fault];
      if (timed_out_on_requests) {
        way = "kept_out_until_timeout";
        EXPECT_TRUE(says("circuit open") || says("Timeout was reached") ||
                    (fault == "unavailable_then_ok" && says("HTTP 503")))
            << "seed " << seed << ", " << fault << ": its requests failed otherwise: " << i;
        // A late grade only for a collection the platform took; the full marks if any.
        if (!collected.contains(id)) {
          EXPECT_TRUE(i["grading_score"].is_null()) << i;
        } else if (!i["grading_score"].is_null()) {
          EXPECT_EQ(i["grading_score"]["total"], 8.0) << i;
        }
      } else if (fault == "normal" || fault == "slow" || fault == "unavailable_then_ok") {
        EXPECT_EQ(stopping, "graded") << "seed " << seed << ", " << fault << ": " << i;
        if (i["grading_score"].is_object()) {
          EXPECT_EQ(i["grading_score"]["total"], 8.0) << i;
        } else {
          ADD_FAILURE() << "no grade: " << i;
        }
      } else if (fault == "silent") {
        EXPECT_EQ(stopping, "collection timed out after " + std::to_string(kCollectingTimeout) + " s") << i;
      } else if (fault == "refused") {
        EXPECT_TRUE(StartsWith(stopping, "collection timed out after " + std::to_string(kCollectingTimeout) +
                                             " s (the platform refused the collection: "))
            << i;
      } else if (fault == "collection_failed") {
        EXPECT_EQ(stopping, "collection failed: DEVICE_UNREACHABLE") << i;
      } else if (fault == "grading_failed") {
        EXPECT_EQ(stopping, "grading failed: RUBRIC_ERROR") << i;
      } else if (fault == "no_grading") {
        EXPECT_EQ(stopping, "grading timed out after " + std::to_string(kGradingTimeout) + " s") << i;
      } else {
        ADD_FAILURE() << "unknown fault " << fault;
      }
      if (!timed_out_on_requests && fault != "refused") {
        EXPECT_TRUE(collected.contains(id)) << "seed " << seed << ", " << fault << ": " << i;
      }
      if (stopping != "graded" && !timed_out_on_requests) {
        EXPECT_TRUE(i["grading_score"].is_null()) << i;
      }
      // A pod refused for good is never assigned, and once the engine answered, says why (an
      // instance may leave RUNNING while the engine's breaker, opened by others' 503s, is open).
      if (faults[id]["pod"] == "refused") {
        EXPECT_FALSE(i["pod_assigned"].get<bool>()) << i;
        if (i["pod_due_at"].is_null() && !i["pod_error"].get<std::string>().empty()) {
          EXPECT_NE(i["pod_error"].get<std::string>().find("HTTP 400"), std::string::npos) << i;
        }
      }
    }
    ++ways_out[way];
  }
  std::cout << "chaos: ways out:";
  for (const auto& [way, n] : ways_out) std::cout << " " << way << "=" << n;
  std::cout << "\n";
  // The draw met more than one fault (a draw of 50 meets most), each fault drawn three times or
  // more was met by at least one lablet that ended its own way, and the requests that did not
  // get through, however unlucky the timing, kept no more than half of the lablets from theirs.
  EXPECT_GE(own_way.size(), 3u) << "seed " << seed;
  for (const auto& [fault, n] : drawn) {
    if (n >= 3) {
      EXPECT_GE(own_way[fault], 1) << "seed " << seed << ": every lablet drawn " << fault << " was kept out";
    }
  }
  EXPECT_LE(ways_out["kept_out_until_timeout"], lablets / 2) << "seed " << seed;
}

}  // namespace
}  // namespace ccm
