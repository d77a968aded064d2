// One lablet: its timeline, the events it published and received, pod, ports, CML lab,
// scores and errors; an operator collects it, has its pod assigned again or deletes it.
import * as api from "./api.js";
import * as auth from "./auth.js";
import { h, replace, table, time, slot, badge, duration, confirmDialog } from "./dom.js";
import { stuck, portsText } from "./model.js";

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

function timeline(i) {
  const history = i.state_history || [];
  const entries = [{ to: "PENDING", at: i.created_at, reason: "created", actor: "" }, ...history];
  const now = Date.now();
  return table(
    "Timeline: every state, when it was entered, how long it lasted and why",
    ["State", "Entered", "Lasted", "Reason", "By"],
    entries.map((e, n) => {
      const next = entries[n + 1];
      const end = next ? Date.parse(next.at) : i.state === "TERMINATED" ? Date.parse(e.at) : now;
      return [badge(e.to), time(e.at), next || i.state !== "TERMINATED" ? duration(end - Date.parse(e.at)) + (next ? "" : " so far") : "—", e.reason || "—", e.actor || "—"];
    }),
  );
}

function errors(i) {
  const list = [];
  if (i.last_failure)
    list.push(`${i.last_failure.stage}: ${i.last_failure.error_code} ${i.last_failure.error_message}` +
      (i.last_failure.retry_possible ? " (will be retried)" : ""));
  if (i.pod_error) list.push(`pod: ${i.pod_error} (${i.pod_failures} failures)`);
  if (i.cml_error) list.push(`CML: ${i.cml_error} (${i.cml_failures} failures)`);
  if (i.collection_request_error) list.push(`collection request: ${i.collection_request_error}`);
  return list.length ? h("ul", { class: "errors" }, list.map((e) => h("li", {}, e))) : h("p", { class: "muted" }, "No errors.");
}

export async function render(main, ctx, id) {
  const path = `/api/v1/instances/${encodeURIComponent(id)}`;
  const timeouts = auth.settings()?.timeouts;

  async function load() {
    const i = await api.get(path);
    const [pod, published] = await Promise.all([
      api.get(`${path}/pod`).catch((e) => ({ error: e.message })),
      api.all(`/api/v1/events?subject=${encodeURIComponent(id)}`).catch(() => []),
    ]);
    return { i, pod, published };
  }

  function actions(i) {
    if (!ctx.user?.operator) return null;
    const active = !["STOPPING", "STOPPED", "ARCHIVED", "TERMINATED"].includes(i.state);
    return h(
      "div",
      { class: "actions", role: "group", "aria-label": "Actions on this lablet" },
      h("button", {
        type: "button", id: "collect", disabled: i.state !== "RUNNING",
        onclick: () => ctx.act("Collect", () => api.post(`${path}/collect`, { reason: "manual" })).then(refresh),
      }, "Collect"),
      h("button", {
        type: "button", id: "assign-pod", class: "secondary", disabled: !i.worker_id || !active,
        onclick: () => ctx.act("Assign the pod again", () => api.post(`${path}/pod/assign`, {})).then(refresh),
      }, "Assign the pod again"),
      h("button", {
        type: "button", id: "delete", class: "danger", disabled: i.state === "TERMINATED" || i.termination_requested,
        onclick: async () => {
          if (await confirmDialog(`Delete lablet ${id}? Its lab is stopped and wiped; this cannot be undone.`, "Delete"))
            await ctx.act("Delete", () => api.del(path)).then(refresh);
        },
      }, "Delete…"),
    );
  }

  function draw({ i, pod, published }) {
    const scores = i.scores || [];
    const received = scores.filter((s) => s.event_id);
    replace(
      main,
      h("p", {}, h("a", { href: "#/lablets" }, "← All lablets")),
      h("h1", {}, "Lablet ", h("span", { class: "mono" }, id)),
      h("p", { class: "state-line" }, badge(i.state), stuck(i, timeouts) ? h("span", { class: "badge stuck" }, "stuck past its time-out") : null,
        i.termination_requested ? h("span", { class: "badge" }, "deletion requested") : null),
      actions(i),
      h("section", { "aria-labelledby": "s-facts" }, h("h2", { id: "s-facts" }, "Summary"),
        facts([
          ["Owner", i.owner_id],
          ["Definition", `${i.definition_id} ${i.definition_version}`],
          ["Assessment", i.assessment ? `${i.assessment.session_id} / ${i.assessment.part_id}` : "none (practice)"],
          ["Timeslot", slot(i.timeslot_start, i.timeslot_end)],
          ["Worker", i.worker_id ? h("a", { href: `#/lablets?worker=${i.worker_id}` }, i.worker_id) : null],
          ["Ports", portsText(i.allocated_ports)],
          ["CML lab", i.cml_lab_id],
          ["Pod", i.pod_assigned ? "assigned on the Grading Engine" : "not assigned"],
          ["Created", time(i.created_at)],
          ["Ended", i.ending ? `${i.ending.outcome} (${i.ending.code}): ${i.ending.message}` : "not yet"],
          ["Version", String(i.version)],
        ])),
      h("section", { "aria-labelledby": "s-timeline" }, h("h2", { id: "s-timeline" }, "Timeline"), timeline(i)),
      h("section", { "aria-labelledby": "s-errors" }, h("h2", { id: "s-errors" }, "Errors"), errors(i)),
      h("section", { "aria-labelledby": "s-scores" }, h("h2", { id: "s-scores" }, "Scores"),
        table("Grading results, each revision", ["Revision", "Total", "Passed", "By", "At"],
          scores.map((s) => [String(s.revision), `${s.score.total} / ${s.score.max}`, s.score.passed === null ? "—" : s.score.passed ? "yes" : "no", s.actor, time(s.at)]),
          { empty: "No score yet." })),
      h("section", { "aria-labelledby": "s-pod" }, h("h2", { id: "s-pod" }, "Pod"),
        pod.error ? h("p", { class: "muted" }, pod.error) : h("pre", { class: "json", tabindex: "0" }, JSON.stringify(pod, null, 2))),
      h("section", { "aria-labelledby": "s-events" }, h("h2", { id: "s-events" }, "Events"),
        table("Events it published", ["Seq", "Type", "Time", "Delivery", "Attempts"],
          published.map((e) => [String(e.seq), h("span", { class: "mono" }, e.type), time(e.time), e.state, String(e.attempts)]),
          { empty: "None." }),
        table("Events it received (grading results)", ["Event id", "Revision", "At"],
          received.map((s) => [h("span", { class: "mono" }, s.event_id), String(s.revision), time(s.at)]),
          { empty: "None." })),
    );
  }

  let current = await load();
  draw(current);
  let timer = 0;
  async function refresh() {
    clearTimeout(timer);
    timer = 0;
    try {
      const focused = main.contains(document.activeElement) ? document.activeElement.id : "";
      current = await load();
      draw(current);
      if (focused) document.getElementById(focused)?.focus();
    } catch (e) {
      if (e.status === 404) replace(main, h("h1", {}, "Lablet gone"), h("p", {}, `Lablet ${id} no longer exists.`), h("a", { href: "#/lablets" }, "All lablets"));
    }
  }
  const unsubscribe = ctx.subscribe((record) => {
    if (record.subject === id && !timer) timer = setTimeout(refresh, 150);
  });
  return () => {
    unsubscribe();
    clearTimeout(timer);
  };
}
