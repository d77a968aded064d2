#include "store/shared.h"

#include <gtest/gtest.h>

#include <vector>

namespace ccm::store {
namespace {

using ports::DeliveryState;
using ports::OutboxRecord;

// One subject's records in seq order, from their states.
std::vector<OutboxRecord> Subject(std::initializer_list<DeliveryState> states) {
  std::vector<OutboxRecord> out;
  std::int64_t seq = 0;
  for (DeliveryState s : states) {
    OutboxRecord& r = out.emplace_back();
    r.seq = ++seq;
    r.state = s;
    r.attempts = 3;
    r.next_attempt_at = FromUnixMillis(100);
  }
  return out;
}

struct RuleOutcome {
  std::vector<DeliveryState> states;
  std::vector<size_t> changed;
  bool dead_letter = false;
};

RuleOutcome Rule(std::vector<OutboxRecord>& records, Timestamp release_at = FromUnixMillis(5000)) {
  std::vector<OutboxRecord*> members;
  for (auto& r : records) members.push_back(&r);
  RuleOutcome out;
  out.dead_letter = KeepHeldRule(members, release_at, [&out](size_t n) { out.changed.push_back(n); });
  for (const auto& r : records) out.states.push_back(r.state);
  return out;
}

constexpr auto kPending = DeliveryState::kPending;
constexpr auto kDelivered = DeliveryState::kDelivered;
constexpr auto kDead = DeliveryState::kDead;
constexpr auto kHeld = DeliveryState::kHeld;

TEST(HeldRule, HoldsWhatIsPendingBehindADeadLetterAndReportsOnlyTheRecordsItMoves) {
  auto records = Subject({kDelivered, kPending, kDead, kPending, kDelivered, kPending});
  const RuleOutcome out = Rule(records);
  EXPECT_EQ(out.states, (std::vector{kDelivered, kPending, kDead, kHeld, kDelivered, kHeld}));
  EXPECT_EQ(out.changed, (std::vector<size_t>{3, 5}));
  EXPECT_TRUE(out.dead_letter);
  // Holding keeps the bookkeeping: a held event resumes where it was only when released.
  EXPECT_EQ(records[3].attempts, 3);
}

TEST(HeldRule, ReleasesHeldRecordsWithNoDeadLetterBeforeThemAfresh) {
  // The dead letter at seq 1 was replayed (pending again): what it held goes out, due at the replay.
  auto records = Subject({kPending, kHeld, kHeld, kDead, kHeld});
  const RuleOutcome out = Rule(records, FromUnixMillis(7000));
  EXPECT_EQ(out.states, (std::vector{kPending, kPending, kPending, kDead, kHeld}));
  EXPECT_EQ(out.changed, (std::vector<size_t>{1, 2}));
  EXPECT_TRUE(out.dead_letter);
  for (size_t n : {1, 2}) {
    EXPECT_EQ(records[n].attempts, 0);
    EXPECT_EQ(records[n].next_attempt_at, FromUnixMillis(7000));
  }
  // The replayed one itself keeps the due time its update gave it.
  EXPECT_EQ(records[0].next_attempt_at, FromUnixMillis(100));
}

TEST(HeldRule, ASubjectThatAlreadyKeepsTheRuleIsLeftAlone) {
  auto records = Subject({kDelivered, kDead, kHeld, kHeld});
  const RuleOutcome out = Rule(records);
  EXPECT_TRUE(out.changed.empty());
  EXPECT_TRUE(out.dead_letter);
  auto clear = Subject({kDelivered, kPending});
  EXPECT_FALSE(Rule(clear).dead_letter);
  EXPECT_TRUE(Rule(clear).changed.empty());
}

TEST(DeliveryUpdate, TouchesTheSubjectWhenItDeadLettersOrReplays) {
  EXPECT_TRUE(TouchesSubject({1, kDead, 5, FromUnixMillis(1), "refused", "e"}));
  EXPECT_TRUE(TouchesSubject({1, kPending, 0, FromUnixMillis(1), "", "e"}));  // a replay
  EXPECT_FALSE(TouchesSubject({1, kPending, 2, FromUnixMillis(1), "503", "e"}));  // a retry
  EXPECT_FALSE(TouchesSubject({1, kDelivered, 1, FromUnixMillis(1), "", "e"}));
}

TEST(DeliveryUpdate, SetsTheTimeItsStateNamesAndClearsADeadTimeOnReplay) {
  OutboxRecord r = Subject({kPending})[0];
  ApplyDelivery(r, {1, kDead, 4, FromUnixMillis(900), "gone", "e"});
  EXPECT_EQ(r.state, kDead);
  EXPECT_EQ(r.dead_at, FromUnixMillis(900));
  EXPECT_EQ(r.next_attempt_at, FromUnixMillis(100));  // a dead letter is not due
  EXPECT_EQ(r.last_error, "gone");
  ApplyDelivery(r, {1, kPending, 0, FromUnixMillis(1000), "", "e"});
  EXPECT_EQ(r.dead_at, std::nullopt);
  EXPECT_EQ(r.next_attempt_at, FromUnixMillis(1000));
  EXPECT_EQ(r.attempts, 0);
  ApplyDelivery(r, {1, kDelivered, 1, FromUnixMillis(1100), "", "e"});
  EXPECT_EQ(r.delivered_at, FromUnixMillis(1100));
  EXPECT_EQ(r.next_attempt_at, FromUnixMillis(1000));
}

}  // namespace
}  // namespace ccm::store
