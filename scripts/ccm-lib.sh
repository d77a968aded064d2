# Used by bench/run.sh: run `ccm serve` on a free loopback port with its SQLite file in a
# temporary folder, and stop it (and remove the folder) on exit. The reconcilers are off: the
# load figures are those of the API and the store alone.
# Needs $root (the repository) and $build (the build folder, relative to $root).
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# start_ccm [VAR=value ...]: starts ccm with those extra settings; sets $pid and $base.
start_ccm() {
  env CCM_STORE="sqlite:$work/ccm.db" CCM_LISTEN=127.0.0.1:0 CCM_LOG_LEVEL=warn CCM_RECONCILERS=false CCM_DRAIN_GRACE_MS=0 "$@" \
    "$root/$build/src/main/ccm" serve --insecure-no-auth --ready-file "$work/ready" &
  pid=$!
  for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.05; done
  [ -s "$work/ready" ] || { echo "ccm did not start" >&2; exit 1; }
  base="http://$(cat "$work/ready")"
}

stop_ccm() {
  kill "$pid"
  wait "$pid" || true
  pid=""
  rm -f "$work/ready"
}
