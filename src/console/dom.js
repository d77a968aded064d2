// A few helpers to build the page with the DOM: no HTML is assembled from strings, so no text
// from the API is ever read as markup.

// h("button", {type: "button", onclick}, "Collect"): an element with attributes (on* are
// listeners, `class` and `for` as in HTML, false/null left out) and children (strings,
// numbers, nodes, arrays of them; null left out).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// A table with a caption and column headers; rows are arrays of cells (a cell is text or a
// node). `empty` is said when there are no rows.
export function table(caption, columns, rows, { empty = "None.", rowAttrs = () => ({}) } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        rows.length
          ? rows.map((r, i) => h("tr", rowAttrs(i), r.map((cell) => h("td", {}, cell))))
          : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)),
      ),
    ),
  );
}

export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return h("time", { datetime: iso, title: iso }, d.toLocaleString(undefined, { hour12: false }));
}

// A timeslot: the day once when both ends fall on it.
export function slot(startIso, endIso) {
  const start = new Date(startIso);
  const end = new Date(endIso);
  if (start.toDateString() !== end.toDateString()) return [time(startIso), " – ", time(endIso)];
  const clock = end.toLocaleTimeString(undefined, { hour12: false });
  return [time(startIso), " – ", h("time", { datetime: endIso, title: endIso }, clock)];
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function short(id) {
  return id ? id.slice(-8) : "—";
}

export function badge(state) {
  return h("span", { class: `badge state-${String(state).toLowerCase()}` }, state);
}

// Asks before something that cannot be undone; resolves true when confirmed.
export function confirmDialog(question, action) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { "aria-labelledby": "confirm-q" },
      h("p", { id: "confirm-q" }, question),
      h(
        "form",
        { method: "dialog", class: "actions" },
        h("button", { type: "submit", value: "cancel", class: "secondary" }, "Cancel"),
        h("button", { type: "submit", value: "ok", class: "danger", id: "confirm-ok" }, action),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector(".secondary").focus();
  });
}
