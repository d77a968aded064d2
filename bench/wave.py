#!/usr/bin/env python3
"""An exam wave: N lablets booked into one timeslot on W workers, against cml-sim.

Starts cml-sim (each started lab reports STARTED after --start-delay-ms) and `ccm serve` on a
fresh SQLite file with its reconcilers, registers W RUNNING workers with room for N/W lablets
each and one definition, books N lablets whose timeslot starts --ahead-s seconds later, waits
until every one is RUNNING, and reports:
  - the time to book them all (and the booking rate);
  - the time from the reference point to the last RUNNING, where the reference point is the
    later of the last booking and the time instantiation may begin (timeslot start minus
    INSTANTIATION_LEAD_SECONDS): before it, ccm could not have had every lablet in hand, or
    was not allowed to start it. Times are ccm's own (created_at, started_at), so the
    client's clock and its polling delay do not count;
  - the ideal: one start on CML plus one reconcile interval (the sweep that sees it STARTED),
    and the ratio of the two.

Each worker's cml_url is the sim's under a path of its own (/w0, /w1, ...), so that ccm keeps
connections per worker as it would with real CML hosts; `--ccm` runs another ccm binary (a
build from before a change) against the same load.

  bench/wave.py [build] [--instances N] [--workers W] [--start-delay-ms D] ...
Defaults come from CCM_WAVE_INSTANCES (10000), CCM_WAVE_WORKERS (50), CCM_WAVE_START_DELAY_MS
(5000) and CCM_WAVE_INTERVAL_MS (1000); `--small` is 500 lablets on 5 workers, 1 s starts.
"""
import argparse
import concurrent.futures
import datetime
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def env_int(name, default):
    return int(os.environ.get(name, default))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build", nargs="?", default="build")
    p.add_argument("--instances", type=int, default=env_int("CCM_WAVE_INSTANCES", 10000))
    p.add_argument("--workers", type=int, default=env_int("CCM_WAVE_WORKERS", 50))
    p.add_argument("--start-delay-ms", type=int, default=env_int("CCM_WAVE_START_DELAY_MS", 5000))
    p.add_argument("--interval-ms", type=int, default=env_int("CCM_WAVE_INTERVAL_MS", 1000),
                   help="RECONCILE_INTERVAL_MS")
    p.add_argument("--ahead-s", type=float, default=5, help="the timeslot starts this long after booking begins")
    p.add_argument("--clients", type=int, default=8, help="connections booking at once")
    p.add_argument("--timeout-s", type=float, default=900)
    p.add_argument("--small", action="store_true", help="500 lablets, 5 workers, 1 s starts")
    p.add_argument("--ccm", default=os.environ.get("CCM_WAVE_CCM"), help="the ccm binary (default: the build's)")
    p.add_argument("--sim-threads", type=int, default=4, help="cml-sim's request threads")
    p.add_argument("--env", action="append", default=[], help="extra ccm setting NAME=value")
    a = p.parse_args()
    if a.small:
        a.instances, a.workers, a.start_delay_ms = 500, 5, 1000
    return a


children = []
WORK = []


def start(name, argv, ready, env=None):
    log = open(ready + ".log", "w")
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    children.append(proc)
    deadline = time.time() + 20
    while not (os.path.exists(ready) and os.path.getsize(ready) > 0):
        if proc.poll() is not None or time.time() > deadline:
            sys.exit(f"{name} did not start; see {ready}.log")
        time.sleep(0.05)
    return proc, "http://" + open(ready).read().strip()


class Client:
    """One keep-alive connection to ccm."""

    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        r = self.conn.getresponse()
        text = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {r.status} {text[:300]!r}")
        return json.loads(text) if text else None


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def list_all(base, query):
    client, items, after = Client(base), [], ""
    while True:
        page = client.call("GET", f"/api/v1/instances?{query}&limit=500" + (f"&after={after}" if after else ""))
        items += page["items"]
        after = page.get("next") or ""
        if not after:
            return items


def metric_lines(base, prefixes):
    c = Client(base)
    c.conn.request("GET", "/metrics")
    text = c.conn.getresponse().read().decode()
    return [line for line in text.splitlines() if line.startswith(prefixes)]


def main():
    a = parse_args()
    build = os.path.join(ROOT, a.build)
    work = tempfile.mkdtemp(prefix="ccm-wave-")
    WORK.append(work)
    f = lambda name: os.path.join(work, name)
    _, cml = start("cml-sim", [f"{build}/sim/cml-sim", "--ready-file", f("cml"), "--cml-schema",
                               f"{DATA}/cml-2.9.openapi.json", "--start-delay-ms", str(a.start_delay_ms), "--threads", str(a.sim_threads)],
                   ready=f("cml"))
    lead_s = 300
    settings = {"CCM_STORE": f"sqlite:{work}/ccm.db", "CCM_LISTEN": "127.0.0.1:0", "CCM_LOG_LEVEL": "warn",
                "CCM_DRAIN_GRACE_MS": "0", "CML_USERNAME": "admin", "CML_PASSWORD": "cml-secret",
                "RECONCILE_INTERVAL_MS": str(a.interval_ms), "INSTANTIATION_LEAD_SECONDS": str(lead_s)}
    for kv in a.env:
        k, _, v = kv.partition("=")
        settings[k] = v
    lead_s = int(settings["INSTANTIATION_LEAD_SECONDS"])
    ccm_proc, base = start("ccm", [a.ccm or f"{build}/src/main/ccm", "serve", "--insecure-no-auth", "--ready-file", f("ccm")],
                           ready=f("ccm"), env=settings)
    c = Client(base)
    per_worker = math.ceil(a.instances / a.workers)
    definition = c.call("POST", "/api/v1/definitions", {
        "name": "exam-wave", "version": "1.0.0", "lab_yaml": open(f"{DATA}/sample_lab_template.yaml").read(),
        "resource_requirements": {"cpu_cores": 1, "memory_gb": 1, "storage_gb": 1},
        "license_affinity": ["ENTERPRISE"], "max_duration_minutes": 120, "created_by": "wave"})
    nodes = definition["node_count"]
    for w in range(a.workers):
        c.call("POST", "/api/v1/workers", {
            "name": f"wave-worker-{w}", "hostname": f"wave-worker-{w}.lab", "cml_url": f"{cml}/w{w}",
            "license_type": "ENTERPRISE", "state": "RUNNING",
            "capacity": {"cpu_cores": per_worker, "memory_gb": per_worker, "storage_gb": per_worker,
                         "max_nodes": per_worker * nodes}})
    print(f"== exam wave: {a.instances} lablets, {a.workers} workers ({per_worker} each), CML start "
          f"{a.start_delay_ms} ms, reconcile interval {a.interval_ms} ms, {a.clients} booking connections")

    now = datetime.datetime.now(datetime.timezone.utc)
    slot_start = now + datetime.timedelta(seconds=a.ahead_s)
    slot_end = slot_start + datetime.timedelta(hours=2)
    lock = threading.Lock()
    next_n = [0]

    def book():
        client = Client(base)
        ids = []
        while True:
            with lock:
                n = next_n[0]
                next_n[0] += 1
            if n >= a.instances:
                return ids
            ids.append(client.call("POST", "/api/v1/instances", {
                "definition_id": definition["id"], "owner_id": f"candidate-{n}",
                "timeslot_start": rfc3339(slot_start), "timeslot_end": rfc3339(slot_end)})["id"])

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(a.clients) as pool:
        booked = [i for ids in pool.map(lambda _: book(), range(a.clients)) for i in ids]
    booking_s = time.time() - t0
    print(f"booked {len(booked)} in {booking_s:.2f} s ({len(booked) / booking_s:.0f}/s)")

    deadline = time.time() + a.timeout_s
    last_report = 0
    while True:
        running = len(list_all(base, "state=RUNNING"))
        if running >= a.instances:
            break
        if time.time() - last_report > 5:
            print(f"  {time.time() - t0:6.1f} s after booking began: {running} RUNNING")
            last_report = time.time()
        if time.time() > deadline or ccm_proc.poll() is not None:
            sys.exit(f"not all RUNNING: {running} of {a.instances}")
        time.sleep(0.5)

    everything = list_all(base, "state=RUNNING")
    last_booked = max(parse_time(i["created_at"]) for i in everything)
    first_running = min(parse_time(i["started_at"]) for i in everything)
    last_running = max(parse_time(i["started_at"]) for i in everything)
    may_start = slot_start - datetime.timedelta(seconds=lead_s)
    if may_start > last_booked:
        reference, why = may_start, "the timeslot start less the instantiation lead (later than the last booking)"
    else:
        reference, why = last_booked, "the last booking (instantiation may begin before the timeslot starts)"
    took = (last_running - reference).total_seconds()
    ideal = (a.start_delay_ms + a.interval_ms) / 1000
    print(f"reference point: {why}")
    print(f"first RUNNING {(first_running - reference).total_seconds():+.2f} s, last RUNNING {took:.2f} s after it")
    print(f"ideal (one start + one sweep): {ideal:.2f} s; ratio {took / ideal:.2f}x")
    for line in metric_lines(base, ("ccm_reconciler_steps_total", "ccm_reconciler_run_duration_seconds_sum", "ccm_reconciler_run_duration_seconds_count", "ccm_remote_request_duration_seconds_sum", "ccm_remote_request_duration_seconds_count", "ccm_http_request_duration_seconds_count")):
        print("  " + line)
    return 0


if __name__ == "__main__":
    try:
        code = main()
    finally:
        for p in children:
            p.send_signal(signal.SIGTERM)
        for p in children:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for w in WORK:
            shutil.rmtree(w, ignore_errors=True)
    sys.exit(code)
