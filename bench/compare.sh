#!/usr/bin/env bash
# Side by side (issue #22): each pair runs ccm and a reference back to back with the same load
# (wrk, CCM_BENCH_CONNECTIONS connections, default 64, for CCM_BENCH_SECONDS s, default 20, on
# the same cores) and ends in one table of ccm's figure, the reference's, the ratio
# ccm / reference, the aim and whether it is met. The pairs:
#   receive   accepted CloudEvents/s (structured, unique ids, bench/events.lua): ccm, each
#             event's dedup key durable in SQLite (synchronous=FULL), against a Node receiver
#             on the official cloudevents SDK with in-memory dedup (bench/reference_receiver.mjs);
#             aim 1.5;
#   sqlite    durable transitions/s, steady state (bench/transitions.lua, 6,400 RUNNING
#             instances on 64 workers): ccm on SQLite against one writer doing raw single-row
#             transactions, WAL and synchronous=FULL, on rows the size of ccm's instances
#             (bench/sqlite_reference.cc); aim 2.5;
#   etcd      the same transitions on one etcd member (ccm's etcd store, over gRPC) against
#             raw puts of one key each over the member's JSON gateway (bench/etcd_put.lua);
#             aim 0.4; also etcd requests per transition, in all and per gRPC method, from
#             etcd's own gRPC counters, and raw 1 KiB
#             puts over the gateway against the same over gRPC (etcdctl check perf, from
#             Debian's etcd-client), to say whether the gateway is what costs;
#   delivery  events/s delivered to a local sink, structured, on ccm's default 8 lanes
#             (CLOUDEVENTS_SINK_CONCURRENCY; build/bench/ccm_delivery_bench 8) against ccm's
#             receive rate, measured right after it (the machine's speed drifts over the
#             minutes a full run takes; the receive pair's figure, when it ran earlier, is noted
#             beside it); aim 1.
# Usage: bench/compare.sh BUILD_DIR [receive|sqlite|etcd|delivery ...] (all four by default).
# CCM_BENCH_DELIVERY_ARGS: the arguments of ccm_delivery_bench (default 8, the lanes); its first line
# "delivery, structured ... N events/s" is the figure. The Node packages come from
# tests/interop, as the interop tests install them. CCM_BENCH_LOG_LEVEL: ccm's log level
# (default warn). CCM_BENCH_ETCD_INSTANCES: the instances the etcd pair moves in turn (default
# 6400; at a few hundred moves a second, most moves of a run are then ccm's first of that
# instance; fewer show the steady state of a replica moving what it moved before).
set -euo pipefail
shopt -s lastpipe  # figures_of, at the end of a pipeline, sets this shell's variables
build=${1:-build}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || pairs=(receive sqlite etcd delivery)
for p in "${pairs[@]}"; do
  case $p in receive | sqlite | etcd | delivery) ;; *) echo "unknown pair '$p': receive, sqlite, etcd or delivery" >&2; exit 2 ;; esac
done
log_level=CCM_LOG_LEVEL=${CCM_BENCH_LOG_LEVEL:-warn}
etcd_instances=${CCM_BENCH_ETCD_INSTANCES:-6400}
delivery_args=${CCM_BENCH_DELIVERY_ARGS:-8}

rows=()  # one line per pair: name|figure|ccm|ccm p99|reference|reference p99|aim
notes=()
# report_pair NAME FIGURE CCM CCM_P99 REFERENCE REFERENCE_P99 AIM
report_pair() { local IFS='|'; rows+=("$*"); }

# figures_of LABEL: prints wrk's report from stdin under LABEL, and its figures into $figures.
figures_of() {
  tee "$work/wrk.txt" | sed "s/^/[$1] /" >&2
  figures=$(wrk_figures <"$work/wrk.txt")
  local errors=${figures##* }
  if [ "$errors" != 0 ]; then notes+=("$1: $errors requests failed (wrk's report above)"); fi
}

ccm_receive=""
receive_ccm() {  # ccm's accepted CloudEvents/s; sets $ccm_receive and $ccm_receive_p99
  seed 6400 64 --stopped >/dev/null
  start_ccm CCM_HTTP_THREADS="$threads" "$log_level" >&2
  events "$base" | figures_of "receive, ccm"
  stop_ccm
  read -r ccm_receive _ ccm_receive_p99 _ <<<"$figures"
}

pair_receive() {
  echo "== receive: accepted CloudEvents/s, structured, $connections connections, ${seconds}s" >&2
  bash "$root/tests/interop/install.sh" "$root/$build/interop" >/dev/null
  cp "$root/bench/reference_receiver.mjs" "$root/tests/interop/serve_cloudevents.mjs" "$root/$build/interop/"
  receive_ccm
  local port
  port=$(free_port)
  node "$root/$build/interop/reference_receiver.mjs" "$port" 2>/dev/null &
  local node_pid=$!
  bench_pids+=("$node_pid")
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  events "http://127.0.0.1:$port" | figures_of "receive, reference"
  kill "$node_pid" 2>/dev/null || true
  wait "$node_pid" 2>/dev/null || true
  forget_pid "$node_pid"
  local ref ref_p99
  read -r ref _ ref_p99 _ <<<"$figures"
  report_pair receive "accepted CloudEvents/s (Node + cloudevents SDK)" \
    "$ccm_receive" "$ccm_receive_p99" "$ref" "$ref_p99" 1.5
}

pair_sqlite() {
  echo "== sqlite: durable transitions/s, steady state, $connections connections, ${seconds}s" >&2
  seed 6400 64 --running >/dev/null
  start_ccm CCM_HTTP_THREADS="$threads" "$log_level" >&2
  local before after
  before=$(instance_bytes "$base")
  transitions "$base" | figures_of "sqlite, ccm"
  after=$(instance_bytes "$base")
  stop_ccm
  local ccm ccm_p99 bytes=$(((before + after) / 2))
  read -r ccm _ ccm_p99 _ <<<"$figures"
  local line ref ref_p99
  line=$("$root/$build/bench/ccm_sqlite_reference" --db "$work/reference.db" --rows 6400 --row-bytes "$bytes" \
    --seconds "$seconds")
  echo "[sqlite, reference] $line" >&2
  rm -f "$work"/reference.db*
  ref=$(sed -E 's/.*: ([0-9]+) transactions\/s.*/\1/' <<<"$line")
  ref_p99=$(sed -E 's/.*p99 ([0-9.]+) ms.*/\1ms/' <<<"$line")
  notes+=("sqlite: reference rows of $bytes bytes (a seeded instance: $before before ccm's run, $after after)")
  report_pair sqlite "durable transitions/s (raw SQLite, one writer)" "$ccm" "$ccm_p99" "$ref" "$ref_p99" 2.5
}

# etcd_requests_by_method: etcd's unary gRPC requests handled so far (the JSON gateway hands
# each of its requests to gRPC too), one "method count" line per method.
etcd_requests_by_method() {
  curl -s "$etcd_url/metrics" | awk '/^grpc_server_handled_total\{/ && /grpc_type="unary"/ {
      match($0, /grpc_method="[^"]+"/); s[substr($0, RSTART + 13, RLENGTH - 14)] += $NF }
    END {for (m in s) printf "%s %.0f\n", m, s[m]}'
}

# etcd_requests: all of them.
etcd_requests() {
  etcd_requests_by_method | awk '{s += $2} END {printf "%.0f\n", s}'
}

# etcd_keys_written: the keys etcd has put or deleted so far (etcd_mvcc_put_total and
# etcd_mvcc_delete_total).
etcd_keys_written() {
  curl -s "$etcd_url/metrics" | awk '/^etcd_mvcc_(put|delete)_total / {s += $NF} END {printf "%.0f\n", s}'
}

# gateway_or_grpc: whether etcd's JSON gateway is what costs. Raw puts of one key each, with
# the key and value sizes etcdctl check perf writes (276 and 1,024 bytes), first over the
# gateway (wrk, as the reference), then over gRPC with etcdctl check perf --load=xl (1,000 gRPC
# clients for 60 s, its rate capped at 15,000 puts/s), on the same member.
gateway_or_grpc() {
  if ! command -v etcdctl >/dev/null; then
    notes+=("etcd: no etcdctl (Debian etcd-client), so no gateway-against-gRPC figure")
    return
  fi
  CCM_VALUE_BYTES=1024 CCM_KEY_BYTES=276 wrk -t2 -c"$connections" -d"${seconds}s" --latency \
    -s "$root/bench/etcd_put.lua" "$etcd_url" | figures_of "etcd, gateway, 1 KiB puts"
  local gateway grpc
  read -r gateway _ <<<"$figures"
  grpc=$(etcdctl --endpoints "$etcd_url" check perf --load=xl 2>/dev/null | tr '\r' '\n' |
    sed -nE 's/.*Throughput (is|too low:) ([0-9]+) writes\/s.*/\2/p' | head -1) || true  # FAIL: too low
  echo "[etcd, gRPC, 1 KiB puts] ${grpc:-?} puts/s (etcdctl check perf --load=xl)" >&2
  notes+=("etcd: raw 1 KiB puts: ${gateway}/s over the JSON gateway ($connections connections), ${grpc:-?}/s over gRPC (etcdctl check perf --load=xl: 1,000 clients, capped at 15,000/s)")
}

pair_etcd() {
  echo "== etcd: durable transitions/s on one etcd member, $connections connections, ${seconds}s" >&2
  start_etcd
  echo "etcd $(etcd --version | head -1 | cut -d' ' -f3), data in $work/etcd" >&2
  seed_etcd "$etcd_instances" 64 --running >/dev/null
  start_ccm CCM_STORE="etcd:$etcd_url" CCM_HTTP_THREADS="$threads" "$log_level" >&2
  local before after requests_before requests_after keys_before keys_after
  before=$(instance_bytes "$base")
  etcd_requests_by_method >"$work/requests.before"
  requests_before=$(etcd_requests)
  keys_before=$(etcd_keys_written)
  transitions "$base" | figures_of "etcd, ccm"
  etcd_requests_by_method >"$work/requests.after"
  requests_after=$(etcd_requests)
  keys_after=$(etcd_keys_written)
  after=$(instance_bytes "$base")
  stop_ccm
  local ccm ccm_p99 done_requests bytes=$(((before + after) / 2))
  read -r ccm _ ccm_p99 done_requests _ <<<"$figures"
  CCM_VALUE_BYTES=$bytes wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/etcd_put.lua" "$etcd_url" |
    figures_of "etcd, reference"
  local ref ref_p99
  read -r ref _ ref_p99 _ <<<"$figures"
  gateway_or_grpc
  kill "$etcd_pid" 2>/dev/null || true
  wait "$etcd_pid" 2>/dev/null || true
  forget_pid "$etcd_pid"
  rm -rf "$work/etcd"
  notes+=("etcd: reference values of $bytes bytes (a seeded instance: $before before ccm's run, $after after)")
  if [ "$requests_before" -gt 0 ] && [ "$done_requests" -gt 0 ]; then
    notes+=("$(awk -v r=$((requests_after - requests_before)) -v t="$done_requests" \
      'BEGIN {printf "etcd: %.2f etcd requests per ccm transition (%d gRPC requests for %d transitions, from etcd'"'"'s grpc_server_handled_total)", r / t, r, t}')")
    # Per method, the most frequent first: what a transition costs etcd, request by request.
    notes+=("etcd: per ccm transition: $(awk -v t="$done_requests" 'NR == FNR {b[$1] = $2; next}
        $2 > b[$1] {printf "%.0f %s %.2f\n", $2 - b[$1], $1, ($2 - b[$1]) / t}' "$work/requests.before" "$work/requests.after" |
      sort -rn | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $3}')")
    notes+=("$(awk -v k=$((keys_after - keys_before)) -v t="$done_requests" \
      'BEGIN {printf "etcd: %.2f keys put or deleted per ccm transition (etcd_mvcc_put_total and etcd_mvcc_delete_total)", k / t}')")
  fi
  notes+=("etcd: $etcd_instances instances moved in turn (CCM_BENCH_ETCD_INSTANCES)")
  report_pair etcd "durable transitions/s (raw etcd put, one key)" "$ccm" "$ccm_p99" "$ref" "$ref_p99" 0.4
}

pair_delivery() {
  echo "== delivery: events/s to a local sink, structured, $delivery_args lanes" >&2
  local out rate
  # shellcheck disable=SC2086  # the extra arguments are words
  out=$("$root/$build/bench/ccm_delivery_bench" $delivery_args)
  sed 's/^/[delivery] /' <<<"$out" >&2
  rate=$(awk '/^delivery, structured/ {for (i = 2; i <= NF; i++) if ($i == "events/s") {print $(i - 1); exit}}' <<<"$out")
  [ -n "$rate" ] || { echo "no structured delivery rate in ccm_delivery_bench's output" >&2; exit 1; }
  local earlier=$ccm_receive
  echo "== delivery: ccm's receive rate, measured right after it" >&2
  receive_ccm
  if [ -n "$earlier" ]; then
    notes+=("delivery: against the receive pair's ccm figure of this run ($earlier/s, measured earlier), the ratio is $(awk -v a="$rate" -v b="$earlier" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')")
  fi
  report_pair delivery "events/s delivered, structured, $delivery_args lanes (ccm's receive rate)" \
    "$rate" "-" "$ccm_receive" "$ccm_receive_p99" 1
}

for p in "${pairs[@]}"; do "pair_$p"; done

echo
echo "Side by side: $connections connections, ${seconds}s per run, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-9s %-66s %9s %9s %9s %9s %6s %5s %4s\n" pair figure ccm "ccm p99" reference "ref p99" ratio aim met
for row in "${rows[@]}"; do
  IFS='|' read -r name figure ccm ccm_p99 ref ref_p99 aim <<<"$row"
  awk -v n="$name" -v f="$figure" -v a="$ccm" -v ap="$ccm_p99" -v b="$ref" -v bp="$ref_p99" -v aim="$aim" 'BEGIN {
    r = b > 0 ? a / b : 0
    printf "%-9s %-66s %9s %9s %9s %9s %6.2f %5s %4s\n", n, f, a, ap, b, bp, r, ">=" aim, (r >= aim ? "yes" : "no")
  }'
done
for note in "${notes[@]}"; do echo "  $note"; done
