#include "app/tracing.h"

namespace ccm::app {

std::optional<trace::TraceContext> TraceOf(const domain::LabletInstance& i) {
  if (i.traceparent.empty()) return std::nullopt;
  return trace::Parse(i.traceparent, i.tracestate);
}

std::optional<trace::TraceContext> WorkTrace(const domain::LabletInstance& i) {
  if (trace::Current()) return std::nullopt;
  if (auto own = TraceOf(i)) return own;
  return trace::NewRoot();
}

void RecordTrace(domain::LabletInstance& i) {
  const trace::TraceContext* current = trace::Current();
  if (!current || TraceOf(i)) return;
  i.traceparent = current->Format();
  i.tracestate = current->state;
}

}  // namespace ccm::app
