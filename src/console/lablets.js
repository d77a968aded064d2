// Lablets: a page of the API's list of instances (GET /api/v1/instances), filtered on the
// server by state, worker and owner, paged with its cursors (Next page follows `next`, Previous
// page goes back through the cursors kept on a stack); an id is looked up with
// GET /api/v1/instances/{id}. The timeslot filter applies to the lablets of the page shown.
// Live: a record about a lablet on the page reads that lablet again; a new lablet that matches
// the filters appears on top of the first page.
import * as api from "./api.js";
import * as auth from "./auth.js";
import { h, replace, table, slot, short, badge, duration } from "./dom.js";
import { INSTANCE_STATES, enteredAt, stuck, portsText } from "./model.js";

const PAGE = 20;

export async function render(main, ctx, _id, query) {
  const filter = {
    state: query.get("state") || "",
    worker: query.get("worker") || "",
    owner: query.get("owner") || "",
    slot: query.get("slot") || "",
    search: query.get("q") || "",
  };
  let rows = [];        // the page shown, in the API's order (new lablets on top of the first page)
  let cursors = [""];   // `after` of each page up to the one shown
  let next = "";        // `after` of the page after it; empty on the last page
  let loading = 0;      // the latest load: an older answer that arrives late is dropped
  const timeouts = auth.settings()?.timeouts;
  const count = h("p", { class: "muted", "aria-live": "polite", id: "lablet-count" });
  const results = h("div", { id: "lablet-table" });

  const workerSelect = h("select", { id: "f-worker", name: "worker" }, h("option", { value: "" }, "any"));
  async function loadWorkers() {
    const page = await api.get("/api/v1/workers?limit=500").catch(() => ({ items: [] }));
    const options = page.items.filter((w) => w.state !== "TERMINATED").map((w) => [w.id, w.name]);
    if (filter.worker && !options.some(([id]) => id === filter.worker)) options.push([filter.worker, short(filter.worker)]);
    replace(workerSelect, h("option", { value: "" }, "any"), options.map(([id, name]) => h("option", { value: id, title: id }, name)));
    workerSelect.value = filter.worker;
  }

  const listPath = (after) => {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (filter.state) q.set("state", filter.state);
    if (filter.worker) q.set("worker_id", filter.worker);
    if (filter.owner.trim()) q.set("owner_id", filter.owner.trim());
    if (after) q.set("after", after);
    return `/api/v1/instances?${q}`;
  };
  // Whether a lablet read again still belongs on a page with these filters.
  const matchesServer = (i) =>
    (!filter.state || i.state === filter.state) && (!filter.worker || i.worker_id === filter.worker) &&
    (!filter.owner.trim() || i.owner_id === filter.owner.trim());
  function inSlot(i, now) {
    const start = Date.parse(i.timeslot_start);
    const end = Date.parse(i.timeslot_end);
    if (filter.slot === "now") return start <= now && now < end;
    if (filter.slot === "upcoming") return start > now;
    if (filter.slot === "past") return end <= now;
    return true;
  }

  async function load() {
    const mine = ++loading;
    let items;
    let after = "";
    const id = filter.search.trim();
    try {
      if (id) {
        items = [await api.get(`/api/v1/instances/${encodeURIComponent(id)}`)].filter(matchesServer);
      } else {
        const page = await api.get(listPath(cursors[cursors.length - 1]));
        items = page.items;
        after = page.next || "";
      }
    } catch (e) {
      if (e.status !== 404) throw e;
      items = [];
    }
    if (mine !== loading) return;
    rows = items;
    next = after;
    draw();
  }
  const reload = () => load().catch((e) => ctx.notify(e.message));

  function draw() {
    const now = Date.now();
    const shown = rows.filter((i) => inSlot(i, now));
    const searching = Boolean(filter.search.trim());
    count.textContent = searching
      ? (shown.length ? "The lablet with this id." : "No lablet has this id (or it does not match the filters).")
      : `${shown.length} lablets on page ${cursors.length}` +
        (filter.slot ? ` (the timeslot filter applies to the ${rows.length} lablets of this page)` : "");
    // A redraw keeps the keyboard focus on the pager button that had it.
    const focused = results.contains(document.activeElement) ? document.activeElement.id : "";
    replace(
      results,
      table(
        "Lablets",
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
      searching ? null : h(
        "nav",
        { class: "pager", "aria-label": "Pages of lablets" },
        h("button", { type: "button", id: "prev-page", class: "secondary", disabled: cursors.length === 1, onclick: () => { cursors.pop(); reload(); } }, "Previous page"),
        h("span", {}, `Page ${cursors.length}`),
        h("button", { type: "button", id: "next-page", class: "secondary", disabled: !next, onclick: () => { cursors.push(next); reload(); } }, "Next page"),
      ),
    );
    if (focused) document.getElementById(focused)?.focus();
  }

  // Filters the server applies start again from the first page; typing waits for a pause.
  let typing = 0;
  const bind = (el, key, { server = true, delay = 0 } = {}) => {
    el.value = filter[key];
    el.addEventListener("input", () => {
      filter[key] = el.value;
      if (!server) return draw();
      cursors = [""];
      clearTimeout(typing);
      typing = setTimeout(reload, delay);
    });
    return el;
  };
  replace(
    main,
    h("h1", {}, "Lablets"),
    h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter lablets", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "f-search" }, "Id", bind(h("input", { id: "f-search", type: "search", placeholder: "a lablet's id", autocomplete: "off" }), "search", { delay: 300 })),
      h("label", { for: "f-state" }, "State", bind(h("select", { id: "f-state" }, h("option", { value: "" }, "any"), INSTANCE_STATES.map((s) => h("option", { value: s }, s))), "state")),
      h("label", { for: "f-worker" }, "Worker", bind(workerSelect, "worker")),
      h("label", { for: "f-owner" }, "Owner", bind(h("input", { id: "f-owner", type: "text", placeholder: "an owner's id", autocomplete: "off" }), "owner", { delay: 300 })),
      h("label", { for: "f-slot" }, "Timeslot (this page)", bind(h("select", { id: "f-slot" }, h("option", { value: "" }, "any"), h("option", { value: "now" }, "open now"), h("option", { value: "upcoming" }, "upcoming"), h("option", { value: "past" }, "over")), "slot", { server: false })),
    ),
    count,
    results,
  );
  await Promise.all([loadWorkers(), load()]);

  // Each lablet a record names is read again, at most every 200 ms: one on the page is
  // updated (or removed when it is gone), a new one that matches goes on top of the first page.
  const due = new Set();
  let timer = 0;
  const flush = async () => {
    timer = 0;
    const ids = [...due];
    due.clear();
    const onFirstPage = cursors.length === 1 && !filter.search.trim();
    await Promise.all(
      ids.map(async (id) => {
        const at = rows.findIndex((i) => i.id === id);
        if (at < 0 && !onFirstPage) return;
        try {
          const fresh = await api.get(`/api/v1/instances/${encodeURIComponent(id)}`);
          const now = rows.findIndex((i) => i.id === id);
          if (now >= 0) rows[now] = fresh;
          else if (matchesServer(fresh)) rows = [fresh, ...rows];
        } catch (e) {
          if (e.status === 404) rows = rows.filter((i) => i.id !== id);
        }
      }),
    );
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
    clearTimeout(typing);
    clearInterval(tick);
  };
}
