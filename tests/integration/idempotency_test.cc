// Creating an instance is safe to retry: an Idempotency-Key gives the first answer again, and
// a reservation is held by one instance at a time. Over real HTTP, against a real SQLite file.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>
#include <vector>

#include "support/db_snapshot.h"
#include "support/http_client.h"
#include "support/lab_seed.h"
#include "support/stack.h"

namespace ccm {
namespace {

using nlohmann::json;
using testing::HttpClient;
using testing::HttpResult;

// A caller per bearer token: the token is the subject, with the operator role.
http::Authenticator TokensAreSubjects() {
  return [](std::string_view token) -> Result<auth::Principal> {
    return auth::Principal{std::string(token), {"ccm.operator"}};
  };
}

class Idempotency : public ::testing::Test {
 protected:
  Idempotency() : stack_(nullptr, {}, TokensAreSubjects()), http_(stack_.BaseUrl()) {
    const json def = testing::SampleDefinitionBody(testing::ReadTestData("sample_lab_template.yaml"));
    HttpResult created = Send("POST", "/api/v1/definitions", def.dump(), "alice");
    EXPECT_EQ(created.status, 201) << created.body;
    definition_id_ = created.Json().value("id", "");
  }

  json Body(const std::string& owner = "candidate-1") const {
    return {{"definition_id", definition_id_},
            {"owner_id", owner},
            {"reservation_id", "r-" + owner},
            {"timeslot_start", "2026-12-01T09:00:00Z"},
            {"timeslot_end", "2026-12-01T10:00:00Z"}};
  }

  HttpResult Send(const std::string& method, const std::string& path, const std::string& body,
                  const std::string& caller, const std::map<std::string, std::string>& more = {}) {
    std::map<std::string, std::string> headers = more;
    headers["Authorization"] = "Bearer " + caller;
    headers["Content-Type"] = "application/json";
    return http_.Send(method, path, body, headers);
  }

  HttpResult Create(const json& body, const std::string& key, const std::string& caller = "alice") {
    return Send("POST", "/api/v1/instances", body.dump(), caller, {{"Idempotency-Key", key}});
  }

  int Instances() {
    HttpResult list = Send("GET", "/api/v1/instances?limit=100", "", "alice");
    EXPECT_EQ(list.status, 200) << list.body;
    return static_cast<int>(list.Json()["items"].size());
  }

  testing::Stack stack_;
  HttpClient http_;
  std::string definition_id_;
};

TEST_F(Idempotency, ARetryWithTheSameKeyAndBodyGetsTheFirstAnswerAndCreatesNothing) {
  HttpResult first = Create(Body(), "booking-42");
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_EQ(first.headers.count("idempotent-replayed"), 0u);
  const std::string events = testing::DbSnapshot(stack_.DbPath());

  HttpResult again = Create(Body(), "booking-42");
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(again.headers["idempotent-replayed"], "true");
  EXPECT_EQ(again.headers["location"], first.headers["location"]);
  EXPECT_EQ(again.Json(), first.Json());
  EXPECT_EQ(Instances(), 1);
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), events);  // no new instance, event or key

  // The first answer is given as it was, even after the instance moved on.
  HttpResult cancelled = Send("DELETE", first.headers["location"], "", "alice");
  ASSERT_EQ(cancelled.status, 202) << cancelled.body;
  HttpResult later = Create(Body(), "booking-42");
  EXPECT_EQ(later.status, 201);
  EXPECT_EQ(later.Json()["state"], "PENDING");
}

TEST_F(Idempotency, TheSameKeyWithAnotherBodyIsAConflictThatChangesNothing) {
  ASSERT_EQ(Create(Body(), "k-1").status, 201);
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  json other = Body();
  other["timeslot_end"] = "2026-12-01T11:00:00Z";
  HttpResult refused = Create(other, "k-1");
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_EQ(refused.ContentType(), "application/problem+json");
  EXPECT_EQ(refused.Json()["field"], "Idempotency-Key") << refused.body;
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
}

TEST_F(Idempotency, KeysBelongToTheirCaller) {
  HttpResult alice = Create(Body("c-a"), "same-key", "alice");
  HttpResult bob = Create(Body("c-b"), "same-key", "bob");
  ASSERT_EQ(alice.status, 201) << alice.body;
  ASSERT_EQ(bob.status, 201) << bob.body;
  EXPECT_NE(alice.Json()["id"], bob.Json()["id"]);
  EXPECT_EQ(bob.headers.count("idempotent-replayed"), 0u);
}

TEST_F(Idempotency, RetriesRacingEachOtherCreateOneInstance) {
  constexpr int kRetries = 8;
  std::vector<HttpResult> answers(kRetries);
  std::vector<std::thread> threads;
  for (int n = 0; n < kRetries; ++n)
    threads.emplace_back([&, n] {
      HttpClient own(stack_.BaseUrl());
      answers[n] = own.Send("POST", "/api/v1/instances", Body().dump(),
                            {{"Authorization", "Bearer alice"}, {"Idempotency-Key", "race"},
                             {"Content-Type", "application/json"}});
    });
  for (auto& t : threads) t.join();
  std::set<std::string> ids;
  for (const auto& a : answers) {
    EXPECT_EQ(a.status, 201) << a.body;
    ids.insert(a.Json().value("id", ""));
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(Instances(), 1);
}

TEST_F(Idempotency, AMalformedKeyIsRefusedBeforeAnythingIsWritten) {
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  for (const std::string& key : {std::string(256, 'k'), std::string("with space"), std::string("\"\"")}) {
    HttpResult r = Create(Body(), key);
    EXPECT_EQ(r.status, 400) << key << ": " << r.body;
    EXPECT_EQ(r.Json()["field"], "Idempotency-Key") << r.body;
  }
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
  // A quoted key (a structured-field string) is the key inside the quotes.
  ASSERT_EQ(Create(Body(), "\"quoted\"").status, 201);
  EXPECT_EQ(Create(Body(), "quoted").headers["idempotent-replayed"], "true");
}

TEST_F(Idempotency, AReservationIsHeldByOneInstanceUntilItTerminates) {
  HttpResult first = Send("POST", "/api/v1/instances", Body().dump(), "alice");
  ASSERT_EQ(first.status, 201) << first.body;
  const std::string before = testing::DbSnapshot(stack_.DbPath());
  HttpResult second = Send("POST", "/api/v1/instances", Body().dump(), "alice");
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_EQ(second.Json()["field"], "reservation_id") << second.body;
  EXPECT_EQ(testing::DbSnapshot(stack_.DbPath()), before);
  // Without a key, a retry of a create that was answered is refused rather than doubled;
  // once the first instance has terminated, the reservation may be booked again.
  ASSERT_EQ(Send("DELETE", first.headers["location"], "", "alice").status, 202);
  HttpResult rebooked = Send("POST", "/api/v1/instances", Body().dump(), "alice");
  EXPECT_EQ(rebooked.status, 201) << rebooked.body;
}

}  // namespace
}  // namespace ccm
