// The console in a real browser: headless Chromium (puppeteer-core) signs in through
// oidc-sim's login form, watches a lablet created through the API appear and move live,
// collects it, replays a dead letter as an admin, and checks that a viewer sees no action
// buttons and that the API refuses them anyway. Screenshots go to OUT_DIR.
//
// Usage: node console.test.mjs BUILD_DIR DATA_DIR NODE_MODULES_DIR OUT_DIR
import { spawn } from "node:child_process";
import { mkdtempSync, existsSync, readFileSync, statSync, rmSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const [buildDir, dataDir, modules, outDir] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const puppeteer = require("puppeteer-core");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const work = mkdtempSync(path.join(os.tmpdir(), "ccm-console-"));
mkdirSync(outDir, { recursive: true });
const children = [];
let browser = null;
const started = Date.now();

function log(line) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${line}`);
}

function check(ok, what) {
  if (!ok) throw new Error(`FAILED: ${what}`);
  log(`ok: ${what}`);
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function start(name, argv, env = {}) {
  const ready = path.join(work, name + ".ready");
  const child = spawn(argv[0], [...argv.slice(1), "--ready-file", ready], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  children.push(child);
  for (let n = 0; n < 200; n++) {
    if (existsSync(ready) && statSync(ready).size > 0) return "http://" + readFileSync(ready, "utf8").trim();
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not start`);
}

async function call(base, method, p, token, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, headers: r.headers };
}

// Clicks the element `selector` names inside the page, in one step: views redraw live, and a
// redraw between finding a button and clicking it would leave a detached node.
async function press(page, selector) {
  await page.waitForSelector(selector);
  await page.$eval(selector, (el) => el.click());
}

async function main() {
  const sims = path.join(buildDir, "sim");
  const oidc = await start("oidc", [`${sims}/oidc-sim`, "--issuer", "http://oidc-sim", "--client-id", "ccm",
    "--client-secret", "ccm-secret", "--client", "tester:tester-secret:ccm.admin",
    "--client", "platform:platform-secret:ccm.events.publish",
    "--user", "viewer:viewer-pass:ccm.viewer", "--user", "operator:operator-pass:ccm.operator",
    "--user", "admin:admin-pass:ccm.admin", "--public-client", "ccm-operators",
    // Short-lived access tokens: the page refreshes them (30 s before they expire) while the test runs.
    "--token-ttl-seconds", "40"]);
  const cml = await start("cml", [`${sims}/cml-sim`, "--cml-schema", `${dataDir}/cml-2.9.openapi.json`,
    "--password", "cml-secret", "--start-delay-ms", "1500"]);
  const ccmAddress = `127.0.0.1:${await freePort()}`;
  const platform = await start("platform", [`${sims}/assessment-sim`, "--events-url",
    `http://${ccmAddress}/api/v1/events`, "--grading-schema", `${dataDir}/grading-engine.openapi.json`,
    "--delay-ms", "300", "--require-bearer", "--token-url", `${oidc}/token`, "--client-id", "platform",
    "--client-secret", "platform-secret"]);
  const closed = await freePort();  // nothing listens: every delivery fails and is dead-lettered
  const ccmEnv = {
    CCM_LISTEN: ccmAddress, CCM_STORE: `sqlite:${work}/ccm.db`, CCM_LOG_LEVEL: "warn", CCM_DRAIN_GRACE_MS: "0",
    CCM_ACCESS_LOG: "false", CLOUDEVENTS_SINK_URL: `http://127.0.0.1:${closed}/events`, CCM_OUTBOX_MAX_ATTEMPTS: "1",
    ASSESSMENT_PLATFORM_URL: platform, GRADING_ENGINE_URL: platform, OIDC_TOKEN_URL: `${oidc}/token`,
    OIDC_CLIENT_ID: "ccm", OIDC_CLIENT_SECRET: "ccm-secret", CML_USERNAME: "admin", CML_PASSWORD: "cml-secret",
    RECONCILE_INTERVAL_MS: "200", INSTANTIATION_LEAD_SECONDS: "0", AUTH_JWKS_URL: `${oidc}/jwks`,
    AUTH_ISSUER: "http://oidc-sim", CCM_CONSOLE_AUTHORIZE_URL: `${oidc}/authorize`, CCM_CONSOLE_TOKEN_URL: `${oidc}/token`,
  };
  const startCcm = () => start("ccm", [`${buildDir}/src/main/ccm`, "serve"], ccmEnv);
  const base = await startCcm();
  log(`ccm on ${base}, oidc-sim on ${oidc}`);
  const tokenAnswer = await fetch(`${oidc}/token`, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: "grant_type=client_credentials&client_id=tester&client_secret=tester-secret" });
  const admin = (await tokenAnswer.json()).access_token;

  // What ccm serves at /ui: public, with its security headers.
  const redirect = await fetch(`${base}/ui`, { redirect: "manual" });
  check(redirect.status === 301 && redirect.headers.get("location") === "/ui/", "/ui redirects to /ui/");
  const index = await fetch(`${base}/ui/`);
  const csp = index.headers.get("content-security-policy") || "";
  check(index.status === 200 && index.headers.get("content-type").startsWith("text/html"), "/ui/ is the page, without a token");
  check(csp.includes("default-src 'self'") && csp.includes(`connect-src 'self' ${oidc}`) &&
    csp.includes("frame-ancestors 'none'") && !csp.includes("unsafe-inline"), `a strict CSP: ${csp}`);
  const js = await fetch(`${base}/ui/app.js`);
  check(js.headers.get("content-type").startsWith("text/javascript") && js.headers.get("cache-control") === "no-cache",
    "modules are JavaScript, revalidated");
  const config = await (await fetch(`${base}/ui/config.json`)).json();
  check(config.auth === true && config.client_id === "ccm-operators" && config.authorize_url === `${oidc}/authorize`,
    "config.json names the sign-in");
  check((await fetch(`${base}/ui/nothing.js`)).status === 404, "an unknown file is 404");

  const worker = await call(base, "POST", "/api/v1/workers", admin, { name: "cml-worker-1", hostname: "cml-worker-1.lab",
    public_ip: "203.0.113.10", cml_url: cml, license_type: "ENTERPRISE",
    capacity: { cpu_cores: 16, memory_gb: 64, storage_gb: 200, max_nodes: 40 }, state: "RUNNING" });
  check(worker.status === 201, "a worker registered");
  const definition = await call(base, "POST", "/api/v1/definitions", admin, { name: "devasc-lab-2-5-1", version: "1.0.0",
    lab_yaml: readFileSync(`${dataDir}/sample_lab_template.yaml`, "utf8"),
    resource_requirements: { cpu_cores: 4, memory_gb: 8, storage_gb: 20 }, license_affinity: ["ENTERPRISE"],
    max_duration_minutes: 120, created_by: "console-test" });
  check(definition.status === 201, "a definition created");
  // A lablet whose timeslot starts in `lead` ms: it waits SCHEDULED until then.
  const createLablet = async (owner, lead = 0) => {
    const now = Date.now() + lead;
    const r = await call(base, "POST", "/api/v1/instances", admin, { definition_id: definition.body.id, owner_id: owner,
      assessment: { session_id: `session-${owner}`, part_id: "part-1" },
      timeslot_start: new Date(now).toISOString().replace(/\.\d+Z$/, "Z"),
      timeslot_end: new Date(now + 3600_000).toISOString().replace(/\.\d+Z$/, "Z") });
    if (r.status !== 201) throw new Error(`create: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.id;
  };
  const earlier = await createLablet("candidate-0");

  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"],
    defaultViewport: { width: 1280, height: 800 },
  });
  const origins = new Set();
  const requested = [];  // every path+query the pages asked ccm for
  async function signIn(name, password) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    // data: URLs (the empty favicon) are no request to anyone.
    page.on("request", (r) => {
      if (r.url().startsWith("data:")) return;
      const u = new URL(r.url());
      origins.add(u.origin);
      requested.push(u.pathname + u.search);
    });
    page.on("pageerror", (e) => log(`page error (${name}): ${e.message}`));
    await page.goto(`${base}/ui`, { waitUntil: "networkidle0" });
    await page.waitForSelector("#signin");
    await Promise.all([page.waitForNavigation(), page.click("#signin")]);
    check(page.url().startsWith(`${oidc}/authorize?`), `${name}: the sign-in is oidc-sim's login form`);
    await page.type("#username", name);
    await page.type("#password", password);
    await Promise.all([page.waitForNavigation(), page.click("#kc-login")]);
    await page.waitForSelector("#nav:not([hidden])");
    const who = await page.$eval("#user", (e) => e.textContent);
    check(who.startsWith(name) && !page.url().includes("code="), `${name} signed in (${who}), the code gone from the address`);
    return page;
  }

  // A wrong password is refused on the login form.
  {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.goto(`${base}/ui/`, { waitUntil: "networkidle0" });
    await page.waitForSelector("#signin");
    await Promise.all([page.waitForNavigation(), page.click("#signin")]);
    await page.type("#username", "operator");
    await page.type("#password", "wrong");
    await Promise.all([page.waitForNavigation(), page.click("#kc-login")]);
    check((await page.content()).includes("Invalid username or password."), "a wrong password is refused");
    await context.close();
  }

  // The operator: the table gets a new lablet and its moves without a reload.
  const operator = await signIn("operator", "operator-pass");
  const tokensOf = (page) => page.evaluate(() => JSON.parse(sessionStorage.getItem("ccm.console.tokens")));
  const firstTokens = await tokensOf(operator);
  await operator.goto(`${base}/ui/#/lablets`);
  await operator.waitForSelector(`tr[data-id="${earlier}"]`);
  await operator.evaluate(() => { window.__notReloaded = true; });
  const id = await createLablet("candidate-1", 5000);
  await operator.waitForSelector(`tr[data-id="${id}"]`, { timeout: 10000 });
  const seen = [await operator.$eval(`tr[data-id="${id}"]`, (r) => r.dataset.state)];
  const deadline = Date.now() + 25000;
  while (!seen.includes("RUNNING") && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const state = await operator.$eval(`tr[data-id="${id}"]`, (r) => r.dataset.state).catch(() => null);
    if (state && state !== seen[seen.length - 1]) seen.push(state);
  }
  check(seen.includes("RUNNING") && seen.length >= 2 && (await operator.evaluate(() => window.__notReloaded)),
    `the new lablet appeared and moved live in the table: ${seen.join(" -> ")}`);
  check((await operator.$eval("#live", (e) => e.textContent)) === "live", "the watch stream is live");
  await operator.screenshot({ path: path.join(outDir, "lablets-1280x800.png") });
  await operator.setViewport({ width: 820, height: 1180 });
  await operator.screenshot({ path: path.join(outDir, "lablets-820x1180.png") });
  await operator.setViewport({ width: 1280, height: 800 });

  // Its page: the timeline, then collect.
  await operator.click(`tr[data-id="${id}"] a`);
  await operator.waitForSelector("#collect:not([disabled])");
  const timeline = await operator.$$eval("section[aria-labelledby=s-timeline] tbody tr", (rows) => rows.map((r) => r.cells[0].textContent));
  check(timeline[0] === "PENDING" && timeline.includes("RUNNING"), `the timeline: ${timeline.join(", ")}`);
  await press(operator, "#assign-pod");
  await operator.waitForFunction(() => document.querySelector("#notice")?.textContent.includes("Assign the pod again: done"));
  check(true, "the pod is assigned again");
  await press(operator, "#collect");
  await operator.waitForFunction(() => document.querySelector("#notice")?.textContent.includes("Collect: done"));
  await operator.waitForFunction(
    () => [...document.querySelectorAll("section[aria-labelledby=s-timeline] tbody tr")].some((r) => r.cells[0].textContent === "COLLECTING"),
    { timeout: 10000 });
  check(true, "collected: COLLECTING is on the timeline, live");
  await operator.screenshot({ path: path.join(outDir, "lablet-1280x800.png"), fullPage: true });

  // ccm drains (SIGTERM: the stream ends with `shutdown`) and comes back; the page resumes
  // with Last-Event-ID and so gets a lablet created before it reconnected, which nothing else
  // will move (its timeslot is hours away).
  await operator.goto(`${base}/ui/#/lablets`);
  await operator.waitForSelector(`tr[data-id="${id}"]`);
  const ccm = children.find((c) => c.spawnargs.includes("serve"));
  ccm.kill("SIGTERM");
  await new Promise((resolve) => ccm.once("exit", resolve));
  children.splice(children.indexOf(ccm), 1);
  rmSync(path.join(work, "ccm.ready"));
  await operator.waitForFunction(() => document.querySelector("#live").textContent.startsWith("reconnecting"));
  await startCcm();
  const quiet = await createLablet("candidate-2", 3 * 3600_000);
  await operator.waitForSelector(`tr[data-id="${quiet}"]`, { timeout: 15000 });
  check((await operator.$eval("#live", (e) => e.textContent)) === "live",
    "after ccm restarted, the page resumed the stream and got what it missed");

  // Delete asks first; Cancel is where the focus starts.
  await operator.goto(`${base}/ui/#/lablets/${quiet}`);
  await operator.waitForSelector("#delete:not([disabled])");
  await press(operator, "#delete");
  await operator.waitForSelector("dialog[open]");
  check(await operator.evaluate(() => document.activeElement.textContent === "Cancel"), "the delete dialog starts on Cancel");
  await press(operator, "#confirm-ok");
  await operator.waitForFunction(() => document.querySelector("#notice")?.textContent.includes("Delete: done"));
  const deleted = await call(base, "GET", `/api/v1/instances/${quiet}`, admin);
  check(deleted.body.termination_requested === true || deleted.body.state === "TERMINATED", "a confirmed delete reaches the API");

  await operator.waitForFunction((first) => JSON.parse(sessionStorage.getItem("ccm.console.tokens")).refresh_token !== first,
    { timeout: 15000 }, firstTokens.refresh_token);
  const operatorToken = (await tokensOf(operator)).access_token;
  check(operatorToken !== firstTokens.access_token, "the page refreshed its tokens before they expired");
  const replayAsOperator = await call(base, "POST", "/api/v1/events/dead-letters/replay", operatorToken, {});
  check(replayAsOperator.status === 403, "an operator may not replay dead letters (403)");

  // The admin replays a dead letter.
  const adminPage = await signIn("admin", "admin-pass");
  await adminPage.goto(`${base}/ui/#/events`);
  await adminPage.waitForSelector("button.replay", { timeout: 15000 });
  const seq = await adminPage.$eval("button.replay", (b) => b.dataset.seq);
  await press(adminPage, "button.replay");
  await adminPage.waitForFunction((s) => document.querySelector("#notice")?.textContent.includes(`Replay event ${s}: done`), {}, seq);
  check(true, `the admin replayed dead letter ${seq}`);
  await adminPage.screenshot({ path: path.join(outDir, "events-1280x800.png") });
  await adminPage.goto(`${base}/ui/#/overview`);
  await adminPage.waitForSelector("#overview-cards .card");
  await adminPage.waitForFunction(() => document.querySelector("#c-dead")?.nextElementSibling?.textContent !== "—");
  const figures = (await call(base, "GET", "/api/v1/overview", admin)).body;
  const active = String(figures.total - figures.per_state.TERMINATED);
  await adminPage.waitForFunction((n) => document.querySelector("#c-lablets")?.nextElementSibling?.textContent === n, {}, active);
  check(requested.some((p) => p === "/api/v1/overview"),
    `the overview shows GET /api/v1/overview's figures (${active} active lablets)`);
  await adminPage.screenshot({ path: path.join(outDir, "overview-1280x800.png") });
  await adminPage.setViewport({ width: 820, height: 1180 });
  await adminPage.screenshot({ path: path.join(outDir, "overview-820x1180.png") });
  await adminPage.goto(`${base}/ui/#/workers`);
  await adminPage.waitForSelector("#workers-table tbody tr");
  check((await adminPage.$$("#workers-table button")).length === 1, "the admin may drain the running worker");
  await press(adminPage, "#workers-table button");
  await press(adminPage, "#confirm-ok");
  await adminPage.waitForFunction(() => document.querySelector("#notice")?.textContent.includes(": done"));
  await adminPage.waitForFunction(() => document.querySelector("#workers-table tbody")?.textContent.includes("DRAINING"));
  check(true, "the admin drained the worker");
  await adminPage.setViewport({ width: 1280, height: 800 });
  await adminPage.screenshot({ path: path.join(outDir, "workers-1280x800.png") });

  // The viewer sees, and acts on nothing; the API refuses the viewer's writes anyway.
  const viewer = await signIn("viewer", "viewer-pass");
  await viewer.goto(`${base}/ui/#/lablets/${id}`);
  await viewer.waitForSelector("section[aria-labelledby=s-timeline]");
  for (const view of [`#/lablets/${id}`, "#/events", "#/workers", "#/lablets", "#/overview"]) {
    await viewer.goto(`${base}/ui/${view}`);
    await viewer.waitForSelector("main h1");
    await viewer.waitForNetworkIdle({ idleTime: 300 });
    const buttons = await viewer.$$eval("main button", (bs) => bs.map((b) => b.textContent).filter((t) => !/page$/.test(t)));
    check(buttons.length === 0, `a viewer sees no action button on ${view}`);
  }
  // The keyboard: the first Tab reaches "Skip to content", Enter moves the focus to the main
  // region, the sections' links follow the skip button, and Enter on one opens it.
  await viewer.goto(`${base}/ui/#/overview`);
  await viewer.reload();
  await viewer.waitForSelector("#overview-cards .card");
  await viewer.keyboard.press("Tab");
  check(await viewer.evaluate(() => document.activeElement.id === "skip"), "the first Tab reaches Skip to content");
  await viewer.keyboard.press("Enter");
  check(await viewer.evaluate(() => document.activeElement.id === "main"), "Enter on it focuses the main region");
  await viewer.evaluate(() => document.getElementById("skip").focus());
  await viewer.keyboard.press("Tab");
  await viewer.keyboard.press("Tab");
  check(await viewer.evaluate(() => document.activeElement.getAttribute("href") === "#/lablets"), "Tab goes on to the sections");
  await viewer.keyboard.press("Enter");
  await viewer.waitForSelector("#lablet-table table");
  check(viewer.url().endsWith("#/lablets"), "Enter opens the lablets");
  const viewerToken = await viewer.evaluate(() => JSON.parse(sessionStorage.getItem("ccm.console.tokens")).access_token);
  const refused = await call(base, "POST", `/api/v1/instances/${id}/collect`, viewerToken, { reason: "manual" });
  check(refused.status === 403 && String(refused.headers.get("content-type")).includes("problem+json"),
    "the API refuses a viewer's collect (403 problem+json)");
  check((await call(base, "DELETE", `/api/v1/instances/${id}`, viewerToken)).status === 403, "and a viewer's delete");

  // The table pages on the server: 21 lablets of one owner are a page of 20 and a page of 1.
  for (let n = 0; n < 21; n++) await createLablet("pager", 3 * 3600_000);
  await operator.setViewport({ width: 1280, height: 800 });
  await operator.goto(`${base}/ui/#/lablets?owner=pager`);
  const rowsShown = () => operator.$$eval("#lablet-table tbody tr[data-id]", (rs) => rs.length);
  await operator.waitForFunction(() => document.querySelectorAll("#lablet-table tbody tr[data-id]").length === 20);
  check(await operator.$eval("#prev-page", (b) => b.disabled) && !(await operator.$eval("#next-page", (b) => b.disabled)),
    "page 1 of the owner's lablets: 20 rows, Next page enabled");
  await press(operator, "#next-page");
  await operator.waitForFunction(() => document.querySelectorAll("#lablet-table tbody tr[data-id]").length === 1);
  check(await operator.$eval("#next-page", (b) => b.disabled) && !(await operator.$eval("#prev-page", (b) => b.disabled)),
    "Next page: the 21st lablet, Previous page enabled");
  await press(operator, "#prev-page");
  await operator.waitForFunction(() => document.querySelectorAll("#lablet-table tbody tr[data-id]").length === 20);
  check((await rowsShown()) === 20, "Previous page goes back to the first 20");
  const pagerQueries = requested.filter((p) => p.startsWith("/api/v1/instances?") && p.includes("owner_id=pager"));
  check(pagerQueries.length >= 3 && pagerQueries.every((p) => p.includes("limit=20")),
    `the table asked the API for one page at a time (${pagerQueries.length} pages read)`);
  check(!requested.some((p) => p.startsWith("/api/v1/instances?") && p.includes("limit=500")),
    "no view read every lablet");

  // Sign-out forgets the tokens.
  await viewer.click("#signout");
  await viewer.waitForSelector("#signin");
  check((await viewer.evaluate(() => sessionStorage.getItem("ccm.console.tokens"))) === null, "sign-out forgets the tokens");

  const foreign = [...origins].filter((o) => o !== base && o !== oidc);
  check(foreign.length === 0, `no request left for another origin than ccm and the issuer (${[...origins].join(", ")})`);
  log(`screenshots in ${outDir}`);
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(e.stack || String(e));
  // What each open page showed when it failed, for whoever reads the CI log.
  if (browser) {
    const pages = (await Promise.all(browser.browserContexts().map((c) => c.pages().catch(() => [])))).flat();
    for (const [n, page] of pages.entries()) {
      const file = path.join(outDir, `failed-${n}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      log(`failed: page ${n} at ${page.url()}, screenshot ${file}`);
    }
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const c of children) c.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 300));
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
}
log(failed ? "console test FAILED" : "console test passed");
process.exit(failed ? 1 : 0);
