#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and
// `tracestate` values, and the trace the current thread works for. On nothing but the
// standard library, so that every layer may use it.
namespace ccm::trace {

// One position in a trace: the trace, the span that is the parent of what comes next, the
// trace flags and the vendors' tracestate.
struct TraceContext {
  std::string trace_id;  // 32 lower-case hex digits, not all zero
  std::string span_id;   // 16 lower-case hex digits, not all zero (the spec's parent-id)
  std::uint8_t flags = 0;  // bit 0: sampled; other bits as received
  std::string state;     // the tracestate value, already checked (ParseState); empty if none

  // "00-<trace_id>-<span_id>-<flags>": always version 00, the one this code writes.
  std::string Format() const;
  bool sampled() const { return (flags & 0x01) != 0; }
  // The same trace and state with a new random span id: the context to send to a callee
  // (or put on an event) whose parent is this span. Keeps the sampled flag only, the one
  // flag version 00 defines.
  TraceContext Child() const;
  bool operator==(const TraceContext&) const = default;
};

// A new trace: random trace id and span id, sampled, no state.
TraceContext NewRoot();

// Parses a `traceparent` value and checks a `tracestate` value beside it. nullopt for an
// invalid traceparent: not `version-trace_id-parent_id-flags` of 2, 32, 16 and 2 lower-case
// hex digits; version ff; version 00 with anything after the flags; a later version whose
// fifth part is not introduced by '-'; a trace id or parent id of zeros only. A later
// version than 00 is read by its first four parts (the spec's rule for versions not known).
// An invalid tracestate does not invalidate the traceparent: the state is dropped (see
// ParseState).
std::optional<TraceContext> Parse(std::string_view traceparent, std::string_view tracestate = {});

// The tracestate to pass on from a received value: its list members with surrounding spaces
// and empty members removed, joined by ','. Empty (nothing passed on) when a member is not
// `key=value` by the spec's grammar, a key appears twice, or there are more than 32 members.
// Longer than 512 characters: members of more than 128 characters are dropped first, then
// members from the end, until it fits.
std::string ParseState(std::string_view tracestate);

// The trace the calling thread works for, or null. Set by Scope. The pointer is valid until
// the innermost Scope ends.
const TraceContext* Current();

// Makes `context` the calling thread's current trace while it lives, and restores the one
// before when it ends. Not movable: scopes nest strictly on one thread.
class Scope {
 public:
  explicit Scope(TraceContext context);
  // No change to the current trace when `context` is nullopt.
  explicit Scope(std::optional<TraceContext> context);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  std::optional<TraceContext> context_;
  const TraceContext* previous_ = nullptr;
  bool active_ = false;
};

}  // namespace ccm::trace
