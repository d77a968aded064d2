#!/usr/bin/env bash
# Starts `ccm serve` on a free loopback port with a SQLite file in a temporary folder,
# registers a worker and the sample definition, creates an instance, and walks it through
# its lifecycle with the API, printing what ccm answers and the CloudEvents it recorded.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/ccm-lib.sh"

start_ccm
echo "ccm is serving on $base"

call() {  # METHOD PATH [JSON]: prints the answer, fails on an HTTP error
  local method=$1 path=$2 body=${3:-}
  if [ -n "$body" ]; then
    curl -sS --fail-with-body -X "$method" "$base$path" -H 'Content-Type: application/json' -d "$body"
  else
    curl -sS --fail-with-body -X "$method" "$base$path"
  fi
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
show() { python3 -c "import json,sys; d=json.load(sys.stdin); [d.pop(k, None) for k in ('lab_yaml',)]; print(json.dumps(d, indent=2))"; }

echo; echo "== register a worker"
worker=$(call POST /api/v1/workers '{"name":"cml-worker-1","hostname":"cml-worker-1.lab","public_ip":"203.0.113.10",
  "cml_url":"https://cml-worker-1.lab","license_type":"ENTERPRISE",
  "capacity":{"cpu_cores":32,"memory_gb":128,"storage_gb":500,"max_nodes":40},"state":"RUNNING"}')
echo "$worker" | show
worker_id=$(echo "$worker" | field "['id']")

echo; echo "== create the sample definition"
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
echo "$definition" | show
definition_id=$(echo "$definition" | field "['id']")

echo; echo "== create an instance"
start=$(date -u -d '+5 min' +%Y-%m-%dT%H:%M:%SZ)
end=$(date -u -d '+65 min' +%Y-%m-%dT%H:%M:%SZ)
instance=$(call POST /api/v1/instances "{\"definition_id\":\"$definition_id\",\"owner_id\":\"candidate-42\",
  \"assessment\":{\"session_id\":\"session-1\",\"part_id\":\"part-1\"},
  \"timeslot_start\":\"$start\",\"timeslot_end\":\"$end\"}")
instance_id=$(echo "$instance" | field "['id']")
echo "instance $instance_id is $(echo "$instance" | field "['state']")"

echo; echo "== schedule it on the worker (ports allocated atomically)"
call POST "/api/internal/instances/$instance_id/schedule" "{\"worker_id\":\"$worker_id\"}" | field "['allocated_ports']"
call GET "/api/v1/workers/$worker_id/capacity" | show

echo; echo "== walk it through its lifecycle"
for to in INSTANTIATING RUNNING COLLECTING GRADING STOPPING STOPPED ARCHIVED; do
  state=$(call POST "/api/internal/instances/$instance_id/transition" "{\"to\":\"$to\",\"reason\":\"demo\"}" | field "['state']")
  echo "-> $state"
done
echo "== an illegal move is refused:"
curl -sS -X POST "$base/api/internal/instances/$instance_id/transition" -H 'Content-Type: application/json' \
  -d '{"to":"RUNNING"}' | show
echo; echo "== terminate it: DELETE records the request; from ARCHIVED the last step is TERMINATED"
call DELETE "/api/v1/instances/$instance_id" | field "['termination_requested']"
call POST "/api/internal/instances/$instance_id/transition" '{"to":"TERMINATED","reason":"lab wiped and deleted"}' >/dev/null
call GET "/api/v1/instances/$instance_id" | python3 -c "
import json,sys
d=json.load(sys.stdin)
print('state:', d['state'])
for h in d['state_history']: print('  %s  %-13s -> %-13s %s' % (h['at'], h['from'], h['to'], h['reason']))"
call GET "/api/v1/workers/$worker_id/ports" | show

echo; echo "== CloudEvents recorded in the outbox (delivery is done by the dispatcher)"
python3 - "$work/ccm.db" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for (event,) in db.execute("SELECT event FROM outbox ORDER BY seq"):
    e = json.loads(event)
    print(json.dumps(e))
PY
echo; echo "demo done"
