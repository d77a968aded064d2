#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "domain/pod.h"
#include "wire/secrets.h"

namespace ccm::wire {

// The JSON of a pod, as the Grading Engine's Pod schema wants it: each interface with its
// device's `authentication` and `configuration` when it has them, shown only for the Grading
// Engine and callers allowed to read them (`secrets`), else redacted.
nlohmann::json ToJson(const domain::Pod& pod, Secrets secrets);
// The body of the Grading Engine's pod assignment: ToJson(pod, Secrets::kShown), as text.
std::string EncodePodForGradingEngine(const domain::Pod& pod);

}  // namespace ccm::wire
