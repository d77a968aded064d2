#pragma once

#include <optional>

#include "domain/instance.h"
#include "trace/trace_context.h"

// How a lablet's work joins a trace (W3C Trace Context). A lablet records the trace it was
// created in (an API request's `traceparent`, else a new one): its later work, the events
// that work publishes and the calls it makes, join that trace. A request or an inbound event
// that brings its own trace parents what it does instead (the lablet keeps its first trace).
// A lablet stored before traces were kept gets one the first time ccm works on it.
namespace ccm::app {

// The trace recorded on `i`; nullopt when it has none.
std::optional<trace::TraceContext> TraceOf(const domain::LabletInstance& i);

// The trace work on `i` runs in, for a trace::Scope: nullopt when the calling thread already
// has one (a request's, an event's: it stays), else `i`'s own, else a new root (which
// RecordTrace then records on `i`).
std::optional<trace::TraceContext> WorkTrace(const domain::LabletInstance& i);

// Records the calling thread's current trace on `i` when `i` has none; a lablet keeps its
// first trace. Call before writing `i`.
void RecordTrace(domain::LabletInstance& i);

}  // namespace ccm::app
