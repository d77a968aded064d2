#!/usr/bin/env bash
# The main job: `ccm serve` on a free loopback port (SQLite in a temporary folder) with the
# outside world beside it (sim/demo_peer.py: a CloudEvents sink that prints what arrives, and
# an Assessment Platform that accepts collections). Registers a worker and the sample
# definition, creates instances with assessment ids, and drives each through its lifecycle:
# scheduled and started through the internal API (the CML reconcilers are still to come),
# collected through the API, graded by CloudEvents sent the way the platform sends them,
# then stopped, archived and terminated. Prints every CloudEvent as the sink receives it,
# then a summary.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/ccm-lib.sh"

python3 "$root/sim/demo_peer.py" "$work/peer_port" &
peer_pid=$!
trap 'kill $peer_pid 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 100); do [ -s "$work/peer_port" ] && break; sleep 0.05; done
peer="http://127.0.0.1:$(cat "$work/peer_port")"

start_ccm CLOUDEVENTS_SINK_URL="$peer/events" ASSESSMENT_PLATFORM_URL="$peer"
echo "ccm is serving on $base; events go to $peer/events"

call() {  # METHOD PATH [JSON]: prints the answer, fails on an HTTP error
  local method=$1 path=$2 body=${3:-}
  if [ -n "$body" ]; then
    curl -sS --fail-with-body -X "$method" "$base$path" -H 'Content-Type: application/json' -d "$body"
  else
    curl -sS --fail-with-body -X "$method" "$base$path"
  fi
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
send_event() {  # TYPE ID DATA: a CloudEvent from the Assessment Platform, structured mode
  curl -sS --fail-with-body -X POST "$base/api/v1/events" -H 'Content-Type: application/cloudevents+json' \
    -d "{\"specversion\":\"1.0\",\"id\":\"$2\",\"source\":\"/assessment-platform\",\"type\":\"$1\",
         \"time\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"datacontenttype\":\"application/json\",\"data\":$3}" |
    field "['outcome']"
}
pause() { sleep 0.3; }  # lets the dispatcher's lines come out in step

echo; echo "== register a worker and the sample definition"
worker=$(call POST /api/v1/workers '{"name":"cml-worker-1","hostname":"cml-worker-1.lab","public_ip":"203.0.113.10",
  "cml_url":"https://cml-worker-1.lab","license_type":"ENTERPRISE",
  "capacity":{"cpu_cores":32,"memory_gb":128,"storage_gb":500,"max_nodes":40},"state":"RUNNING"}' | field "['id']")
definition=$(python3 - "$root/tests/data/sample_lab_template.yaml" <<'PY'
import json, sys
print(json.dumps({"name": "devasc-200-901-lab-2-5-1", "version": "1.0.0",
                  "lab_yaml": open(sys.argv[1]).read(),
                  "resource_requirements": {"cpu_cores": 4, "memory_gb": 8, "storage_gb": 20},
                  "license_affinity": ["ENTERPRISE", "PERSONAL"], "max_duration_minutes": 120,
                  "created_by": "demo"}))
PY
)
definition=$(call POST /api/v1/definitions "$definition")
echo "$definition" | python3 -c "import json,sys; d=json.load(sys.stdin); print('definition', d['name'], d['version'], 'nodes', d['node_count'], 'ports', [p['name'] for p in d['port_template']])"
definition_id=$(echo "$definition" | field "['id']")
pause

start=$(date -u -d '+5 min' +%Y-%m-%dT%H:%M:%SZ)
end=$(date -u -d '+65 min' +%Y-%m-%dT%H:%M:%SZ)
t0=$(date +%s.%N)
for n in 1 2 3; do
  echo; echo "== candidate-$n"
  id=$(call POST /api/v1/instances "{\"definition_id\":\"$definition_id\",\"owner_id\":\"candidate-$n\",
    \"assessment\":{\"session_id\":\"session-$n\",\"part_id\":\"part-1\"},
    \"timeslot_start\":\"$start\",\"timeslot_end\":\"$end\"}" | field "['id']")
  ports=$(call POST "/api/internal/instances/$id/schedule" "{\"worker_id\":\"$worker\"}" | field "['allocated_ports']")
  echo "instance $id scheduled, ports $ports"
  for to in INSTANTIATING RUNNING; do call POST "/api/internal/instances/$id/transition" "{\"to\":\"$to\"}" > /dev/null; done
  pause
  echo "collect:"; call POST "/api/v1/instances/$id/collect" '{"triggered_by":"proctor","reason":"manual"}' | field "['state']"
  pause
  echo "platform -> ccm: collection.completed: $(send_event assessment.collection.completed "col-done-$n" \
    "{\"instance_id\":\"$id\",\"collection_id\":\"col-$n\",\"artifacts_uri\":\"s3://artifacts/col-$n\"}")"
  echo "platform -> ccm: grading.completed: $(send_event assessment.grading.completed "graded-$n" \
    "{\"instance_id\":\"$id\",\"score\":{\"total\":$((6 + n)),\"max\":10,\"breakdown\":[{\"criterion\":\"api-calls\",\"points\":$((6 + n)),\"max\":10}]},\"passed\":true}")"
  echo "platform -> ccm: the same grading.completed again: $(send_event assessment.grading.completed "graded-$n" '{}')"
  pause
  for to in STOPPED ARCHIVED; do call POST "/api/internal/instances/$id/transition" "{\"to\":\"$to\",\"reason\":\"lab stopped\"}" > /dev/null; done
  call DELETE "/api/v1/instances/$id" > /dev/null
  call POST "/api/internal/instances/$id/transition" '{"to":"TERMINATED","reason":"lab wiped and deleted"}' |
    python3 -c "import json,sys; d=json.load(sys.stdin); print('final:', d['state'], 'score', d['grading_score']['total'], '/', d['grading_score']['max'])"
  pause
done
t1=$(date +%s.%N)

for _ in $(seq 1 50); do
  depth=$(curl -s "$base/metrics" | awk '/^ccm_outbox_depth /{print $2}')
  [ "$depth" = 0 ] && break
  sleep 0.1
done
echo; echo "== summary"
python3 - "$base" "$t0" "$t1" <<'PY'
import collections, json, sys, urllib.request
base, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
items, after = [], ""
while True:
    page = json.load(urllib.request.urlopen(f"{base}/api/v1/events?limit=500&after={after}"))
    items += page["items"]
    if not page["next"]: break
    after = page["next"]
by_type = collections.Counter(i["type"] for i in items)
for t, n in sorted(by_type.items()): print(f"  {n:3}  {t}")
states = collections.Counter(i["state"] for i in items)
print(f"{len(items)} events published: {dict(states)}; 3 lifecycles in {t1 - t0:.1f} s")
metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
print("\n".join(l for l in metrics.splitlines() if l.startswith(("ccm_events_received_total", "ccm_events_delivered_total", "ccm_outbox_depth"))))
PY
echo; echo "demo done"
