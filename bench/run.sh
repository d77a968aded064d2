#!/usr/bin/env bash
# Load figures for docs/benchmarks.md: starts `ccm serve` on a fresh SQLite file and drives
# it with wrk over loopback. Bounded: each wrk run lasts CCM_BENCH_SECONDS (default 20).
#   1. durable transitions per second, 64 keep-alive connections;
#   2. accepted CloudEvents per second on POST /api/v1/events;
#   3. GET /api/v1/instances/{id} latency with CCM_BENCH_INSTANCES (default 100000) stored;
#   3. resident memory of ccm after that;
#   4. what publishing adds to a durable change, and delivery rates in each mode;
# then the Google Benchmark micro-benchmarks.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${CCM_BENCH_SECONDS:-20}
instances=${CCM_BENCH_INSTANCES:-100000}
connections=${CCM_BENCH_CONNECTIONS:-64}
threads=${CCM_HTTP_THREADS:-64}
source "$root/scripts/ccm-lib.sh"
seed() {  # seed N W [--running]: N instances and W workers in a fresh store
  rm -f "$work"/ccm.db*
  "$root/$build/bench/ccm_bench_seed" --db "$work/ccm.db" --instances "$1" --ids "$work/ids.txt" \
    --workers "$2" --worker-ids "$work/workers.txt" ${3:-}
}

transitions() {  # transitions RUNNING(0|1)
  CCM_RUNNING=$1 CCM_IDS_FILE="$work/ids.txt" CCM_WORKER_IDS_FILE="$work/workers.txt" CCM_THREADS=2 \
    wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/transitions.lua" "$base"
}
echo "== durable transitions, steady state: $connections connections, ${seconds}s"
echo "   (6400 RUNNING instances on 64 workers, each cycling STOPPING, STOPPED, RUNNING)"
seed 6400 64 --running
start_ccm CCM_HTTP_THREADS="$threads"
transitions 1
stop_ccm

echo; echo "== durable transitions from PENDING: $connections connections, ${seconds}s"
echo "   (6400 PENDING instances; each scheduled on one of 64 workers, then INSTANTIATING, RUNNING, ...)"
seed 6400 64
start_ccm CCM_HTTP_THREADS="$threads"
transitions 0
stop_ccm

echo; echo "== accepted CloudEvents: structured, unique ids, each committed with its dedup key"
echo "   (assessment.collection.completed for 6400 STOPPED instances: stale no-ops)"
seed 6400 64 --stopped
start_ccm CCM_HTTP_THREADS="$threads"
CCM_IDS_FILE="$work/ids.txt" wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/events.lua" "$base"
curl -s "$base/metrics" | grep 'ccm_events_received_total'
stop_ccm

echo; echo "== GET /api/v1/instances/{id} with $instances instances stored"
seed "$instances" 1
start_ccm CCM_HTTP_THREADS="$threads"
echo "ccm right after start: $(grep VmRSS /proc/$pid/status)"
CCM_IDS_FILE="$work/ids.txt" wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/get.lua" "$base"
echo "-- 8 connections:"
CCM_IDS_FILE="$work/ids.txt" wrk -t2 -c8 -d"${seconds}s" --latency -s "$root/bench/get.lua" "$base"
echo "-- one connection:"
CCM_IDS_FILE="$work/ids.txt" wrk -t1 -c1 -d"${seconds}s" --latency -s "$root/bench/get.lua" "$base"
echo "-- listing pages of 50:"
wrk -t2 -c"$connections" -d"${seconds}s" --latency "$base/api/v1/instances?limit=50"
echo; echo "== memory of ccm after the GET runs"
grep -E "VmRSS|VmHWM" /proc/$pid/status
du -h "$work"/ccm.db*
stop_ccm

echo; echo "== publishing overhead and delivery to a local sink"
"$root/$build/bench/ccm_delivery_bench"

echo; echo "== micro-benchmarks"
"$root/$build/bench/ccm_micro_bench" --benchmark_min_time=0.2
