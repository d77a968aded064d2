#pragma once

#include "clients/authorized_caller.h"
#include "ports/assessment_platform.h"
#include "ports/clock.h"
#include "ports/grading_engine.h"

namespace ccm::clients {

// The Assessment Platform (ASSESSMENT_PLATFORM_URL) over HTTP.
class AssessmentPlatformClient final : public ports::AssessmentPlatform {
 public:
  // `tokens` may be null (no outbound authentication); not owned.
  AssessmentPlatformClient(RemoteOptions options, ports::Clock& clock, OidcTokenProvider* tokens = nullptr)
      : caller_("assessment platform", std::move(options), clock, tokens) {}
  Status TriggerCollection(const ports::CollectionRequest& request) override;

 private:
  AuthorizedCaller caller_;
};

// The Grading Engine (GRADING_ENGINE_URL) over HTTP: the pod itself is the body, as its API
// wants (no wrapper).
class GradingEngineClient final : public ports::GradingEngine {
 public:
  GradingEngineClient(RemoteOptions options, ports::Clock& clock, OidcTokenProvider* tokens = nullptr)
      : caller_("grading engine", std::move(options), clock, tokens) {}
  Status AssignPod(const std::string& session_id, const std::string& part_id, const domain::Pod& pod) override;

 private:
  AuthorizedCaller caller_;
};

}  // namespace ccm::clients
