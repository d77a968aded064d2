#!/usr/bin/env bash
# Interop: ccm delivers in MODE (structured, binary, batch) to a receiver on the official
# CloudEvents JavaScript SDK, which must parse every event ccm recorded, without an error.
# Usage: run.sh MODE CCM_BINARY NODE_MODULES_DIR
set -euo pipefail
mode=$1 ccm=$2 modules=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cp "$here/receiver.mjs" "$here/serve_cloudevents.mjs" "$modules/../"
node "$modules/../receiver.mjs" "$port" > "$work/received.jsonl" 2> "$work/receiver.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "receiver on" "$work/receiver.log" 2>/dev/null && break; sleep 0.05; done

CCM_STORE="sqlite:$work/ccm.db" CCM_LISTEN=127.0.0.1:0 CCM_LOG_LEVEL=warn CCM_RECONCILERS=false CCM_DRAIN_GRACE_MS=0 \
  CLOUDEVENTS_SINK_URL="http://127.0.0.1:$port/" CLOUDEVENTS_MODE="$mode" \
  "$ccm" serve --insecure-no-auth --ready-file "$work/ready" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.05; done
base="http://$(cat "$work/ready")"
post() { curl -sS --fail-with-body -X POST "$base$1" -H 'Content-Type: application/json' -d "$2"; }
id_of() { python3 -c "import json,sys; print(json.load(sys.stdin)['id'])"; }

worker=$(post /api/v1/workers '{"name":"w1","hostname":"w1","cml_url":"http://w1","license_type":"ENTERPRISE",
  "capacity":{"cpu_cores":64,"memory_gb":256,"max_nodes":100},"state":"RUNNING"}' | id_of)
def=$(python3 -c "import json,sys; print(json.dumps({'name':'lab','version':'1.0.0','lab_yaml':open(sys.argv[1]).read(),
  'resource_requirements':{'cpu_cores':1,'memory_gb':1},'license_affinity':['ENTERPRISE'],'max_duration_minutes':60,
  'created_by':'interop'}))" "$here/../data/sample_lab_template.yaml")
def=$(post /api/v1/definitions "$def" | id_of)
for n in 1 2 3 4 5; do
  inst=$(post /api/v1/instances "{\"definition_id\":\"$def\",\"owner_id\":\"c$n\",
    \"timeslot_start\":\"2026-12-01T09:00:00Z\",\"timeslot_end\":\"2026-12-01T10:00:00Z\"}" | id_of)
  post "/api/internal/instances/$inst/schedule" "{\"worker_id\":\"$worker\"}" > /dev/null
  for to in INSTANTIATING RUNNING; do post "/api/internal/instances/$inst/transition" "{\"to\":\"$to\"}" > /dev/null; done
done

expected=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from outbox').fetchone()[0])" "$work/ccm.db")
for _ in $(seq 1 200); do
  [ "$(grep -c '"id"' "$work/received.jsonl" || true)" -ge "$expected" ] && break
  sleep 0.05
done
python3 - "$work/ccm.db" "$work/received.jsonl" "$mode" <<'PY'
import json, sqlite3, sys
db, received, mode = sys.argv[1:]
want = {row[0]: row[1] for row in sqlite3.connect(db).execute("select id, type from outbox")}
got, errors = {}, []
for line in open(received):
    r = json.loads(line)
    if "error" in r: errors.append(r["error"])
    else: got[r["id"]] = r["type"]
if errors: sys.exit(f"{mode}: the SDK refused {len(errors)} request(s): {errors[:3]}")
missing = set(want) - set(got)
if missing: sys.exit(f"{mode}: {len(missing)} of {len(want)} events never reached the SDK")
wrong = [i for i in want if got[i] != want[i]]
if wrong: sys.exit(f"{mode}: types differ for {wrong[:3]}")
print(f"{mode}: the CloudEvents SDK parsed all {len(want)} events")
PY
