#!/usr/bin/env bash
# `make fuzz`: runs each libFuzzer target for FUZZ_SECONDS (default 60) from its seed corpus.
# New inputs that reach new code are kept in BUILD/corpus/<target>; a crash or a broken
# invariant leaves its input in BUILD/findings/<target>/ and fails the run. Fix it, then copy
# the input into fuzz/corpus/<target>/ so that `make test` replays it from then on.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for target in cloudevents_decode lab_yaml request_body http_request; do
  corpus="$build/corpus/$target"
  findings="$build/findings/$target"
  mkdir -p "$corpus" "$findings"
  echo "== $target for ${seconds}s"
  if ! "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$findings/" "$corpus" "$root/fuzz/corpus/$target" 2> "$build/$target.log"; then
    echo "FAILED: $target; input in $findings/, log in $build/$target.log"
    tail -30 "$build/$target.log"
    status=1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$build/$target.log" || true
done
exit $status
