#!/usr/bin/env bash
# Interop: events encoded by the official CloudEvents JavaScript SDK, in binary and in
# structured mode, are accepted by ccm and applied.
# Usage: run_sender.sh CCM_BINARY NODE_MODULES_DIR
set -euo pipefail
ccm=$1 modules=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cp "$here/sender.mjs" "$modules/../sender.mjs"

CCM_STORE="sqlite:$work/ccm.db" CCM_LISTEN=127.0.0.1:0 CCM_LOG_LEVEL=warn CCM_RECONCILERS=false CCM_DRAIN_GRACE_MS=0 "$ccm" serve --insecure-no-auth --ready-file "$work/ready" &
pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.05; done
base="http://$(cat "$work/ready")"
post() { curl -sS --fail-with-body -X POST "$base$1" -H 'Content-Type: application/json' -d "$2"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

worker=$(post /api/v1/workers '{"name":"w1","hostname":"w1","cml_url":"http://w1","license_type":"ENTERPRISE",
  "capacity":{"cpu_cores":8,"memory_gb":8,"max_nodes":8},"state":"RUNNING"}' | field "['id']")
def=$(post /api/v1/definitions '{"name":"lab","version":"1.0.0","lab_yaml":"nodes: [{id: n0, label: r1}]",
  "resource_requirements":{"cpu_cores":1,"memory_gb":1},"license_affinity":["ENTERPRISE"],"max_duration_minutes":60,
  "created_by":"interop"}' | field "['id']")
inst=$(post /api/v1/instances "{\"definition_id\":\"$def\",\"owner_id\":\"c\",\"timeslot_start\":\"2026-12-01T09:00:00Z\",
  \"timeslot_end\":\"2026-12-01T10:00:00Z\"}" | field "['id']")
post "/api/internal/instances/$inst/schedule" "{\"worker_id\":\"$worker\"}" > /dev/null
for to in INSTANTIATING RUNNING COLLECTING; do post "/api/internal/instances/$inst/transition" "{\"to\":\"$to\"}" > /dev/null; done

node "$modules/../sender.mjs" "$base/api/v1/events" binary assessment.collection.completed sdk-1 \
  "{\"instance_id\":\"$inst\",\"collection_id\":\"col-1\",\"artifacts_uri\":\"s3://bucket/col-1\"}"
node "$modules/../sender.mjs" "$base/api/v1/events" structured assessment.grading.completed sdk-2 \
  "{\"instance_id\":\"$inst\",\"score\":{\"total\":9,\"max\":10,\"breakdown\":[]},\"passed\":true}"
# Both applied: COLLECTING -> GRADING -> STOPPING with the score (the stopper may have taken
# the instance further since).
path=$(curl -sS "$base/api/v1/instances/$inst" |
  python3 -c "import json,sys; i=json.load(sys.stdin); print(' '.join(h['to'] for h in i['state_history'][3:6]), i['grading_score']['total'])")
[ "$path" = "COLLECTING GRADING STOPPING 9.0" ] || { echo "instance went $path, not COLLECTING GRADING STOPPING 9.0" >&2; exit 1; }
echo "ccm accepted and applied both SDK-encoded events (binary, structured): $path"
