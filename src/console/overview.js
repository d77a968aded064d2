// Overview, live: lablets per state, lablets stuck past their time-outs, workers with capacity
// and ports used, outbox depth, dead letters, sink breaker and which replica leads. The numbers
// are read from the lists and from /metrics (which computes the outbox, breaker and leader
// figures already), again whenever the stream says something changed, at most every 3 s.
import * as api from "./api.js";
import * as auth from "./auth.js";
import { h, replace, table, short, badge, duration } from "./dom.js";
import { INSTANCE_STATES, enteredAt, stuck } from "./model.js";

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
  const timeouts = auth.settings()?.timeouts;

  async function draw() {
    const [instances, workers, text, ready] = await Promise.all([
      api.all("/api/v1/instances"),
      api.all("/api/v1/workers"),
      api.get("/metrics", { text: true }).catch(() => ""),
      api.get("/health/ready").catch((e) => ({ error: e.message })),
    ]);
    const samples = api.parseMetrics(text);
    const now = Date.now();
    const perState = Object.fromEntries(INSTANCE_STATES.map((s) => [s, 0]));
    for (const i of instances) perState[i.state] = (perState[i.state] || 0) + 1;
    const stuckOnes = instances.filter((i) => stuck(i, timeouts, now));
    const active = workers.filter((w) => w.state !== "TERMINATED");
    const depth = metric(samples, "ccm_outbox_depth");
    const deadLetters = metric(samples, "ccm_events_dead_letters");
    const breaker = ["closed", "open", "half_open"].find((s) => metric(samples, "ccm_sink_breaker_state", { state: s }) === 1);
    const leader = metric(samples, "ccm_leader");
    const lablets = instances.filter((i) => i.state !== "TERMINATED").length;
    replace(
      cards,
      card("Lablets", String(lablets), `active; ${instances.length - lablets} terminated`, "c-lablets"),
      card("Stuck", String(stuckOnes.length), "past their state's time-out", "c-stuck"),
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
        INSTANCE_STATES.map((s) => [h("a", { href: `#/lablets?state=${s}` }, badge(s)), String(perState[s])])),
      table("Lablets stuck past their time-outs", ["Lablet", "State", "In state for", "Owner"],
        stuckOnes.map((i) => [h("a", { href: `#/lablets/${i.id}` }, short(i.id)), badge(i.state), duration(now - Date.parse(enteredAt(i))), i.owner_id]),
        { empty: "None stuck." }),
    );
    replace(
      workersRegion,
      table("Workers: capacity and ports used", ["Worker", "State", "CPU cores", "Memory (GB)", "Ports"],
        active.map((w) => {
          let ports = 0;
          for (const p of Object.values(w.port_allocations || {})) ports += Object.keys(p).length;
          const size = w.port_range ? w.port_range.end - w.port_range.start + 1 : 0;
          return [w.name, badge(w.state), `${w.allocated.cpu_cores} / ${w.capacity.cpu_cores}`,
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
