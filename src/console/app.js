// The console: signs in, keeps the live stream open and shows the view the address names
// (#/overview, #/lablets, #/lablets/ID, #/workers, #/events).
import * as auth from "./auth.js";
import { Watch } from "./watch.js";
import { h, replace } from "./dom.js";
import * as overview from "./overview.js";
import * as lablets from "./lablets.js";
import * as lablet from "./lablet.js";
import * as workers from "./workers.js";
import * as events from "./events.js";

const main = document.getElementById("main");
const listeners = new Set();
// The latest records of the stream, newest last, for the events view.
const recent = [];
const RECENT_MAX = 200;
let cleanup = null;
let watch = null;

// What every view gets.
const ctx = {
  user: null,
  recent,
  // Calls fn(record) for every record of the stream until the view changes.
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  notify,
  // Runs an action, says what happened, and reports a refusal (problem+json) to the user.
  async act(what, fn) {
    try {
      const result = await fn();
      notify(`${what}: done.`, "ok");
      return result;
    } catch (e) {
      notify(`${what}: ${e.message}`, "error");
      return undefined;
    }
  },
};

function notify(text, kind = "error") {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.className = `notice ${kind}`;
  el.hidden = !text;
}

function onRecord(record) {
  recent.push(record);
  if (recent.length > RECENT_MAX) recent.shift();
  for (const fn of listeners) fn(record);
}

function setLive(text, live) {
  const el = document.getElementById("live");
  el.textContent = text;
  el.classList.toggle("on", live);
}

function parseRoute() {
  const [path, query] = (location.hash || "#/overview").slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, query: new URLSearchParams(query || "") };
}

let shown = 0;  // how many times a view was shown: the turn of the current one

async function show() {
  if (cleanup) cleanup();
  cleanup = null;
  listeners.clear();
  notify("");
  const turn = ++shown;
  const { parts, query } = parseRoute();
  const name = parts[0] || "overview";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.route === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view =
    name === "lablets" && parts[1] ? lablet : { overview, lablets, workers, events }[name] || overview;
  // Each view draws into a container of its own: a view whose answer comes back after the
  // user has moved on (a read in flight, a live refresh) draws into a container that is no
  // longer on the page, never over the view that replaced it.
  const container = h("div", { class: "view" });
  replace(main, container);
  replace(container, h("p", { class: "muted" }, "Loading…"));
  try {
    const done = (await view.render(container, ctx, parts[1] ? decodeURIComponent(parts[1]) : null, query)) || null;
    if (turn === shown) cleanup = done;
    else if (done) done();  // the user moved on while it loaded
  } catch (e) {
    if (turn === shown) replace(container, h("h1", {}, "Something went wrong"), h("p", {}, e.message));
  }
}

function showSignIn(message) {
  document.getElementById("nav").hidden = true;
  replace(
    main,
    h(
      "section",
      { class: "signin", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, "Sign in to ccm"),
      h("p", {}, "The console signs you in at your organisation's identity provider."),
      message ? h("p", { class: "error", role: "alert" }, message) : null,
      h("button", { type: "button", id: "signin", onclick: () => auth.signIn() }, "Sign in"),
    ),
  );
}

function showUser() {
  ctx.user = auth.user();
  const out = document.getElementById("signout");
  const user = document.getElementById("user");
  if (!ctx.user) {
    user.textContent = "";
    out.hidden = true;
    return;
  }
  const role = ctx.user.admin ? "admin" : ctx.user.operator ? "operator" : ctx.user.viewer ? "viewer" : "no role";
  user.textContent = `${ctx.user.name} (${role})`;
  out.hidden = !auth.authRequired();
}

function changed() {
  showUser();
  if (!auth.signedIn() && watch) {
    watch.stop();
    setLive("signed out", false);
    showSignIn("You are signed out.");
  }
}

async function boot() {
  document.getElementById("skip").addEventListener("click", () => main.focus());
  document.getElementById("signout").addEventListener("click", () => auth.signOut());
  let message = null;
  try {
    await auth.start(changed);
  } catch (e) {
    message = e.message;
  }
  showUser();
  if (!auth.signedIn()) return showSignIn(message);
  document.getElementById("nav").hidden = false;
  watch = new Watch(onRecord, setLive);
  watch.start();
  window.addEventListener("hashchange", () => {
    show();
    main.focus();
  });
  await show();
}

boot();
