#!/usr/bin/env python3
"""`make cluster`: a local cluster on loopback, as processes: three etcd members, two ccm
replicas sharing them, and the outside world beside them (oidc-sim issues the tokens,
cml-sim is a CML worker and the cloud provider, assessment-sim is the Assessment Platform and
the Grading Engine). Prints every address, a command that gets an operator's token, and which
replica leads; stops everything on Ctrl-C (or SIGTERM) and removes its folder.

With --check it also proves the cluster works and exits: both replicas answer ready, exactly
one leads, a worker registered through one replica is read through the other, and after the
leader is stopped the other one leads. `make test` runs that.

Usage: cluster.py [--check] [--dir DIR] BUILD_DIR"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
children = []


def say(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"cluster: {what} not ready in {timeout:.0f} s")


def start(name, argv, log, env=None, ready=None):
    """Starts a child with its output in `log`; with `ready`, waits for that file (host:port)
    and returns the child's base URL."""
    out = open(log, "wb")
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.name, proc.log = name, log
    children.append(proc)
    if not ready:
        return None
    for _ in range(400):
        if os.path.exists(ready) and os.path.getsize(ready) > 0:
            return "http://" + open(ready).read().strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"cluster: {name} did not start; see {log}")


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def post(url, body, token):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def token(oidc, client, secret):
    data = f"grant_type=client_credentials&client_id={client}&client_secret={secret}".encode()
    with urllib.request.urlopen(urllib.request.Request(f"{oidc}/token", data=data, method="POST"), timeout=5) as r:
        return json.loads(r.read())["access_token"]


def leaders(replicas):
    out = []
    for name, base in replicas.items():
        status, body = get(base + "/health/ready")
        if status == 200 and body.get("leader"):
            out.append(name)
    return out


def start_etcd(work, members):
    peers = [f"http://127.0.0.1:{free_port()}" for _ in range(members)]
    clients = [f"http://127.0.0.1:{free_port()}" for _ in range(members)]
    initial = ",".join(f"etcd-{n}={peers[n]}" for n in range(members))
    for n in range(members):
        start(f"etcd-{n}", ["etcd", f"--name=etcd-{n}", f"--data-dir={work}/etcd-{n}",
                            f"--listen-client-urls={clients[n]}", f"--advertise-client-urls={clients[n]}",
                            f"--listen-peer-urls={peers[n]}", f"--initial-advertise-peer-urls={peers[n]}",
                            f"--initial-cluster={initial}", "--initial-cluster-state=new",
                            "--initial-cluster-token=ccm-cluster", "--max-txn-ops=1024",
                            "--auto-compaction-mode=periodic", "--auto-compaction-retention=1h"],
              f"{work}/etcd-{n}.log")
    for url in clients:
        wait_for(f"etcd at {url}", lambda url=url: get(url + "/health")[1].get("health") == "true")
    return clients


def on_term(*_):
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", default="build")
    parser.add_argument("--check", action="store_true", help="prove the cluster works, then stop it")
    parser.add_argument("--dir", help="keep state and logs here (default: a new temporary folder, removed at exit)")
    args = parser.parse_args()
    build = os.path.join(ROOT, args.build)
    sims = os.path.join(build, "sim")
    if shutil.which("etcd") is None:
        raise SystemExit("cluster: etcd is not installed (Debian's etcd-server; `make deps` installs it)")
    work = args.dir or tempfile.mkdtemp(prefix="ccm-cluster-")
    os.makedirs(work, exist_ok=True)
    f = lambda name: os.path.join(work, name)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        etcd = start_etcd(work, 3)
        oidc = start("oidc-sim", [f"{sims}/oidc-sim", "--ready-file", f("oidc.ready"), "--issuer", "http://oidc-sim",
                                  "--client-id", "ccm", "--client-secret", "ccm-secret",
                                  "--client", "operator:operator-secret:ccm.admin",
                                  "--client", "assessment-platform:ap-secret:ccm.events.publish"],
                     f("oidc-sim.log"), ready=f("oidc.ready"))
        cml = start("cml-sim", [f"{sims}/cml-sim", "--ready-file", f("cml.ready"), "--cml-schema",
                                f"{DATA}/cml-2.9.openapi.json", "--password", "cml-secret"],
                    f("cml-sim.log"), ready=f("cml.ready"))
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        platform = start("assessment-sim", [f"{sims}/assessment-sim", "--ready-file", f("platform.ready"),
                                            "--events-url", f"http://{addresses[0]}/api/v1/events",
                                            "--grading-schema", f"{DATA}/grading-engine.openapi.json",
                                            "--require-bearer", "--token-url", f"{oidc}/token",
                                            "--client-id", "assessment-platform", "--client-secret", "ap-secret"],
                         f("assessment-sim.log"), ready=f("platform.ready"))
        replicas = {}
        for n, address in enumerate(addresses, start=1):
            replicas[f"ccm-{n}"] = start(f"ccm-{n}", [f"{build}/src/main/ccm", "serve", "--ready-file",
                                                      f(f"ccm-{n}.ready")], f(f"ccm-{n}.log"), env={
                "CCM_LISTEN": address, "CCM_STORE": "etcd:" + ",".join(etcd), "CCM_LEADER_TTL_SECONDS": "5",
                # No load balancer to tell: stop at once on Ctrl-C (docs/operations.md, draining).
                "CCM_DRAIN_GRACE_MS": "0",
                "CCM_PUBLIC_URL": f"http://{address}", "CCM_LOG_LEVEL": "info",
                "ASSESSMENT_PLATFORM_URL": platform, "GRADING_ENGINE_URL": platform,
                "OIDC_TOKEN_URL": f"{oidc}/token", "OIDC_CLIENT_ID": "ccm", "OIDC_CLIENT_SECRET": "ccm-secret",
                "CML_USERNAME": "admin", "CML_PASSWORD": "cml-secret", "CLOUD_PROVIDER_URL": cml,
                "AUTH_JWKS_URL": f"{oidc}/jwks", "AUTH_ISSUER": "http://oidc-sim"}, ready=f(f"ccm-{n}.ready"))
        wait_for("a leader", lambda: len(leaders(replicas)) == 1)
        say("ccm cluster on loopback (state and logs in " + work + "):")
        for name, base in replicas.items():
            say(f"  {name:15} {base}")
        say(f"  {'etcd':15} {', '.join(etcd)}")
        say(f"  {'oidc-sim':15} {oidc}  (issuer http://oidc-sim; clients operator/operator-secret, "
            "assessment-platform/ap-secret)")
        say(f"  {'cml-sim':15} {cml}  (CML worker and cloud provider; admin/cml-secret)")
        say(f"  {'assessment-sim':15} {platform}  (Assessment Platform and Grading Engine)")
        say(f"leader: {leaders(replicas)[0]}")
        say("an operator's token:")
        say(f"  TOKEN=$(curl -s -d grant_type=client_credentials -d client_id=operator "
            f"-d client_secret=operator-secret {oidc}/token | python3 -c 'import json,sys; "
            "print(json.load(sys.stdin)[\"access_token\"])')")
        say(f"  curl -H \"Authorization: Bearer $TOKEN\" {replicas['ccm-1']}/api/v1/workers")
        if args.check:
            check(replicas, oidc, cml)
            return
        say("Ctrl-C stops them all.")
        while True:
            for proc in children:
                if proc.poll() is not None:
                    raise SystemExit(f"cluster: {proc.name} exited with {proc.returncode}; see {proc.log}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("\nstopping")
    finally:
        for proc in reversed(children):
            stop(proc)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def check(replicas, oidc, cml):
    """What --check proves; exits non-zero with the reason on the first failure."""
    operator = token(oidc, "operator", "operator-secret")
    one, two = replicas["ccm-1"], replicas["ccm-2"]
    worker = post(two + "/api/v1/workers", {
        "name": "w1", "hostname": "w1", "cml_url": cml, "license_type": "ENTERPRISE",
        "capacity": {"cpu_cores": 16, "memory_gb": 64, "max_nodes": 40}, "state": "RUNNING"}, operator)
    status, read = get(f"{one}/api/v1/workers/{worker['id']}", operator)
    if status != 200 or read["id"] != worker["id"]:
        raise SystemExit(f"cluster: a worker made through ccm-2 is not read through ccm-1: HTTP {status}")
    say(f"check: worker {worker['id']} made through ccm-2, read through ccm-1")
    leader = leaders(replicas)[0]
    other = next(name for name in replicas if name != leader)
    proc = next(p for p in children if p.name == leader)
    stop(proc)
    del replicas[leader]
    wait_for(f"{other} to lead", lambda: leaders(replicas) == [other], timeout=20)
    say(f"check: {leader} stopped; {other} leads")
    say("check: ok")


if __name__ == "__main__":
    main()
