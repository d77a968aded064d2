// Lablets: every instance in a table filtered by state, worker, owner and timeslot, searchable
// by id, paged, and kept current by the live stream (each changed lablet is read again).
import * as api from "./api.js";
import * as auth from "./auth.js";
import { h, replace, table, time, slot, short, badge, duration } from "./dom.js";
import { INSTANCE_STATES, enteredAt, stuck, portsText } from "./model.js";

const PAGE = 20;

export async function render(main, ctx, _id, query) {
  const instances = new Map();
  for (const i of await api.all("/api/v1/instances")) instances.set(i.id, i);
  const filter = {
    state: query.get("state") || "",
    worker: query.get("worker") || "",
    owner: query.get("owner") || "",
    slot: query.get("slot") || "",
    search: query.get("q") || "",
    page: 0,
  };
  const timeouts = auth.settings()?.timeouts;
  const count = h("p", { class: "muted", "aria-live": "polite", id: "lablet-count" });
  const results = h("div", { id: "lablet-table" });

  const workerSelect = h("select", { id: "f-worker", name: "worker" }, h("option", { value: "" }, "any"));
  function refreshWorkers() {
    const ids = [...new Set([...instances.values()].map((i) => i.worker_id).filter(Boolean))].sort();
    if (filter.worker && !ids.includes(filter.worker)) ids.push(filter.worker);
    replace(workerSelect, h("option", { value: "" }, "any"), ids.map((w) => h("option", { value: w }, short(w))));
    workerSelect.value = filter.worker;
  }

  function matches(i, now) {
    if (filter.state === "STUCK") {
      if (!stuck(i, timeouts, now)) return false;
    } else if (filter.state && i.state !== filter.state) return false;
    if (filter.worker && i.worker_id !== filter.worker) return false;
    if (filter.owner && !i.owner_id.toLowerCase().includes(filter.owner.toLowerCase())) return false;
    if (filter.search && !i.id.includes(filter.search.trim().toLowerCase())) return false;
    const start = Date.parse(i.timeslot_start);
    const end = Date.parse(i.timeslot_end);
    if (filter.slot === "now" && !(start <= now && now < end)) return false;
    if (filter.slot === "upcoming" && !(start > now)) return false;
    if (filter.slot === "past" && !(end <= now)) return false;
    return true;
  }

  function draw() {
    const now = Date.now();
    const rows = [...instances.values()]
      .filter((i) => matches(i, now))
      .sort((a, b) => b.created_at.localeCompare(a.created_at) || a.id.localeCompare(b.id));
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    filter.page = Math.min(filter.page, pages - 1);
    const shown = rows.slice(filter.page * PAGE, (filter.page + 1) * PAGE);
    count.textContent = `${rows.length} of ${instances.size} lablets` +
      (instances.size >= api.MAX_ITEMS ? ` (the console reads the first ${api.MAX_ITEMS}; use the API for the rest)` : "");
    // A redraw keeps the keyboard focus on the pager button that had it.
    const focused = results.contains(document.activeElement) ? document.activeElement.id : "";
    replace(
      results,
      table(
        "Lablets, newest first",
        ["Lablet", "State", "Owner", "Worker", "Timeslot", "Ports", "In state for"],
        shown.map((i) => [
          h("a", { href: `#/lablets/${i.id}`, title: i.id }, short(i.id)),
          [badge(i.state), stuck(i, timeouts, now) ? h("span", { class: "badge stuck" }, "stuck") : null],
          i.owner_id,
          i.worker_id ? h("a", { href: `#/lablets?worker=${i.worker_id}`, title: i.worker_id }, short(i.worker_id)) : "—",
          slot(i.timeslot_start, i.timeslot_end),
          portsText(i.allocated_ports),
          duration(now - Date.parse(enteredAt(i))),
        ]),
        { empty: "No lablet matches.", rowAttrs: (n) => ({ "data-id": shown[n].id, "data-state": shown[n].state }) },
      ),
      h(
        "nav",
        { class: "pager", "aria-label": "Pages of lablets" },
        h("button", { type: "button", id: "prev-page", class: "secondary", disabled: filter.page === 0, onclick: () => { filter.page--; draw(); } }, "Previous page"),
        h("span", {}, `Page ${filter.page + 1} of ${pages}`),
        h("button", { type: "button", id: "next-page", class: "secondary", disabled: filter.page >= pages - 1, onclick: () => { filter.page++; draw(); } }, "Next page"),
      ),
    );
    if (focused) document.getElementById(focused)?.focus();
  }

  const bind = (el, key) => {
    el.value = filter[key];
    el.addEventListener("input", () => {
      filter[key] = el.value;
      filter.page = 0;
      draw();
    });
    return el;
  };
  refreshWorkers();
  replace(
    main,
    h("h1", {}, "Lablets"),
    h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter lablets", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "f-search" }, "Id", bind(h("input", { id: "f-search", type: "search", placeholder: "part of an id", autocomplete: "off" }), "search")),
      h("label", { for: "f-state" }, "State", bind(h("select", { id: "f-state" }, h("option", { value: "" }, "any"), h("option", { value: "STUCK" }, "stuck past its time-out"), INSTANCE_STATES.map((s) => h("option", { value: s }, s))), "state")),
      h("label", { for: "f-worker" }, "Worker", bind(workerSelect, "worker")),
      h("label", { for: "f-owner" }, "Owner", bind(h("input", { id: "f-owner", type: "text", autocomplete: "off" }), "owner")),
      h("label", { for: "f-slot" }, "Timeslot", bind(h("select", { id: "f-slot" }, h("option", { value: "" }, "any"), h("option", { value: "now" }, "open now"), h("option", { value: "upcoming" }, "upcoming"), h("option", { value: "past" }, "over")), "slot")),
    ),
    count,
    results,
  );
  draw();

  // Each lablet a record names is read again, at most every 200 ms.
  const due = new Set();
  let timer = 0;
  const flush = async () => {
    timer = 0;
    const ids = [...due];
    due.clear();
    await Promise.all(
      ids.map(async (id) => {
        try {
          instances.set(id, await api.get(`/api/v1/instances/${encodeURIComponent(id)}`));
        } catch (e) {
          if (e.status === 404) instances.delete(id);
        }
      }),
    );
    refreshWorkers();
    draw();
  };
  const unsubscribe = ctx.subscribe((record) => {
    if (!record.type || !record.type.startsWith("ccm.lablet.instance.") || !record.subject) return;
    due.add(record.subject);
    if (!timer) timer = setTimeout(flush, 200);
  });
  // The "in state for" column ages.
  const tick = setInterval(draw, 15000);
  return () => {
    unsubscribe();
    clearTimeout(timer);
    clearInterval(tick);
  };
}
