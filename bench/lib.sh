# shellcheck shell=bash
# Shared by bench/run.sh, bench/etcd.sh and bench/compare.sh: the load settings, seeding a store,
# one etcd member, the wrk runs and reading their figures. Builds on scripts/ccm-lib.sh
# (start_ccm, stop_ccm, $work). Needs $root (the repository) and $build (the build folder,
# relative to $root).
source "$root/scripts/ccm-lib.sh"
seconds=${CCM_BENCH_SECONDS:-20}
connections=${CCM_BENCH_CONNECTIONS:-64}
threads=${CCM_HTTP_THREADS:-64}

# Processes started here besides ccm (etcd, a reference server): stopped on exit, before
# scripts/ccm-lib.sh's cleanup removes $work.
bench_pids=()
bench_cleanup() {
  for p in "${bench_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  cleanup
}
trap bench_cleanup EXIT
# Reaped already: the exit trap must not signal the pid, which another process may have by then.
forget_pid() {
  local keep=() p
  for p in "${bench_pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  bench_pids=("${keep[@]}")
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# seed N W [--running|--stopped]: N instances and W workers in a fresh SQLite file
# ($work/ccm.db), through the real use cases; ids in $work/ids.txt and $work/workers.txt.
seed() {
  rm -f "$work"/ccm.db*
  "$root/$build/bench/ccm_bench_seed" --db "$work/ccm.db" --instances "$1" --ids "$work/ids.txt" \
    --workers "$2" --worker-ids "$work/workers.txt" ${3:-}
}

# seed_etcd N W [--running|--stopped]: the same in the etcd member of start_etcd.
seed_etcd() {
  "$root/$build/bench/ccm_bench_seed" --etcd "$etcd_url" --instances "$1" --ids "$work/ids.txt" \
    --workers "$2" --worker-ids "$work/workers.txt" ${3:-}
}

# start_etcd: one etcd member (Debian's etcd-server) on free loopback ports, its data in
# $work/etcd; sets $etcd_url (its client URL) and $etcd_pid.
start_etcd() {
  etcd_url=http://127.0.0.1:$(free_port)
  local peer
  peer=http://127.0.0.1:$(free_port)
  etcd --name bench --data-dir "$work/etcd" --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "bench=$peer" \
    --max-txn-ops 1024 >"$work/etcd.log" 2>&1 &
  etcd_pid=$!
  bench_pids+=("$etcd_pid")
  for _ in $(seq 1 100); do curl -s "$etcd_url/health" | grep -q true && return 0; sleep 0.1; done
  echo "etcd did not start:" >&2
  tail -5 "$work/etcd.log" >&2
  exit 1
}

# transitions BASE [RUNNING(0|1)] [IDS_FILE] [WRK_THREADS] [CONNECTIONS]: durable transitions
# (bench/transitions.lua) for $seconds; RUNNING=1 (the default) cycles RUNNING instances
# through STOPPING, STOPPED, RUNNING, 0 starts from PENDING. Prints wrk's report.
transitions() {
  local wrk_threads=${4:-2}
  CCM_RUNNING=${2:-1} CCM_IDS_FILE="${3:-$work/ids.txt}" CCM_WORKER_IDS_FILE="$work/workers.txt" \
    CCM_THREADS="$wrk_threads" \
    wrk -t"$wrk_threads" -c"${5:-$connections}" -d"${seconds}s" --latency -s "$root/bench/transitions.lua" "$1"
}

# events BASE: structured CloudEvents with unique ids (bench/events.lua) for $seconds.
events() {
  CCM_IDS_FILE="$work/ids.txt" wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/events.lua" "$1"
}

# wrk_figures < REPORT: one line "REQUESTS_PER_S P50 P99 REQUESTS ERRORS" from a wrk --latency
# report (latencies as wrk prints them, such as 18.40ms; errors: non-2xx answers and socket
# errors).
wrk_figures() {
  awk '/^ +50%/ {p50 = $2} /^ +99%/ {p99 = $2} /requests in/ {n = $1} /^Requests\/sec/ {rps = $2}
       /Non-2xx or 3xx responses/ {errors += $NF}
       /Socket errors/ {gsub(/,/, ""); errors += $4 + $6 + $8 + $10}
       END {printf "%.0f %s %s %d %d\n", rps, p50, p99, n, errors}'
}

# instance_bytes BASE [SAMPLE]: average size of an instance as the API returns it (the JSON a
# store keeps, give or take a field), over the first SAMPLE (default 50) ids of $work/ids.txt.
instance_bytes() {
  head -n "${2:-50}" "$work/ids.txt" | while read -r id; do curl -s "$1/api/v1/instances/$id" | wc -c; done |
    awk '{s += $1; n++} END {printf "%.0f\n", s / n}'
}
