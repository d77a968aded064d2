#!/usr/bin/env bash
# Side by side, in one run with the same load (wrk, CCM_BENCH_CONNECTIONS connections for
# CCM_BENCH_SECONDS s, the same structured events of bench/events.lua): accepted CloudEvents
# per second on ccm (each event's dedup key committed durably to SQLite with synchronous=FULL)
# and on a Node receiver on the official CloudEvents SDK with in-memory dedup
# (bench/reference_receiver.mjs). Prints both figures and the ratio ccm / reference.
# Usage: bench/compare.sh BUILD_DIR (the Node packages come from tests/interop, as the
# interop tests install them).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${CCM_BENCH_SECONDS:-20}
connections=${CCM_BENCH_CONNECTIONS:-64}
source "$root/scripts/ccm-lib.sh"
bash "$root/tests/interop/install.sh" "$root/$build/interop" >/dev/null
cp "$root/bench/reference_receiver.mjs" "$root/tests/interop/serve_cloudevents.mjs" "$root/$build/interop/"

load() {  # load URL: events/s and p99 of one wrk run
  CCM_IDS_FILE="$work/ids.txt" wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/events.lua" "$1" |
    awk '/^ +99%/ {p99=$2} /^Requests\/sec/ {rps=$2} END {printf "%.0f %s\n", rps, p99}'
}

"$root/$build/bench/ccm_bench_seed" --db "$work/ccm.db" --instances 6400 --ids "$work/ids.txt" \
  --workers 64 --worker-ids "$work/workers.txt" --stopped >/dev/null
start_ccm CCM_HTTP_THREADS=64 ${CCM_BENCH_LOG_LEVEL:+CCM_LOG_LEVEL=$CCM_BENCH_LOG_LEVEL}
read -r ccm_rps ccm_p99 < <(load "$base")
stop_ccm

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node "$root/$build/interop/reference_receiver.mjs" "$port" 2>/dev/null &
node_pid=$!
trap 'kill $node_pid 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
read -r ref_rps ref_p99 < <(load "http://127.0.0.1:$port")

printf "%-58s %10s %10s\n" "accepted CloudEvents, structured, $connections connections" "events/s" "p99"
printf "%-58s %10s %10s\n" "ccm (dedup key durable in SQLite, synchronous=FULL)" "$ccm_rps" "$ccm_p99"
printf "%-58s %10s %10s\n" "Node + cloudevents SDK (dedup in memory, not durable)" "$ref_rps" "$ref_p99"
awk -v a="$ccm_rps" -v b="$ref_rps" 'BEGIN {printf "ratio ccm / reference: %.2f\n", a / b}'
