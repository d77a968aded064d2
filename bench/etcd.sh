#!/usr/bin/env bash
# Durable transitions per second with the etcd store, for docs/benchmarks.md beside the SQLite
# figure: starts one etcd member (Debian's etcd-server) on loopback ports with its data in a
# temporary folder, seeds 6,400 RUNNING instances on 64 workers through the real use cases,
# starts `ccm serve` with CCM_STORE=etcd:..., and drives it with wrk and bench/transitions.lua
# for CCM_BENCH_SECONDS (default 20). With CCM_BENCH_REPLICAS=2, a second replica is started
# on the same etcd and wrk drives both (half the connections and half the instances each).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${CCM_BENCH_SECONDS:-20}
connections=${CCM_BENCH_CONNECTIONS:-64}
threads=${CCM_HTTP_THREADS:-64}
replicas=${CCM_BENCH_REPLICAS:-1}
source "$root/scripts/ccm-lib.sh"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
client=http://127.0.0.1:$(port)
peer=http://127.0.0.1:$(port)
etcd --name bench --data-dir "$work/etcd" --listen-client-urls "$client" --advertise-client-urls "$client" \
  --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "bench=$peer" \
  --max-txn-ops 1024 >"$work/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 100); do curl -s "$client/health" | grep -q true && break; sleep 0.1; done

echo "== etcd $(etcd --version | head -1 | cut -d' ' -f3), data in $work/etcd"
"$root/$build/bench/ccm_bench_seed" --etcd "$client" --instances 6400 --ids "$work/ids.txt" \
  --workers 64 --worker-ids "$work/workers.txt" --running
echo "== durable transitions on etcd, steady state: $connections connections, ${seconds}s, $replicas replica(s)"
start_ccm CCM_STORE="etcd:$client" CCM_HTTP_THREADS="$threads"
first=$base
first_pid=$pid
if [ "$replicas" = 2 ]; then
  rm -f "$work/ready"
  start_ccm CCM_STORE="etcd:$client" CCM_HTTP_THREADS="$threads"
  second=$base
  # Each replica's load moves its own half of the instances.
  awk 'NR % 2 == 1' "$work/ids.txt" >"$work/ids-a.txt"
  awk 'NR % 2 == 0' "$work/ids.txt" >"$work/ids-b.txt"
  CCM_RUNNING=1 CCM_IDS_FILE="$work/ids-b.txt" CCM_WORKER_IDS_FILE="$work/workers.txt" CCM_THREADS=1 \
    wrk -t1 -c$((connections / 2)) -d"${seconds}s" --latency -s "$root/bench/transitions.lua" "$second" &
  wrk_second=$!
  CCM_RUNNING=1 CCM_IDS_FILE="$work/ids-a.txt" CCM_WORKER_IDS_FILE="$work/workers.txt" CCM_THREADS=1 \
    wrk -t1 -c$((connections / 2)) -d"${seconds}s" --latency -s "$root/bench/transitions.lua" "$first"
  wait $wrk_second
  stop_ccm
  pid=$first_pid
else
  CCM_RUNNING=1 CCM_IDS_FILE="$work/ids.txt" CCM_WORKER_IDS_FILE="$work/workers.txt" CCM_THREADS=2 \
    wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/transitions.lua" "$first"
fi
echo "-- CPU seconds used (etcd; ccm), seeding included for etcd:"
ps -o comm=,times= -p "$etcd_pid","$pid"
stop_ccm
