// The handlers of the events the Assessment Platform sends, one per type, and the score they
// carry: what each does to the instance it names (SYSTEM.md, "Receiving").
#include <cmath>

#include "app/collection.h"
#include "app/receiver.h"
#include "app/tracing.h"
#include "ports/store.h"

namespace ccm::app {

using namespace ccm::domain;
using nlohmann::json;

namespace {

// The instance states after `s` in the lifecycle (for stale no-ops).
int Rank(InstanceState s) { return static_cast<int>(s); }
bool Past(InstanceState s, InstanceState than) { return Rank(s) > Rank(than); }

Result<double> Number(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Error::InvalidArgument(path + " is required", path);
  if (!it->is_number()) return Error::InvalidArgument(path + " must be a number", path);
  return it->get<double>();
}

// Whether an instance in `s` takes a score: GRADING and every state after it.
bool IsGradedOrLater(InstanceState s) { return Rank(s) >= Rank(InstanceState::kGrading); }

// An optional string: absent or null is nullopt; anything else must be a non-empty string.
Result<std::optional<std::string>> OptionalText(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string() || it->get_ref<const std::string&>().empty())
    return Error::InvalidArgument(path + " must be a non-empty string when given", path);
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::string> Text(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Error::InvalidArgument(path + " is required", path);
  if (!it->is_string() || it->get_ref<const std::string&>().empty())
    return Error::InvalidArgument(path + " must be a non-empty string", path);
  return it->get<std::string>();
}

struct ReportedFailure {
  std::string code;
  std::string message;
};

// error_code (required) and error_message (optional) of a failure event.
Result<ReportedFailure> ReadFailure(const json& data) {
  auto code = Text(data, "error_code", "data.error_code");
  if (!code) return code.error();
  auto m = data.find("error_message");
  if (m != data.end() && !m->is_null() && !m->is_string())
    return Error::InvalidArgument("data.error_message must be a string", "data.error_message");
  return ReportedFailure{*code, m != data.end() && m->is_string() ? m->get<std::string>() : ""};
}

Error WrongState(const LabletInstance& i, std::string_view event, std::string_view needs) {
  return Error::Conflict("instance " + i.id.value + " is " + std::string(ToString(i.state)) + "; " +
                             std::string(event) + " needs " + std::string(needs),
                         "state");
}

}  // namespace

Result<GradingScore> ParseGradingScore(const json& data) {
  auto it = data.find("score");
  if (it == data.end() || !it->is_object()) return Error::InvalidArgument("data.score must be an object", "data.score");
  const json& s = *it;
  GradingScore score;
  const bool older = s.contains("total_points_earned") || s.contains("total_points_possible");
  const char* total_key = older ? "total_points_earned" : "total";
  const char* max_key = older ? "total_points_possible" : "max";
  const char* list_key = older ? "check_results" : "breakdown";
  const char* name_key = older ? "check_name" : "criterion";
  const char* points_key = older ? "points_earned" : "points";
  const char* cmax_key = older ? "points_possible" : "max";
  auto total = Number(s, total_key, std::string("data.score.") + total_key);
  if (!total) return total.error();
  auto max = Number(s, max_key, std::string("data.score.") + max_key);
  if (!max) return max.error();
  score.total = *total;
  score.max = *max;
  if (auto l = s.find(list_key); l != s.end() && !l->is_null()) {
    if (!l->is_array()) return Error::InvalidArgument(std::string("data.score.") + list_key + " must be an array",
                                                      std::string("data.score.") + list_key);
    for (size_t n = 0; n < l->size(); ++n) {
      const json& c = (*l)[n];
      const std::string at = std::string("data.score.") + list_key + "[" + std::to_string(n) + "]";
      if (!c.is_object()) return Error::InvalidArgument(at + " must be an object", at);
      auto name = Text(c, name_key, at + "." + name_key);
      if (!name) return name.error();
      auto points = Number(c, points_key, at + "." + points_key);
      if (!points) return points.error();
      auto cmax = Number(c, cmax_key, at + "." + cmax_key);
      if (!cmax) return cmax.error();
      score.breakdown.push_back({*name, *points, *cmax});
    }
  }
  for (const json* holder : {&s, &data}) {
    if (auto p = holder->find("passed"); p != holder->end() && !p->is_null()) {
      if (!p->is_boolean()) return Error::InvalidArgument("passed must be true or false", "data.passed");
      score.passed = p->get<bool>();
      break;
    }
  }
  if (auto v = Validate(score); !v) {
    Error e = v.error();
    // Name the field as the event spells it.
    if (older) {
      for (auto [from, to] : {std::pair{"score.total", "score.total_points_earned"}, {"score.max", "score.total_points_possible"},
                              {"score.breakdown", "score.check_results"}})
        if (e.field.rfind(from, 0) == 0) e.field = std::string(to) + e.field.substr(std::string(from).size());
      for (auto [from, to] : {std::pair{".points", ".points_earned"}, {".max", ".points_possible"}})
        if (e.field.size() > std::string(from).size() && e.field.ends_with(from) && e.field.find('[') != std::string::npos)
          e.field = e.field.substr(0, e.field.size() - std::string(from).size()) + to;
    }
    e.field = "data." + e.field;
    return e;
  }
  return score;
}

Status EventReceiver::Move(LabletInstance& i, InstanceState to, const std::string& reason, const std::string& actor,
                           ports::Changes& changes) {
  const bool releases = (HoldsCapacity(i.state) && !HoldsCapacity(to)) || (HoldsPorts(i.state) && !HoldsPorts(to));
  std::optional<Worker> worker;
  if (i.worker_id && releases) {
    // Only a release touches the worker, and the receiver's moves never release.
    auto w = d_.store.GetWorker(*i.worker_id);
    if (!w) return w.error();
    worker = std::move(w.value());
  }
  auto change = MoveInstance(i, worker ? &*worker : nullptr, to, d_.clock.Now(), reason, actor);
  if (!change) return change.error();
  changes.events.push_back(d_.events.InstanceMoved(i, *change, worker ? &*worker : nullptr, nullptr));
  if (worker) changes.workers.push_back(*worker);
  return {};
}

Status EventReceiver::RecordScore(LabletInstance& i, const GradingScore& score, const std::string& event_id,
                                  const std::string& actor, ports::Changes& changes) {
  const Timestamp now = d_.clock.Now();
  const ScoreRecord& record = i.AddScore(score, event_id, actor, now);
  double seconds = 0;
  for (auto h = i.state_history.rbegin(); h != i.state_history.rend(); ++h)
    if (h->to == InstanceState::kGrading) {
      seconds = std::chrono::duration<double>(now - h->at).count();
      break;
    }
  changes.events.push_back(d_.events.GradingCompleted(i, record, seconds));
  if (i.state != InstanceState::kGrading) {
    // A re-grade, or a score after the instance ended otherwise (a time-out, an operator): it
    // has a score now, and its terminated event says so.
    if (!i.ending || i.ending->outcome != domain::Outcome::kGraded)
      i.ending = Ending{domain::Outcome::kGraded, StageOf(i.state), "graded_late",
                        i.ending ? "scored after the lablet ended (" + std::string(ToString(i.ending->outcome)) + ")"
                                 : "scored after the lablet ended"};
    return {};
  }
  i.ending = Ending{domain::Outcome::kGraded, "grading", "graded", "graded"};
  return Move(i, InstanceState::kStopping, "graded", actor, changes);
}

Result<EventReceiver::Outcome> EventReceiver::CollectionCompleted(LabletInstance& i, const json& data,
                                                                   const std::string&, const std::string& actor,
                                                                   ports::Changes& changes) {
  auto collection_id = OptionalText(data, "collection_id", "data.collection_id");
  if (!collection_id) return collection_id.error();
  auto artifacts = OptionalText(data, "artifacts_uri", "data.artifacts_uri");
  if (!artifacts) return artifacts.error();
  if (Past(i.state, InstanceState::kCollecting)) return Outcome::kStale;
  if (i.state != InstanceState::kCollecting) return WrongState(i, "assessment.collection.completed", "COLLECTING");
  if (*collection_id || *artifacts) i.collection = CollectionRef{*collection_id, *artifacts};
  if (auto s = Move(i, InstanceState::kGrading, "collection completed", actor, changes); !s) return s.error();
  return Outcome::kApplied;
}

Result<EventReceiver::Outcome> EventReceiver::GradingCompleted(LabletInstance& i, const json& data,
                                                                const std::string& event_id, const std::string& actor,
                                                                ports::Changes& changes) {
  auto score = ParseGradingScore(data);
  if (!score) return score.error();
  if (i.state == InstanceState::kCollecting) {
    // Arrived before collection.completed: the collection is evidently done. Collection ids it
    // happens to carry are kept; they are not its subject, so odd ones are not refused.
    auto collection_id = OptionalText(data, "collection_id", "data.collection_id");
    auto artifacts = OptionalText(data, "artifacts_uri", "data.artifacts_uri");
    CollectionRef ref{collection_id ? *collection_id : std::nullopt, artifacts ? *artifacts : std::nullopt};
    if (ref.collection_id || ref.artifacts_uri) i.collection = std::move(ref);
    if (auto s = Move(i, InstanceState::kGrading, "graded before collection was reported", actor, changes); !s)
      return s.error();
  }
  // From GRADING on, every score is kept: the first ends grading, a later one (another event
  // id) is a re-grade, until retention removes the instance.
  if (!IsGradedOrLater(i.state))
    return WrongState(i, "assessment.grading.completed", "COLLECTING, GRADING or a later state");
  if (auto s = RecordScore(i, *score, event_id, actor, changes); !s) return s.error();
  return Outcome::kApplied;
}

Result<EventReceiver::Outcome> EventReceiver::CollectionFailed(LabletInstance& i, const json& data,
                                                                const std::string&, const std::string& actor,
                                                                ports::Changes& changes) {
  auto failure = ReadFailure(data);
  if (!failure) return failure.error();
  auto retry = data.find("retry_possible");
  if (retry != data.end() && !retry->is_boolean())
    return Error::InvalidArgument("data.retry_possible must be true or false", "data.retry_possible");
  const bool retry_possible = retry != data.end() && retry->get<bool>();
  if (Past(i.state, InstanceState::kCollecting)) return Outcome::kStale;
  if (i.state != InstanceState::kCollecting) return WrongState(i, "assessment.collection.failed", "COLLECTING");
  i.last_failure = FailureRecord{"collection", failure->code, failure->message, retry_possible, d_.clock.Now()};
  ++i.collection_failures;
  if (retry_possible && i.collection_failures <= options_.max_collection_failures) {
    // Stays COLLECTING, with the failure on the instance; the collection reconciler requests
    // it again after a backoff. A failure past the bound stops the instance.
    i.collection_due_at = d_.clock.Now() + CollectionBackoff(i.collection_failures);
    changes.instances.push_back(i);
    return Outcome::kApplied;
  }
  std::string message = failure->message.empty() ? "the platform reported " + failure->code : failure->message;
  if (retry_possible) message += " (" + std::to_string(i.collection_failures) + " failures, no more retries)";
  i.ending = Ending{domain::Outcome::kCollectionFailed, "collection", failure->code, std::move(message)};
  if (auto s = Move(i, InstanceState::kStopping, "collection failed: " + failure->code, actor, changes); !s)
    return s.error();
  return Outcome::kApplied;
}

Result<EventReceiver::Outcome> EventReceiver::GradingFailed(LabletInstance& i, const json& data,
                                                             const std::string&, const std::string& actor,
                                                             ports::Changes& changes) {
  auto failure = ReadFailure(data);
  if (!failure) return failure.error();
  if (Past(i.state, InstanceState::kGrading)) return Outcome::kStale;
  if (i.state == InstanceState::kCollecting) {
    if (auto s = Move(i, InstanceState::kGrading, "grading reported before collection", actor, changes); !s)
      return s.error();
  }
  if (i.state != InstanceState::kGrading) return WrongState(i, "assessment.grading.failed", "COLLECTING or GRADING");
  i.last_failure = FailureRecord{"grading", failure->code, failure->message, false, d_.clock.Now()};
  i.ending = Ending{domain::Outcome::kGradingFailed, "grading", failure->code,
                    failure->message.empty() ? "the Grading Engine reported " + failure->code : failure->message};
  if (auto s = Move(i, InstanceState::kStopping, "grading failed: " + failure->code, actor, changes); !s)
    return s.error();
  return Outcome::kApplied;
}

Result<LabletInstance> EventReceiver::RecordGradingResult(const InstanceId& id, const GradingScore& score,
                                                          const std::string& actor) {
  if (auto v = Validate(score); !v) return v.error();
  return RetryStale([&]() -> Result<LabletInstance> {
    auto instance = d_.store.GetInstance(id);
    if (!instance) return instance;
    if (!IsGradedOrLater(instance->state))
      return WrongState(*instance, "a grading result", "GRADING or a later state");
    trace::Scope scope(WorkTrace(*instance));
    RecordTrace(*instance);
    ports::Changes changes;
    if (auto s = RecordScore(*instance, score, "", actor, changes); !s) return s.error();
    changes.instances.push_back(*instance);
    if (auto s = d_.store.Commit(changes); !s) return s.error();
    ++instance->version;
    return instance;
  });
}

}  // namespace ccm::app
