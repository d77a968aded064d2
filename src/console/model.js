// What several views compute from the API's objects.
export const INSTANCE_STATES = [
  "PENDING", "SCHEDULED", "INSTANTIATING", "RUNNING", "COLLECTING", "GRADING",
  "STOPPING", "STOPPED", "ARCHIVED", "TERMINATED",
];

// When the instance entered its current state.
export function enteredAt(instance) {
  const history = instance.state_history || [];
  return history.length ? history[history.length - 1].at : instance.created_at;
}

// The time-out (ms) of a state, from /ui/config.json's timeouts, or 0.
export function timeoutOf(state, timeouts) {
  if (!timeouts) return 0;
  if (state === "SCHEDULED" || state === "INSTANTIATING") return (timeouts.instantiation_seconds || 0) * 1000;
  if (state === "COLLECTING") return (timeouts.collecting_seconds || 0) * 1000;
  if (state === "GRADING") return (timeouts.grading_seconds || 0) * 1000;
  return 0;
}

// Whether the instance is past its state's time-out (the reconcilers will end it).
// A SCHEDULED lablet waits for its timeslot by design (booked ahead): it is late only once its
// timeslot has begun, as GET /api/v1/overview counts it.
export function stuck(instance, timeouts, now = Date.now()) {
  const limit = timeoutOf(instance.state, timeouts);
  let since = Date.parse(enteredAt(instance));
  if (instance.state === "SCHEDULED") since = Math.max(since, Date.parse(instance.timeslot_start));
  return limit > 0 && now - since > limit;
}

export function portsText(ports) {
  if (!ports || typeof ports !== "object") return "—";
  const entries = Array.isArray(ports) ? ports.map((p) => [p.name, p.port]) : Object.entries(ports);
  return entries.length ? entries.map(([k, v]) => `${k} ${v}`).join(", ") : "—";
}
