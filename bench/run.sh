#!/usr/bin/env bash
# Load figures for docs/benchmarks.md: starts `ccm serve` on a fresh SQLite file and drives
# it with wrk over loopback. Bounded: each wrk run lasts CCM_BENCH_SECONDS (default 20).
# Usage: bench/run.sh BUILD_DIR [PART...], every part in this order by default:
#   transitions  durable transitions per second, steady state, 64 keep-alive connections;
#   pending      the same from PENDING instances (schedule, INSTANTIATING, RUNNING, ...);
#   events       accepted CloudEvents per second on POST /api/v1/events;
#   get          GET /api/v1/instances/{id} latency with CCM_BENCH_INSTANCES (default 100000)
#                stored, then the resident memory of ccm;
#   delivery     what publishing adds to a durable change, and delivery rates in each mode;
#   micro        the Google Benchmark micro-benchmarks.
set -euo pipefail
build=${1:-build}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
instances=${CCM_BENCH_INSTANCES:-100000}
source "$root/bench/lib.sh"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(transitions pending events get delivery micro)

part_transitions() {
  echo "== durable transitions, steady state: $connections connections, ${seconds}s"
  echo "   (6400 RUNNING instances on 64 workers, each cycling STOPPING, STOPPED, RUNNING)"
  seed 6400 64 --running
  start_ccm CCM_HTTP_THREADS="$threads"
  transitions "$base" 1
  stop_ccm
}

part_pending() {
  echo "== durable transitions from PENDING: $connections connections, ${seconds}s"
  echo "   (6400 PENDING instances; each scheduled on one of 64 workers, then INSTANTIATING, RUNNING, ...)"
  seed 6400 64
  start_ccm CCM_HTTP_THREADS="$threads"
  transitions "$base" 0
  stop_ccm
}

part_events() {
  echo "== accepted CloudEvents: structured, unique ids, each committed with its dedup key"
  echo "   (assessment.collection.completed for 6400 STOPPED instances: stale no-ops)"
  seed 6400 64 --stopped
  start_ccm CCM_HTTP_THREADS="$threads"
  events "$base"
  curl -s "$base/metrics" | grep 'ccm_events_received_total'
  stop_ccm
}

part_get() {
  echo "== GET /api/v1/instances/{id} with $instances instances stored"
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
}

part_delivery() {
  echo "== publishing overhead and delivery to a local sink"
  "$root/$build/bench/ccm_delivery_bench"
}

part_micro() {
  echo "== micro-benchmarks"
  "$root/$build/bench/ccm_micro_bench" --benchmark_min_time=0.2
}

for p in "${parts[@]}"; do
  case $p in
    transitions | pending | events | get | delivery | micro) ;;
    *) echo "unknown part '$p': transitions, pending, events, get, delivery or micro" >&2; exit 2 ;;
  esac
done
first=1
for p in "${parts[@]}"; do
  [ $first = 1 ] || echo
  first=0
  "part_$p"
done
