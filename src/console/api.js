// Calls to ccm's API with the signed-in user's bearer token. A refused call throws an
// ApiError carrying the problem+json (RFC 9457) the API answered, for the page to show.
import * as auth from "./auth.js";

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem.detail || problem.title || `HTTP ${status}`;
    super(problem.field ? `${detail} (${problem.field})` : detail);
    this.status = status;
    this.problem = problem;
  }
}

export function headers(extra = {}) {
  const token = auth.accessToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

export async function request(method, path, body, { text = false } = {}) {
  const send = () =>
    fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  const used = auth.accessToken();
  let response = await send();
  // An access token that expired while the tab slept: one refresh (shared with the other
  // calls that met it, and skipped when one of them already renewed the token), then once
  // more. Only a refused refresh signs the user out.
  if (response.status === 401 && auth.authRequired()) {
    let renewed = auth.accessToken() !== used;
    if (!renewed) {
      try {
        await auth.refresh();
        renewed = true;
      } catch {
        auth.signOut();
      }
    }
    if (renewed) response = await send();
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ title: response.statusText }));
    throw new ApiError(response.status, problem);
  }
  if (text) return response.text();
  return response.status === 204 ? null : response.json();
}

export const get = (path, options) => request("GET", path, undefined, options);
export const post = (path, body = {}) => request("POST", path, body);
export const del = (path) => request("DELETE", path);

// Every item of a paged list (`items`, `next`), up to `max` of them (a page more at most).
export const MAX_ITEMS = 5000;
export async function all(path, max = MAX_ITEMS) {
  const items = [];
  let after = "";
  const joiner = path.includes("?") ? "&" : "?";
  for (;;) {
    const page = await get(`${path}${joiner}limit=500${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    items.push(...page.items);
    if (!page.next || items.length >= max) return items;
    after = page.next;
  }
}

// The samples of a Prometheus text exposition: [{name, labels, value}].
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}
