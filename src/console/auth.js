// Sign-in: OpenID Connect authorization code flow with PKCE (S256), as a public client.
// Tokens live in sessionStorage (this tab only, gone when it closes), never in a URL; the
// access token is refreshed before it expires; sign-out forgets them.
const TOKENS = "ccm.console.tokens";
const PENDING = "ccm.console.pending";
// Refresh this long before the access token expires.
const EARLY_MS = 30_000;

let config = null;
let tokens = null;
let refreshTimer = 0;
let onChange = () => {};

function base64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

// The claims of a JWT, unchecked: the page only reads who it is and which buttons to show;
// the API verifies every token it gets.
function claimsOf(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return {};
  }
}

function redirectUri() {
  return location.origin + location.pathname;
}

function save(answer) {
  const now = Date.now();
  tokens = {
    access_token: answer.access_token,
    refresh_token: answer.refresh_token || null,
    expires_at: now + (answer.expires_in || 300) * 1000,
  };
  sessionStorage.setItem(TOKENS, JSON.stringify(tokens));
  schedule();
  onChange();
}

function forget() {
  tokens = null;
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(TOKENS);
  onChange();
}

async function tokenCall(fields) {
  const response = await fetch(config.token_url, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: config.client_id, ...fields }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`sign-in refused: ${body.error_description || body.error || response.status}`);
  return body;
}

function schedule() {
  clearTimeout(refreshTimer);
  if (!tokens || !tokens.refresh_token) return;
  const wait = Math.max(1000, tokens.expires_at - Date.now() - EARLY_MS);
  refreshTimer = setTimeout(() => refresh().catch(() => forget()), wait);
}

// Trades the refresh token for a new pair (the old refresh token is spent). Errors: the
// issuer's, after which the user is signed out. Callers at the same moment (a view's
// parallel reads that all met an expired token, the timer) share one exchange: the issuer
// rotates refresh tokens, so a second exchange of the same one would be refused.
let refreshing = null;
export function refresh() {
  refreshing ??= exchangeRefreshToken().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function exchangeRefreshToken() {
  if (!tokens || !tokens.refresh_token) throw new Error("no refresh token");
  save(await tokenCall({ grant_type: "refresh_token", refresh_token: tokens.refresh_token }));
}

// Reads /ui/config.json and finishes a sign-in that just came back with ?code=. Returns the
// route the user was on before signing in, if any.
export async function start(changed) {
  onChange = changed;
  config = await (await fetch("config.json", { cache: "no-cache" })).json();
  if (!config.auth) return null;
  const saved = sessionStorage.getItem(TOKENS);
  if (saved) {
    tokens = JSON.parse(saved);
    if (tokens.expires_at - Date.now() < EARLY_MS) await refresh().catch(() => forget());
    else schedule();
  }
  const query = new URLSearchParams(location.search);
  if (!query.has("code") && !query.has("error")) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", location.pathname + (pending?.hash || "#/overview"));
  if (query.has("error")) throw new Error(`sign-in failed: ${query.get("error_description") || query.get("error")}`);
  if (!pending || pending.state !== query.get("state")) throw new Error("sign-in failed: the answer is not for this page");
  save(await tokenCall({
    grant_type: "authorization_code",
    code: query.get("code"),
    redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  }));
  return pending.hash;
}

// Goes to the issuer's sign-in page; it comes back to this page with a code.
export async function signIn() {
  const verifier = randomString();
  const state = randomString();
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, hash: location.hash || "#/overview" }));
  const url = new URL(config.authorize_url);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    scope: "openid",
    state,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: "S256",
  });
  location.assign(url.toString());
}

export function signOut() {
  forget();
}

export function authRequired() {
  return Boolean(config && config.auth);
}

export function signedIn() {
  return !authRequired() || Boolean(tokens);
}

export function accessToken() {
  return tokens ? tokens.access_token : null;
}

export function settings() {
  return config;
}

// Who is signed in and what they may do. Without authentication, everyone may do everything.
export function user() {
  if (!authRequired()) return { name: "authentication off", viewer: true, operator: true, admin: true };
  if (!tokens) return null;
  const claims = claimsOf(tokens.access_token);
  const roles = new Set(claims.resource_access?.[config.roles_client]?.roles || []);
  if (config.realm_roles) for (const r of claims.realm_access?.roles || []) roles.add(r);
  const admin = roles.has("ccm.admin");
  const operator = admin || roles.has("ccm.operator");
  return {
    name: claims.preferred_username || claims.sub || "unknown",
    admin,
    operator,
    viewer: operator || roles.has("ccm.viewer"),
  };
}
