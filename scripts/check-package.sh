#!/usr/bin/env bash
# Checks the Debian packages and the image made from a build tree (`make check-package`
# builds both first; CI runs it after the suite). As root, on a machine where systemd need not
# be PID 1. It leaves the machine as it found it: the packages are purged, the user ccm is
# removed if this run made it, the image lives in a throwaway store.
#   1. the .debs: names, Depends (dpkg-shlibdeps), the conffile, the files each holds;
#   2. installs them (apt-get, which brings any missing dependency): the user and group ccm,
#      the conffile's owner and mode, the state directory, a stripped /usr/bin/ccm whose debug
#      information ccm-dbgsym holds, the bash completion, `systemd-analyze verify` of the unit;
#   3. runs the installed ccm with the shipped /etc/ccm/ccm.yaml as the user ccm (umask 077,
#      like the unit), the port from the environment: /health/live and /health/ready answer
#      200, the SQLite file appears in /var/lib/ccm, SIGTERM stops it with status 0;
#   4. purges the packages (apt-get purge): nothing of them is left;
#   5. builds the image (packaging/build-image.sh) into a throwaway buildah store, unpacks
#      its OCI archive's layers into a directory and, with the image's own Env, User and
#      Entrypoint, runs `ccm version` and `ccm serve --insecure-no-auth` there with
#      chroot --userspec=65532:65532 (no container runtime: the sandbox refuses to run one),
#      checking the probes on loopback and that the image holds no shell.
#   scripts/check-package.sh [BUILD]      (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
started=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
  echo "check-package: run as root (dpkg -i, chroot)" >&2
  exit 2
fi

fail() {
  echo "check-package: FAIL: $*" >&2
  exit 1
}
step() { echo "== check-package: $*"; }
# apt-get waits up to 5 min for dpkg's lock when another install holds it.
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 "$@"; }

work=$(mktemp -d /tmp/ccm-check-package.XXXXXX)
chmod 0755 "$work"
pid=
installed=0
made_user=0
storage=()
cleanup() {
  set +e
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  if ((installed)); then apt_get purge ccm-dbgsym ccm-sims ccm >/dev/null 2>&1; fi
  if ((made_user)); then
    getent passwd ccm >/dev/null && deluser --system --quiet ccm >/dev/null 2>&1
    getent group ccm >/dev/null && delgroup --system --quiet ccm >/dev/null 2>&1
  fi
  if ((${#storage[@]})); then
    buildah "${storage[@]}" rmi --all --force >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for FILE to hold host:port (ccm's --ready-file), at most 20 s; prints it.
wait_ready() {
  local file=$1 i
  for ((i = 0; i < 200; i++)); do
    if [ -s "$file" ]; then
      head -1 "$file"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# Both probes answer 200 at host:port.
check_probes() {
  local where=$1 path code
  for path in /health/live /health/ready; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$where$path")
    [ "$code" = 200 ] || fail "GET $path at $where answered $code, not 200"
  done
}

# SIGTERM, then the exit status must be 0 within 30 s.
stop_with_sigterm() {
  local i status=0
  kill -TERM "$pid"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "ccm did not stop within 30 s of SIGTERM"
  wait "$pid" || status=$?
  pid=
  [ "$status" = 0 ] || fail "ccm exited with status $status on SIGTERM, not 0"
}

if dpkg-query -W -f='${Status}' ccm 2>/dev/null | grep -q "ok installed"; then
  fail "a ccm package is installed on this machine already; this check would replace and purge it"
fi

# ---- 1. the packages
step "packages in $build/packages"
version=$("$build/stripped/ccm" version | awk '{print $2}')
deb() { echo "$build/packages/$1_$version-1_$(dpkg --print-architecture).deb"; }
for p in ccm ccm-sims ccm-dbgsym; do
  [ -f "$(deb $p)" ] || fail "$(deb $p) is missing: make package"
  printf '   %-11s %6s KiB  %s\n' "$p" "$(($(stat -c %s "$(deb $p)") / 1024))" "$(basename "$(deb $p)")"
done
depends=$(dpkg-deb -f "$(deb ccm)" Depends)
echo "   ccm Depends: $depends"
for d in libc6 libstdc++6 libcurl4 libsqlite3-0 libyaml-cpp0.7 libprometheus-cpp-core1.0 libgrpc++1.51 libprotobuf32 adduser; do
  grep -q "\b$d\b" <<<"$depends" || fail "ccm's Depends lacks $d: $depends"
done
grep -q "\blibcurl4\b" <<<"$(dpkg-deb -f "$(deb ccm-sims)" Depends)" || fail "ccm-sims's Depends lacks libcurl4"
[ "$(dpkg-deb -I "$(deb ccm)" conffiles)" = /etc/ccm/ccm.yaml ] || fail "ccm's conffiles is not exactly /etc/ccm/ccm.yaml"
dpkg-deb -c "$(deb ccm)" | awk '{print $6}' >"$work/ccm.files"
for f in ./usr/bin/ccm ./etc/ccm/ccm.yaml ./usr/lib/systemd/system/ccm.service \
  ./usr/share/bash-completion/completions/ccm ./usr/share/doc/ccm/README.md ./usr/share/doc/ccm/operations.md; do
  grep -qx "$f" "$work/ccm.files" || fail "the ccm package lacks $f"
done
dpkg-deb -c "$(deb ccm-sims)" | awk '{print $6}' >"$work/sims.files"
for f in ./usr/bin/cml-sim ./usr/bin/assessment-sim ./usr/bin/oidc-sim; do
  grep -qx "$f" "$work/sims.files" || fail "the ccm-sims package lacks $f"
done
grep -q '^./usr/bin/ccm$' "$work/sims.files" && fail "ccm-sims holds /usr/bin/ccm"

# ---- 2. install
step "install (apt-get install ./ccm*.deb)"
getent passwd ccm >/dev/null || made_user=1
installed=1
apt_get install --no-install-recommends \
  "$(realpath "$(deb ccm)")" "$(realpath "$(deb ccm-sims)")" "$(realpath "$(deb ccm-dbgsym)")" >"$work/apt.log" 2>&1 ||
  { cat "$work/apt.log" >&2; fail "apt-get install of the packages failed"; }
# Configuring again (the postinst's second run) changes nothing and fails nothing.
dpkg-reconfigure -f noninteractive ccm >/dev/null || fail "configuring ccm a second time failed"
dpkg-query -W -f='${Conffiles}\n' ccm | grep -q '^ /etc/ccm/ccm.yaml ' || fail "dpkg does not list /etc/ccm/ccm.yaml as a conffile"
IFS=: read -r _ _ uid gid _ home shell <<<"$(getent passwd ccm)" || fail "no user ccm after install"
[ "$home" = /var/lib/ccm ] || fail "ccm's home is $home, not /var/lib/ccm"
[ "$shell" = /usr/sbin/nologin ] || fail "ccm's shell is $shell, not /usr/sbin/nologin"
((uid < 1000)) || fail "ccm's uid $uid is not a system uid"
[ "$(getent group ccm | cut -d: -f3)" = "$gid" ] || fail "ccm's primary group is not the group ccm"
[ "$(stat -c '%U:%G %a' /etc/ccm/ccm.yaml)" = "root:ccm 640" ] ||
  fail "/etc/ccm/ccm.yaml is $(stat -c '%U:%G %a' /etc/ccm/ccm.yaml), not root:ccm 640"
[ "$(stat -c '%U:%G %a' /var/lib/ccm)" = "ccm:ccm 750" ] ||
  fail "/var/lib/ccm is $(stat -c '%U:%G %a' /var/lib/ccm), not ccm:ccm 750"
[ "$(/usr/bin/ccm version)" = "ccm $version" ] || fail "/usr/bin/ccm version does not say ccm $version"
/usr/bin/cml-sim --help >/dev/null || fail "/usr/bin/cml-sim --help failed"

# Stripped, and the debug information in ccm-dbgsym belongs to this very binary.
file -L /usr/bin/ccm | grep -q ', stripped' || fail "/usr/bin/ccm is not stripped: $(file -L /usr/bin/ccm)"
debug=/usr/lib/debug/usr/bin/ccm.debug
[ -f "$debug" ] || fail "$debug is missing"
readelf -S "$debug" 2>/dev/null | grep -q '\.debug_info' || fail "$debug holds no .debug_info"
[ "$(readelf -p .gnu_debuglink /usr/bin/ccm | awk '/\]/ {print $3; exit}')" = ccm.debug ] ||
  fail "/usr/bin/ccm has no .gnu_debuglink to ccm.debug"
build_id() { readelf -n "$1" 2>/dev/null | awk '/Build ID/ {print $3}'; }
[ -n "$(build_id /usr/bin/ccm)" ] && [ "$(build_id /usr/bin/ccm)" = "$(build_id "$debug")" ] ||
  fail "the build ids of /usr/bin/ccm and $debug differ"
echo "   /usr/bin/ccm $(($(stat -c %s /usr/bin/ccm) / 1024)) KiB stripped," \
  "$(($(stat -c %s "$build/src/main/ccm") / 1024)) KiB in the build tree, $(($(stat -c %s "$debug") / 1024)) KiB of debug information"

# The completion offers the subcommands (needs the bash-completion package's helpers).
if [ -f /usr/share/bash-completion/bash_completion ]; then
  offered=$(bash -c 'source /usr/share/bash-completion/bash_completion
    source /usr/share/bash-completion/completions/ccm
    COMP_WORDS=(ccm events l); COMP_CWORD=2; COMP_LINE="ccm events l"; COMP_POINT=${#COMP_LINE}
    _ccm; echo "${COMPREPLY[*]}"')
  [ "$offered" = list ] || fail "completing 'ccm events l' offered '$offered', not 'list'"
fi

unit=/usr/lib/systemd/system/ccm.service
step "systemd-analyze verify $unit"
systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || { cat "$work/verify.log" >&2; fail "systemd-analyze verify failed"; }
# Any word on ccm's unit fails (verify says unknown keys and bad values but still exits 0);
# words on the machine's other units (those it pulls in) are only shown.
if grep -q 'ccm' "$work/verify.log"; then
  cat "$work/verify.log" >&2
  fail "systemd-analyze verify reported the above on $unit"
fi
sed 's/^/   (other units) /' "$work/verify.log"
grep -qx 'ExecStart=/usr/bin/ccm serve --config /etc/ccm/ccm.yaml' "$unit" || fail "$unit does not start /usr/bin/ccm with /etc/ccm/ccm.yaml"
echo "   $(systemd-analyze security --offline=yes "$unit" 2>/dev/null | grep -o 'Overall exposure level.*')"

# ---- 3. run it as the service would
step "ccm serve --config /etc/ccm/ccm.yaml as the user ccm"
run=$work/run
install -d -o ccm -g ccm -m 0700 "$run"
(
  umask 077
  exec setpriv --reuid=ccm --regid=ccm --init-groups --no-new-privs \
    env -i PATH=/usr/bin:/bin CCM_LISTEN=127.0.0.1:0 \
    /usr/bin/ccm serve --config /etc/ccm/ccm.yaml --ready-file "$run/ready"
) >"$work/serve.log" 2>&1 &
pid=$!
where=$(wait_ready "$run/ready") || { cat "$work/serve.log" >&2; fail "the installed ccm did not start"; }
check_probes "$where"
[ "$(stat -c '%U %a' /var/lib/ccm/ccm.db)" = "ccm 600" ] ||
  fail "/var/lib/ccm/ccm.db is $(stat -c '%U %a' /var/lib/ccm/ccm.db 2>&1), not ccm 600"
stop_with_sigterm
echo "   served at $where, /health/live and /health/ready 200, stopped by SIGTERM with status 0"

# ---- 4. purge
step "purge"
apt_get purge ccm-dbgsym ccm-sims ccm >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; fail "apt-get purge failed"; }
installed=0
for p in ccm ccm-sims ccm-dbgsym; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qE 'ok (installed|config-files|half)' &&
    fail "dpkg still holds $p after the purge"
done
for f in /usr/bin/ccm /usr/bin/cml-sim /etc/ccm /var/lib/ccm $unit /usr/share/doc/ccm "$debug"; do
  [ -e "$f" ] && fail "$f is left after the purge"
done
if ((made_user)); then
  deluser --system --quiet ccm >/dev/null 2>&1 || fail "deluser ccm failed"
  getent group ccm >/dev/null && delgroup --system --quiet ccm >/dev/null
  made_user=0
fi

# ---- 5. the image
step "image (buildah, throwaway store in $work)"
storage=(--root "$work/storage" --runroot "$work/runroot" --storage-driver vfs)
tag=$(bash packaging/build-image.sh "$build" "${storage[@]}" 2>"$work/image.log") ||
  { cat "$work/image.log" >&2; fail "the image did not build"; }
archive=$build/image/ccm-image.oci.tar
image_size=$(buildah "${storage[@]}" images --format '{{.Size}}' "$tag")
echo "   $tag: $image_size; OCI archive $(($(stat -c %s "$archive") / 1024)) KiB"

# unpack_image ARCHIVE DIR: unpacks an OCI archive's layers, in order, into DIR/rootfs and
# writes the image's configuration (User, Entrypoint, Env, ExposedPorts) to DIR/config.env
# as shell assignments.
unpack_image() {
  mkdir -p "$2/oci" "$2/rootfs"
  tar -xf "$1" -C "$2/oci"
  python3 - "$2/oci" "$2/rootfs" >"$2/config.env" <<'EOF'
import json, shlex, subprocess, sys
oci, rootfs = sys.argv[1], sys.argv[2]
def blob(digest):
    return f"{oci}/blobs/{digest.replace(':', '/')}"
index = json.load(open(f"{oci}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
for layer in manifest["layers"]:
    subprocess.run(["tar", "--numeric-owner", "-xpf", blob(layer["digest"]), "-C", rootfs], check=True)
config = json.load(open(blob(manifest["config"]["digest"])))["config"]
print("image_user=" + shlex.quote(config.get("User", "")))
print("image_entrypoint=(" + " ".join(shlex.quote(a) for a in config.get("Entrypoint", [])) + ")")
print("image_env=(" + " ".join(shlex.quote(e) for e in config.get("Env", [])) + ")")
print("image_ports=" + shlex.quote(" ".join(sorted(config.get("ExposedPorts", {})))))
EOF
}
unpack_image "$archive" "$work"
# shellcheck disable=SC1091
source "$work/config.env"
[ "$image_user" = 65532:65532 ] || fail "the image's user is '$image_user', not 65532:65532"
[ "${image_entrypoint[*]}" = "/usr/bin/ccm serve" ] || fail "the image's entrypoint is '${image_entrypoint[*]}'"
[ "$image_ports" = 8080/tcp ] || fail "the image exposes '$image_ports', not 8080/tcp"
for e in CCM_LISTEN=0.0.0.0:8080 CCM_STORE=sqlite:/var/lib/ccm/ccm.db; do
  printf '%s\n' "${image_env[@]}" | grep -qx "$e" || fail "the image's Env lacks $e"
done
for shell in bin/sh bin/bash usr/bin/sh usr/bin/bash; do
  [ -e "$work/rootfs/$shell" ] && fail "the image holds a shell, /$shell"
done
[ "$(stat -c '%u:%g' "$work/rootfs/var/lib/ccm")" = 65532:65532 ] || fail "/var/lib/ccm in the image is not owned by 65532"
echo "   $(find "$work/rootfs" -type f | wc -l) files, $(du -sk "$work/rootfs" | cut -f1) KiB unpacked"

step "ccm from the image's filesystem, chroot --userspec=$image_user"
# The image has no env(1): the host's sets the image's environment, then chroot runs the
# command itself. The port is a free one on loopback: 8080 may be taken on this machine.
chroot=$(command -v chroot)
in_image() { env -i "${image_env[@]}" CCM_LISTEN=127.0.0.1:0 "$chroot" --userspec="$image_user" "$work/rootfs" "$@"; }
[ "$(in_image /usr/bin/ccm version)" = "ccm $version" ] || fail "ccm version in the image does not say ccm $version"
# No /proc, no /dev: ccm needs neither, and a runtime would provide both.
# exec: the background job's pid is ccm's, for the signal.
(exec env -i "${image_env[@]}" CCM_LISTEN=127.0.0.1:0 "$chroot" --userspec="$image_user" "$work/rootfs" \
  "${image_entrypoint[@]}" --insecure-no-auth --ready-file /var/lib/ccm/ready) >"$work/image-serve.log" 2>&1 &
pid=$!
where=$(wait_ready "$work/rootfs/var/lib/ccm/ready") || { cat "$work/image-serve.log" >&2; fail "ccm did not start in the image"; }
check_probes "$where"
[ -f "$work/rootfs/var/lib/ccm/ccm.db" ] || fail "no /var/lib/ccm/ccm.db in the image's filesystem"
stop_with_sigterm
echo "   served at $where, /health/live and /health/ready 200, stopped by SIGTERM with status 0"

step "the simulators' image, chroot --userspec=65532:65532"
unpack_image "$build/image-sims/ccm-sims-image.oci.tar" "$work/sims"
# cml-sim serves from the image with the OpenAPI document the image carries: its libraries
# and data are complete. The other two need the same libraries (one ldd set for all three).
(exec env -i "$chroot" --userspec=65532:65532 "$work/sims/rootfs" /usr/bin/cml-sim --ready-file /tmp/ready \
  --cml-schema /usr/share/ccm-sims/cml-2.9.openapi.json) >"$work/sims-serve.log" 2>&1 &
pid=$!
where=$(wait_ready "$work/sims/rootfs/tmp/ready") || { cat "$work/sims-serve.log" >&2; fail "cml-sim did not start in its image"; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"username":"admin","password":"cml-secret"}' "http://$where/api/v0/authenticate")
[ "$code" = 200 ] || fail "cml-sim in its image answered $code to POST /api/v0/authenticate"
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
pid=
for sim in assessment-sim oidc-sim; do
  env -i "$chroot" --userspec=65532:65532 "$work/sims/rootfs" "/usr/bin/$sim" --help >/dev/null ||
    fail "$sim does not run in its image"
done
echo "   cml-sim served at $where from the image; assessment-sim and oidc-sim run"

step "packaging/compose.yaml"
# Checked as Compose reads it (services, anchors, the secrets' files); not run: no container
# runtime here.
docker-compose -f packaging/compose.yaml config -q || fail "packaging/compose.yaml is not a valid Compose file"
echo "   valid: $(docker-compose -f packaging/compose.yaml config --services | tr '\n' ' ')"

step "passed in $(($(date +%s) - started)) s"
