#!/usr/bin/env bash
# Load figures for docs/benchmarks.md: starts `ccm serve` on a fresh SQLite file and drives
# it with wrk over loopback. Bounded: each wrk run lasts CCM_BENCH_SECONDS (default 20).
#   1. durable transitions per second, 64 keep-alive connections;
#   2. GET /api/v1/instances/{id} latency with CCM_BENCH_INSTANCES (default 100000) stored;
#   3. resident memory of ccm after that;
# then the Google Benchmark micro-benchmarks.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${CCM_BENCH_SECONDS:-20}
instances=${CCM_BENCH_INSTANCES:-100000}
connections=${CCM_BENCH_CONNECTIONS:-64}
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

CCM_STORE="sqlite:$work/ccm.db" CCM_LISTEN=127.0.0.1:0 CCM_LOG_LEVEL=warn CCM_HTTP_THREADS=${CCM_HTTP_THREADS:-64} \
  "$root/$build/src/main/ccm" serve --ready-file "$work/ready" &
pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.05; done
base="http://$(cat "$work/ready")"
post() { curl -sS --fail-with-body -X POST "$base$1" -H 'Content-Type: application/json' -d "$2"; }
id_of() { python3 -c "import json,sys; print(json.load(sys.stdin)['id'])"; }

export CCM_WORKER_ID=$(post /api/v1/workers '{"name":"bench","hostname":"bench","cml_url":"http://bench",
  "license_type":"ENTERPRISE","capacity":{"cpu_cores":100000,"memory_gb":100000,"storage_gb":0,"max_nodes":1000000},
  "state":"RUNNING"}' | id_of)
export CCM_DEFINITION_ID=$(post /api/v1/definitions '{"name":"bench","version":"1.0.0",
  "lab_yaml":"nodes:\n  - id: n0\n    label: r1\n","resource_requirements":{"cpu_cores":0.01,"memory_gb":0.01},
  "license_affinity":["ENTERPRISE"],"max_duration_minutes":120,"created_by":"bench"}' | id_of)

ids() {  # writes every instance id to $1
  python3 - "$base" > "$1" <<'PY'
import json, sys, urllib.request
base, after = sys.argv[1], ""
while True:
    page = json.load(urllib.request.urlopen(f"{base}/api/v1/instances?limit=500&after={after}"))
    for i in page["items"]: print(i["id"])
    if not page["next"]: break
    after = page["next"]
PY
}

create() {  # creates $1 more instances
  CCM_CREATE_EACH=$(( $1 / 2 )) wrk -t2 -c"$connections" -d600s -s "$root/bench/create.lua" "$base" > "$work/create.txt"
  grep -E "Requests/sec|Non-2xx" "$work/create.txt" || true
}

echo "== durable transitions: $connections connections, ${seconds}s"
create 6400
ids "$work/ids.txt"
CCM_IDS_FILE="$work/ids.txt" CCM_THREADS=2 wrk -t2 -c"$connections" -d"${seconds}s" --latency \
  -s "$root/bench/transitions.lua" "$base" | tee "$work/transitions.txt"

echo; echo "== GET latency with $instances instances stored"
create $(( instances - 6400 ))
ids "$work/ids.txt"
echo "stored: $(wc -l < "$work/ids.txt") instances"
CCM_IDS_FILE="$work/ids.txt" wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/get.lua" "$base" \
  | tee "$work/get.txt"
CCM_IDS_FILE="$work/ids.txt" wrk -t1 -c1 -d"${seconds}s" --latency -s "$root/bench/get.lua" "$base" \
  | tee "$work/get1.txt"
echo; echo "== memory"
grep -E "VmRSS|VmHWM" /proc/$pid/status
ls -la "$work"/ccm.db* | awk '{print $5, $9}'

echo; echo "== micro-benchmarks"
"$root/$build/bench/ccm_micro_bench" --benchmark_min_time=0.2
