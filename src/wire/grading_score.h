#pragma once

#include <nlohmann/json.hpp>

#include "domain/instance.h"
#include "domain/result.h"

namespace ccm::wire {

// Reads a score in either shape the platform sends: {total, max, breakdown [{criterion,
// points, max}], passed?} or the older {total_points_earned, total_points_possible,
// check_results [{check_name, points_earned, points_possible}]}, at data.score; `passed` may
// also sit beside the score in `data`. Validates it (domain::Validate). Errors:
// invalid_argument whose field is the path in the event ("data.score.total").
Result<domain::GradingScore> ParseGradingScore(const nlohmann::json& data);

}  // namespace ccm::wire
