#!/usr/bin/env python3
"""The main job: `ccm serve` (SQLite in a temporary folder) with the outside world beside it,
all over loopback HTTP: oidc-sim (tokens), cml-sim (a CML worker, and a cloud provider that
launches more), assessment-sim (the Assessment Platform and the Grading Engine, which sends
every result twice) and a sink that prints each CloudEvent as it arrives.

Authentication is on: the demo, the platform and ccm itself get their tokens from oidc-sim.
Registers a worker with room for four lablets and the sample definition, then creates five
instances with assessment ids and one practice lablet without them. The reconcilers schedule
them, import and start their labs on CML (the fifth fits nowhere: the scaler launches a
second worker for it), and assign their pods on the Grading Engine. Each assessed one is
collected through the API; the platform's results arrive as CloudEvents; the practice lablet
is not assessed and stops at the end of its short timeslot; the stopper stops, archives,
wipes and deletes the labs. The idle launched worker is then drained, released and
terminated. Prints a summary, with how each lablet ended, and stops all it started.

The operator console is at the address it prints first, with three users to sign in as
(viewer, operator, admin; each one's password is its name). With KEEP=1 in the environment
(`make demo KEEP=1`) everything keeps running after the summary, so that one can look, until
Ctrl-C.

Usage: demo.py BUILD_DIR"""
import collections
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, sys.argv[1] if len(sys.argv) > 1 else "build")
DATA = os.path.join(ROOT, "tests", "data")
INSTANCES = 5
KEEP = os.environ.get("KEEP", "") not in ("", "0")
# The console's users at oidc-sim: name, password, role.
USERS = [("viewer", "viewer", "ccm.viewer"), ("operator", "operator", "ccm.operator"), ("admin", "admin", "ccm.admin")]
children = []


def say(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def start(name, argv, env=None, ready=None):
    """Starts a child; waits for its ready file (host:port) and returns its base URL."""
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stderr=subprocess.STDOUT)
    children.append(proc)
    for _ in range(200):
        if ready and os.path.exists(ready) and os.path.getsize(ready) > 0:
            return "http://" + open(ready).read().strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"demo: {name} did not start")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN = {}  # the demo operator's bearer token for ccm


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if TOKEN.get("ccm") and base == TOKEN["base"]:
        headers["Authorization"] = "Bearer " + TOKEN["ccm"]
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        raise SystemExit(f"demo: {method} {path}: HTTP {e.code}: {e.read().decode()[:300]}")


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"demo: timed out waiting for {what}")


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def main():
    work = tempfile.mkdtemp(prefix="ccm-demo-")
    f = lambda name: os.path.join(work, name)
    sims = os.path.join(BUILD, "sim")
    # The issuer: ccm's own client (outbound calls), the demo's operator and the platform's
    # service account, each with its roles.
    oidc = start("oidc-sim", [f"{sims}/oidc-sim", "--ready-file", f("oidc"), "--issuer", "http://oidc-sim",
                              "--client-id", "ccm", "--client-secret", "ccm-secret",
                              "--client", "demo:demo-secret:ccm.admin",
                              "--client", "assessment-platform:ap-secret:ccm.events.publish",
                              "--public-client", "ccm-operators"] +
                 [arg for name, password, role in USERS for arg in ("--user", f"{name}:{password}:{role}")],
                 ready=f("oidc"))
    cml = start("cml-sim", [f"{sims}/cml-sim", "--ready-file", f("cml"), "--cml-schema",
                            f"{DATA}/cml-2.9.openapi.json", "--password", "cml-secret", "--start-delay-ms", "400",
                            "--provision-delay-ms", "800"], ready=f("cml"))
    sink_port = f("sink")
    children.append(subprocess.Popen([sys.executable, f"{ROOT}/sim/demo_peer.py", sink_port]))
    wait_for("the sink", lambda: os.path.exists(sink_port) and os.path.getsize(sink_port) > 0)
    sink = f"http://127.0.0.1:{open(sink_port).read().strip()}/events"
    ccm_address = f"127.0.0.1:{free_port()}"
    platform = start("assessment-sim", [f"{sims}/assessment-sim", "--ready-file", f("platform"), "--events-url",
                                        f"http://{ccm_address}/api/v1/events", "--grading-schema",
                                        f"{DATA}/grading-engine.openapi.json", "--delay-ms", "150",
                                        "--send-twice", "--require-bearer", "--token-url", f"{oidc}/token",
                                        "--client-id", "assessment-platform", "--client-secret", "ap-secret"],
                     ready=f("platform"))
    base = start("ccm", [f"{BUILD}/src/main/ccm", "serve", "--ready-file", f("ccm")], env={
        "CCM_LISTEN": ccm_address, "CCM_STORE": f"sqlite:{work}/ccm.db", "CCM_LOG_LEVEL": "warn",
        "CCM_DRAIN_GRACE_MS": "0",
        "CLOUDEVENTS_SINK_URL": sink, "ASSESSMENT_PLATFORM_URL": platform, "GRADING_ENGINE_URL": platform,
        "OIDC_TOKEN_URL": f"{oidc}/token", "OIDC_CLIENT_ID": "ccm", "OIDC_CLIENT_SECRET": "ccm-secret",
        "CML_USERNAME": "admin", "CML_PASSWORD": "cml-secret", "CLOUD_PROVIDER_URL": cml,
        "ARCHIVE_RETENTION_MINUTES": "0", "SCALE_DOWN_GRACE_MINUTES": "0", "RECONCILE_INTERVAL_MS": "200",
        "INSTANTIATION_LEAD_SECONDS": "0", "AUTH_JWKS_URL": f"{oidc}/jwks", "AUTH_ISSUER": "http://oidc-sim",
        # The simulated issuer's name is not where it listens: the console is told where to sign in.
        "CCM_CONSOLE_AUTHORIZE_URL": f"{oidc}/authorize", "CCM_CONSOLE_TOKEN_URL": f"{oidc}/token"},
        ready=f("ccm"))
    TOKEN["base"] = base
    TOKEN["ccm"] = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"{oidc}/token", data=b"grant_type=client_credentials&client_id=demo&client_secret=demo-secret",
        method="POST")).read())["access_token"]
    say(f"ccm on {base} (bearer tokens required); CML and the cloud provider on {cml}; platform and grading "
        f"engine on {platform}; tokens from {oidc}; events to {sink}")
    say(f"the console: {base}/ui/ (sign in as " + ", ".join(f"{n} / {p}" for n, p, _ in USERS) + ")")
    unauthenticated = urllib.request.Request(base + "/api/v1/instances")
    try:
        urllib.request.urlopen(unauthenticated)
    except urllib.error.HTTPError as e:
        say(f"without a token: HTTP {e.code} {json.loads(e.read())['detail']}")

    say("\n== a worker with room for four lablets, and the sample definition")
    worker = call(base, "POST", "/api/v1/workers", {
        "name": "cml-worker-1", "hostname": "cml-worker-1.lab", "public_ip": "203.0.113.10", "cml_url": cml,
        "license_type": "ENTERPRISE", "capacity": {"cpu_cores": 16, "memory_gb": 64, "storage_gb": 200,
                                                    "max_nodes": 40}, "state": "RUNNING"})
    definition = call(base, "POST", "/api/v1/definitions", {
        "name": "devasc-200-901-lab-2-5-1", "version": "1.0.0",
        "lab_yaml": open(f"{DATA}/sample_lab_template.yaml").read(),
        "resource_requirements": {"cpu_cores": 4, "memory_gb": 8, "storage_gb": 20},
        "license_affinity": ["ENTERPRISE"], "max_duration_minutes": 120, "created_by": "demo"})
    say(f"worker {worker['id']}; definition {definition['name']} {definition['version']}: "
        f"{definition['node_count']} nodes, ports {[p['name'] for p in definition['port_template']]}")
    time.sleep(0.3)

    say(f"\n== {INSTANCES} candidates, their timeslots starting now")
    t0 = time.time()
    now = datetime.datetime.now(datetime.timezone.utc)
    ids = []
    for n in range(1, INSTANCES + 1):
        i = call(base, "POST", "/api/v1/instances", {
            "definition_id": definition["id"], "owner_id": f"candidate-{n}",
            "assessment": {"session_id": f"session-{n}", "part_id": "part-1"},
            "timeslot_start": rfc3339(now), "timeslot_end": rfc3339(now + datetime.timedelta(minutes=60))})
        ids.append(i["id"])
    practice = call(base, "POST", "/api/v1/instances", {
        "definition_id": definition["id"], "owner_id": "practice-1", "timeslot_start": rfc3339(now),
        "timeslot_end": rfc3339(now + datetime.timedelta(seconds=8))})["id"]
    say(f"and a practice lablet {practice[-8:]} without assessment ids, its timeslot 8 s long")
    get = lambda i: call(base, "GET", f"/api/v1/instances/{i}")
    # Each pod goes to the Grading Engine once its instance is RUNNING.
    running = wait_for("every assessed instance RUNNING with its pod",
                       lambda: all(get(i)["state"] == "RUNNING" and get(i)["pod_assigned"] for i in ids) and
                       [get(i) for i in ids])
    time.sleep(0.3)
    for i in running:
        say(f"instance {i['id'][-8:]} RUNNING on {i['worker_id'][-8:]}: CML lab {i['cml_lab_id']}, "
            f"ports {i['allocated_ports']}, pod assigned: {i['pod_assigned']}")

    say("\n== each collected through the API; results come back as CloudEvents (each sent twice)")
    for i in ids:
        call(base, "POST", f"/api/v1/instances/{i}/collect", {"triggered_by": "proctor", "reason": "manual"})
    final = wait_for("every instance TERMINATED",
                     lambda: all(get(i)["state"] == "TERMINATED" for i in ids + [practice]) and
                     [get(i) for i in ids + [practice]], 45)
    say("\n== the launched worker, idle now, is drained, released and terminated")
    wait_for("the launched worker TERMINATED", lambda: any(
        w["scaled_up"] and w["state"] == "TERMINATED" for w in call(base, "GET", "/api/v1/workers?limit=50")["items"]))
    t1 = time.time()
    wait_for("the outbox drained", lambda: "ccm_outbox_depth 0\n" in metrics(base))
    time.sleep(0.3)

    say("\n== summary")
    for i in final:
        s = i["grading_score"]
        score = f"score {s['total']:g}/{s['max']:g}" if s else "no score"
        say(f"instance {i['id'][-8:]} {i['owner_id']}: {' -> '.join(h['to'] for h in i['state_history'])}; "
            f"{score}")
    ended = collections.Counter(
        f"{i['ending']['outcome']} ({i['ending']['code']}): {i['ending']['message']}" if i.get("ending") else "not ended"
        for i in final)
    say("how each lablet ended (outcome, code, message):")
    for why, n in sorted(ended.items()):
        say(f"  {n:3}  {why}")
    phases = collections.defaultdict(list)
    for i in final:
        entered = {h["to"]: parse_time(h["at"]) for h in i["state_history"]}
        entered["PENDING"] = parse_time(i["created_at"])
        for name, a, b in [("scheduling", "PENDING", "SCHEDULED"), ("instantiation", "SCHEDULED", "RUNNING"),
                           ("collection and grading", "COLLECTING", "STOPPING"),
                           ("stop, archive, wipe, delete", "STOPPING", "TERMINATED")]:
            if a in entered and b in entered:
                phases[name].append((entered[b] - entered[a]).total_seconds())
    for name, values in phases.items():
        say(f"  {name:<28} mean {sum(values) / len(values):6.2f} s   max {max(values):6.2f} s")
    events = []
    after = ""
    while True:
        page = call(base, "GET", f"/api/v1/events?limit=500&after={after}")
        events += page["items"]
        if not page["next"]:
            break
        after = page["next"]
    for t, n in sorted(collections.Counter(e["type"] for e in events).items()):
        say(f"  {n:3}  {t}")
    states = collections.Counter(e["state"] for e in events)
    say(f"{len(events)} events published ({dict(states)}); {len(final)} lifecycles in {t1 - t0:.1f} s")
    labs = call(cml, "GET", "/sim/labs")
    say(f"CML: {len(labs)} labs imported, {sum(l['deleted'] for l in labs)} wiped and deleted")
    say("\n".join(l for l in metrics(base).splitlines()
                  if l.startswith(("ccm_events_received_total", "ccm_events_delivered_total", "ccm_outbox_depth",
                                   "ccm_pod_assignments_total", "ccm_instances_not_assessed_total",
                                   "ccm_lifecycle_timeouts_total", "ccm_workers_terminated_total"))))
    say("\ndemo done")
    if KEEP:
        say(f"\nKEEP=1: everything keeps running. The console: {base}/ui/ (sign in as " +
            ", ".join(f"{n} / {p}" for n, p, _ in USERS) + "). Ctrl-C stops it all.")
        try:
            while all(p.poll() is None for p in children):
                time.sleep(0.5)
            say("demo: a process of the demo ended; stopping the rest")
        except KeyboardInterrupt:
            say("")


def metrics(base):
    req = urllib.request.Request(base + "/metrics", headers={"Authorization": "Bearer " + TOKEN["ccm"]})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in reversed(children):
            p.send_signal(signal.SIGTERM)
        for p in children:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
