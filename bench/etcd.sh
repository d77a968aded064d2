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
replicas=${CCM_BENCH_REPLICAS:-1}
source "$root/bench/lib.sh"

start_etcd
echo "== etcd $(etcd --version | head -1 | cut -d' ' -f3), data in $work/etcd"
seed_etcd 6400 64 --running
echo "== durable transitions on etcd, steady state: $connections connections, ${seconds}s, $replicas replica(s)"
start_ccm CCM_STORE="etcd:$etcd_url" CCM_HTTP_THREADS="$threads"
first=$base
first_pid=$pid
if [ "$replicas" = 2 ]; then
  rm -f "$work/ready"
  start_ccm CCM_STORE="etcd:$etcd_url" CCM_HTTP_THREADS="$threads"
  second=$base
  # Each replica's load moves its own half of the instances.
  awk 'NR % 2 == 1' "$work/ids.txt" >"$work/ids-a.txt"
  awk 'NR % 2 == 0' "$work/ids.txt" >"$work/ids-b.txt"
  transitions "$second" 1 "$work/ids-b.txt" 1 $((connections / 2)) &
  wrk_second=$!
  transitions "$first" 1 "$work/ids-a.txt" 1 $((connections / 2))
  wait $wrk_second
  stop_ccm
  pid=$first_pid
else
  transitions "$first"
fi
echo "-- CPU seconds used (etcd; ccm), seeding included for etcd:"
ps -o comm=,times= -p "$etcd_pid","$pid"
stop_ccm
