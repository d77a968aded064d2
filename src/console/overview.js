// Overview, live: lablets per state, lablets stuck past their time-outs, workers with capacity,
// ports and lablets, outbox depth, dead letters, sink breaker and which replica leads. The
// lablet figures come from GET /api/v1/overview (computed by the server, which pages through
// every lablet and keeps its answer for 2 s), the rest from the workers' list and /metrics;
// read again whenever the stream says something changed, at most every 3 s.
import * as api from "./api.js";
import { h, replace, table, short, badge, duration } from "./dom.js";
import { INSTANCE_STATES } from "./model.js";

function card(title, value, detail, id) {
  return h("section", { class: "card", "aria-labelledby": id },
    h("h2", { id }, title), h("p", { class: "big" }, value), detail ? h("p", { class: "muted" }, detail) : null);
}

function metric(samples, name, labels = {}) {
  const s = samples.find((m) => m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v));
  return s ? s.value : null;
}

export async function render(main, ctx) {
  const cards = h("div", { class: "cards", "aria-live": "polite", id: "overview-cards" });
  const details = h("div", { class: "overview-details" });
  const workersRegion = h("div");

  async function draw() {
    const [overview, workers, text, ready] = await Promise.all([
      api.get("/api/v1/overview"),
      api.all("/api/v1/workers"),
      api.get("/metrics", { text: true }).catch(() => ""),
      api.get("/health/ready").catch((e) => ({ error: e.message })),
    ]);
    const samples = api.parseMetrics(text);
    const now = Date.now();
    const perState = overview.per_state;
    const stuckOnes = overview.stuck.items;
    const labletsOf = Object.fromEntries(overview.workers.map((w) => [w.worker_id, w.lablets]));
    const active = workers.filter((w) => w.state !== "TERMINATED");
    const depth = metric(samples, "ccm_outbox_depth");
    const deadLetters = metric(samples, "ccm_events_dead_letters");
    const breaker = ["closed", "open", "half_open"].find((s) => metric(samples, "ccm_sink_breaker_state", { state: s }) === 1);
    const leader = metric(samples, "ccm_leader");
    const lablets = overview.total - (perState.TERMINATED || 0);
    replace(
      cards,
      card("Lablets", String(lablets), `active; ${perState.TERMINATED || 0} terminated`, "c-lablets"),
      card("Stuck", String(overview.stuck.total), "past their state's time-out", "c-stuck"),
      card("Workers", String(active.length), `${active.filter((w) => w.state === "RUNNING").length} running`, "c-workers"),
      card("Outbox depth", depth === null ? "—" : String(depth), "events waiting for the sink", "c-outbox"),
      card("Dead letters", deadLetters === null ? "—" : String(deadLetters), h("a", { href: "#/events" }, "see and replay"), "c-dead"),
      card("Sink breaker", breaker ? breaker.replace("_", "-") : "—", !breaker ? "no sink to deliver to" : breaker === "open" ? "deliveries paused: the sink fails" : breaker === "half_open" ? "trying the sink again" : "deliveries flow", "c-breaker"),
      card("This replica", ready.error ? "not ready" : leader === 0 || ready.leader === false ? "follower" : "leader",
        ready.error || "the leader runs the reconcilers", "c-leader"),
    );
    replace(
      details,
      table("Lablets per state", ["State", "Lablets"],
        INSTANCE_STATES.map((s) => [h("a", { href: `#/lablets?state=${s}` }, badge(s)), String(perState[s] || 0)])),
      table(overview.stuck.total > stuckOnes.length
        ? `Lablets stuck past their time-outs: the ${stuckOnes.length} oldest of ${overview.stuck.total}`
        : "Lablets stuck past their time-outs", ["Lablet", "State", "In state for", "Owner", "Worker"],
        stuckOnes.map((i) => [h("a", { href: `#/lablets/${i.id}` }, short(i.id)), badge(i.state), duration(now - Date.parse(i.since)), i.owner_id,
          i.worker_id ? h("a", { href: `#/lablets?worker=${i.worker_id}`, title: i.worker_id }, short(i.worker_id)) : "—"]),
        { empty: "None stuck." }),
    );
    replace(
      workersRegion,
      table("Workers: capacity and ports used", ["Worker", "State", "Lablets", "CPU cores", "Memory (GB)", "Ports"],
        active.map((w) => {
          let ports = 0;
          for (const p of Object.values(w.port_allocations || {})) ports += Object.keys(p).length;
          const size = w.port_range ? w.port_range.end - w.port_range.start + 1 : 0;
          return [w.name, badge(w.state), h("a", { href: `#/lablets?worker=${w.id}` }, String(labletsOf[w.id] || 0)), `${w.allocated.cpu_cores} / ${w.capacity.cpu_cores}`,
            `${w.allocated.memory_gb} / ${w.capacity.memory_gb}`, `${ports} / ${size}`];
        }),
        { empty: "No worker is registered." }),
    );
  }

  replace(main, h("h1", {}, "Overview"), cards, details, workersRegion);
  await draw();
  let timer = 0;
  let last = 0;
  const later = () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = 0;
      last = Date.now();
      draw().catch((e) => ctx.notify(e.message));
    }, Math.max(200, 3000 - (Date.now() - last)));
  };
  const unsubscribe = ctx.subscribe(later);
  const poll = setInterval(later, 15000);
  return () => {
    unsubscribe();
    clearTimeout(timer);
    clearInterval(poll);
  };
}
