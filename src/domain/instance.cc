#include "domain/instance.h"

#include <cmath>

namespace ccm::domain {

namespace {

template <typename State>
std::string IllegalMoveMessage(std::string_view what, State from, State to) {
  std::string allowed;
  for (State s : AllowedTargets(from)) {
    if (!allowed.empty()) allowed += ", ";
    allowed += ToString(s);
  }
  return std::string(what) + " is " + std::string(ToString(from)) + " and cannot move to " +
         std::string(ToString(to)) + "; allowed: " + (allowed.empty() ? "none (final state)" : allowed);
}

}  // namespace

std::string IllegalInstanceMove(InstanceState from, InstanceState to) {
  return IllegalMoveMessage("instance", from, to);
}
std::string IllegalWorkerMove(WorkerState from, WorkerState to) { return IllegalMoveMessage("worker", from, to); }

Status Validate(const GradingScore& score) {
  if (!std::isfinite(score.max) || score.max <= 0)
    return Error::InvalidArgument("score max must be greater than 0", "score.max");
  if (!std::isfinite(score.total) || score.total < 0 || score.total > score.max)
    return Error::InvalidArgument("score total must be between 0 and max", "score.total");
  for (size_t i = 0; i < score.breakdown.size(); ++i) {
    const auto& c = score.breakdown[i];
    const std::string at = "score.breakdown[" + std::to_string(i) + "]";
    if (c.criterion.empty()) return Error::InvalidArgument("criterion must not be empty", at + ".criterion");
    if (!std::isfinite(c.max) || c.max < 0) return Error::InvalidArgument("max must be 0 or more", at + ".max");
    if (!std::isfinite(c.points) || c.points < 0 || c.points > c.max)
      return Error::InvalidArgument("points must be between 0 and the criterion's max", at + ".points");
  }
  return {};
}

std::string_view ToString(Outcome o) {
  switch (o) {
    case Outcome::kGraded: return "graded";
    case Outcome::kNotAssessed: return "not_assessed";
    case Outcome::kCollectionFailed: return "collection_failed";
    case Outcome::kGradingFailed: return "grading_failed";
    case Outcome::kTimedOut: return "timed_out";
    case Outcome::kInstantiationFailed: return "instantiation_failed";
    case Outcome::kCancelled: return "cancelled";
  }
  return "cancelled";
}

std::optional<Outcome> ParseOutcome(std::string_view text) {
  for (Outcome o : {Outcome::kGraded, Outcome::kNotAssessed, Outcome::kCollectionFailed, Outcome::kGradingFailed,
                    Outcome::kTimedOut, Outcome::kInstantiationFailed, Outcome::kCancelled})
    if (ToString(o) == text) return o;
  return std::nullopt;
}

std::string StageOf(InstanceState s) {
  switch (s) {
    case InstanceState::kPending:
    case InstanceState::kScheduled: return "scheduling";
    case InstanceState::kInstantiating: return "instantiation";
    case InstanceState::kRunning: return "running";
    case InstanceState::kCollecting: return "collection";
    case InstanceState::kGrading: return "grading";
    default: return "stopping";
  }
}

const ScoreRecord& LabletInstance::AddScore(GradingScore score, std::string event_id, std::string actor,
                                            Timestamp at) {
  grading_score = score;
  scores.push_back({static_cast<int>(scores.size()) + 1, std::move(score), std::move(event_id), std::move(actor), at});
  return scores.back();
}

Result<InstanceChange> LabletInstance::MoveTo(InstanceState to, Timestamp at, std::string reason, std::string actor) {
  if (!IsLegalMove(state, to)) return Error::Conflict(IllegalInstanceMove(state, to), "state");
  InstanceChange change{state, to, at, std::move(reason), std::move(actor)};
  state = to;
  switch (to) {
    case InstanceState::kScheduled:
      scheduled_at = at;
      break;
    case InstanceState::kRunning:
      if (!started_at) started_at = at;
      break;
    case InstanceState::kTerminated:
      terminated_at = at;
      break;
    default:
      break;
  }
  state_history.push_back(change);
  return change;
}

}  // namespace ccm::domain
