#include "domain/states.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace ccm::domain {
namespace {

using I = InstanceState;
using W = WorkerState;

// SYSTEM.md's tables, written out again here so that a change to states.cc must be
// deliberate on both sides.
const std::map<I, std::set<I>> kInstanceMoves = {
    {I::kPending, {I::kScheduled, I::kTerminated}},
    {I::kScheduled, {I::kInstantiating, I::kTerminated}},
    {I::kInstantiating, {I::kRunning, I::kTerminated}},
    {I::kRunning, {I::kCollecting, I::kStopping}},
    {I::kCollecting, {I::kGrading, I::kStopping}},
    {I::kGrading, {I::kStopping}},
    {I::kStopping, {I::kStopped}},
    {I::kStopped, {I::kArchived, I::kRunning}},
    {I::kArchived, {I::kTerminated}},
    {I::kTerminated, {}},
};

const std::map<W, std::set<W>> kWorkerMoves = {
    {W::kPending, {W::kProvisioning}},
    {W::kProvisioning, {W::kRunning}},
    {W::kRunning, {W::kDraining, W::kStopping}},
    {W::kDraining, {W::kRunning, W::kStopping}},
    {W::kStopping, {W::kStopped}},
    {W::kStopped, {W::kRunning, W::kTerminated}},
    {W::kTerminated, {}},
};

TEST(InstanceStateMachine, EveryPairIsLegalExactlyWhenTheTableSaysSo) {
  int legal = 0;
  for (I from : kAllInstanceStates) {
    for (I to : kAllInstanceStates) {
      const bool expected = kInstanceMoves.at(from).count(to) > 0;
      EXPECT_EQ(IsLegalMove(from, to), expected) << ToString(from) << " -> " << ToString(to);
      legal += expected;
    }
    const auto targets = AllowedTargets(from);
    EXPECT_EQ(std::set<I>(targets.begin(), targets.end()), kInstanceMoves.at(from)) << ToString(from);
  }
  EXPECT_EQ(legal, 15);
}

TEST(WorkerStateMachine, EveryPairIsLegalExactlyWhenTheTableSaysSo) {
  int legal = 0;
  for (W from : kAllWorkerStates) {
    for (W to : kAllWorkerStates) {
      const bool expected = kWorkerMoves.at(from).count(to) > 0;
      EXPECT_EQ(IsLegalMove(from, to), expected) << ToString(from) << " -> " << ToString(to);
      legal += expected;
    }
  }
  EXPECT_EQ(legal, 9);
}

TEST(InstanceStateMachine, EventTypesFollowTheContractNotTheStateName) {
  const std::map<I, std::string> expected = {
      {I::kPending, "ccm.lablet.instance.pending"},
      {I::kScheduled, "ccm.lablet.instance.scheduled"},
      {I::kInstantiating, "ccm.lablet.instance.provisioning.started"},
      {I::kRunning, "ccm.lablet.instance.running"},
      {I::kCollecting, "ccm.lablet.instance.collecting.started"},
      {I::kGrading, "ccm.lablet.instance.grading.started"},
      {I::kStopping, "ccm.lablet.instance.stopping"},
      {I::kStopped, "ccm.lablet.instance.stopped"},
      {I::kArchived, "ccm.lablet.instance.archived"},
      {I::kTerminated, "ccm.lablet.instance.terminated"},
  };
  for (const auto& [state, type] : expected) EXPECT_EQ(EventTypeOnEntering(state), type) << ToString(state);
}

TEST(WorkerStateMachine, EventTypes) {
  const std::map<W, std::string> expected = {
      {W::kPending, "ccm.worker.pending"},   {W::kProvisioning, "ccm.worker.provisioning.started"},
      {W::kRunning, "ccm.worker.running"},   {W::kDraining, "ccm.worker.draining"},
      {W::kStopping, "ccm.worker.stopping"}, {W::kStopped, "ccm.worker.stopped"},
      {W::kTerminated, "ccm.worker.terminated"},
  };
  for (const auto& [state, type] : expected) EXPECT_EQ(EventTypeOnEntering(state), type) << ToString(state);
}

TEST(States, NamesRoundTripAndUnknownNamesAreRefused) {
  for (I s : kAllInstanceStates) EXPECT_EQ(ParseInstanceState(ToString(s)), s);
  for (W s : kAllWorkerStates) EXPECT_EQ(ParseWorkerState(ToString(s)), s);
  EXPECT_FALSE(ParseInstanceState("running"));
  EXPECT_FALSE(ParseInstanceState(""));
  EXPECT_FALSE(ParseWorkerState("DELETED"));
}

TEST(States, WhatEachStateHoldsOnItsWorker) {
  const std::set<I> capacity = {I::kScheduled, I::kInstantiating, I::kRunning, I::kCollecting,
                                I::kGrading,   I::kStopping,      I::kStopped};
  const std::set<I> ports = {I::kScheduled, I::kInstantiating, I::kRunning, I::kCollecting,
                             I::kGrading,   I::kStopping,      I::kStopped, I::kArchived};
  for (I s : kAllInstanceStates) {
    EXPECT_EQ(HoldsCapacity(s), capacity.count(s) > 0) << ToString(s);
    EXPECT_EQ(HoldsPorts(s), ports.count(s) > 0) << ToString(s);
  }
}

}  // namespace
}  // namespace ccm::domain
