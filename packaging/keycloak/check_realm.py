#!/usr/bin/env python3
"""Checks the Keycloak realm export against what ccm reads from tokens: client `ccm` defines
exactly the roles ccm knows (src/auth/jwt.cc), every client that calls ccm puts `ccm` in
`aud`, the Assessment Platform's service account holds `ccm.events.publish` alone, each
group's roles exist, and no real secret is shipped. Exit 1 naming the first thing wrong.

Usage: check_realm.py REALM_JSON JWT_CC"""
import json
import re
import sys


def fail(why):
    sys.exit(f"check_realm: {why}")


realm = json.load(open(sys.argv[1]))
known = set(re.findall(r'return "(ccm\.[a-z.]+)";', open(sys.argv[2]).read()))
if not known:
    fail(f"no role names found in {sys.argv[2]}")
defined = {r["name"] for r in realm["roles"]["client"]["ccm"]}
if defined != known:
    fail(f"client ccm defines {sorted(defined)}, ccm knows {sorted(known)}")
clients = {c["clientId"]: c for c in realm["clients"]}
if "ccm" not in clients:
    fail("no client ccm")
for cid, c in clients.items():
    if c.get("secret") not in (None, "**change-me**"):
        fail(f"client {cid} ships a secret; use the placeholder **change-me**")
    if cid == "ccm":
        continue
    audiences = [m["config"].get("included.client.audience") for m in c.get("protocolMappers", [])
                 if m["protocolMapper"] == "oidc-audience-mapper" and m["config"].get("access.token.claim") == "true"]
    if "ccm" not in audiences:
        fail(f"client {cid} calls ccm but its access tokens do not name ccm in aud")
    if c.get("publicClient") and c.get("attributes", {}).get("pkce.code.challenge.method") != "S256":
        fail(f"public client {cid} must require PKCE with S256")
for g in realm.get("groups", []):
    for role in g.get("clientRoles", {}).get("ccm", []):
        if role not in defined:
            fail(f"group {g['name']} names the unknown role {role}")
accounts = {u.get("serviceAccountClientId"): u for u in realm.get("users", []) if u.get("serviceAccountClientId")}
platform = accounts.get("assessment-platform")
if not platform or platform.get("clientRoles", {}).get("ccm") != ["ccm.events.publish"]:
    fail("the assessment-platform service account must hold ccm.events.publish and nothing else of ccm")
print(f"check_realm: ok ({len(clients)} clients, roles {', '.join(sorted(defined))})")
