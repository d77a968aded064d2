#!/usr/bin/env bash
# Installs the Debian 12 packages that ccm's build, tests, benchmarks and demo need; with
# `fuzz`, also clang and its libFuzzer runtime (`make fuzz`); with `coverage`, gcovr; with
# `package`, what `make package`, `make image` and `make check-package` use (dpkg-shlibdeps,
# objcopy, file, adduser, systemd-analyze, buildah, the CA certificates the image carries,
# bash-completion to try the completion, docker-compose to check packaging/compose.yaml).
# Idempotent: packages already present are left alone, and `apt-get update` runs at most
# once, only when something is missing. etcd-server is the etcd the tests of the etcd store
# start on loopback ports, and etcd-client's etcdctl creates their users and roles and is the
# gRPC load of the etcd benchmark (bench/compare.sh); gRPC and protobuf are how ccm speaks to
# etcd, from etcd's own .proto files (and the gogoproto and Google API annotations they
# import), which Debian ships in the Go source packages of etcd, gogo-protobuf and
# grpc-gateway and the build turns into C++; openssl makes the certificates of the CML TLS
# tests; libsystemd-dev gives `ccm serve` sd_notify (readiness, watchdog and stopping under a Type=notify unit);
# prometheus brings promtool, which checks and tests the alerting rules; prometheus-cpp-dev is
# the metrics registry and text exposition behind /metrics; chromium is the browser the
# console's test drives headless (tests/console).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libboost-dev libboost-system-dev
  libcurl4-openssl-dev libssl-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  golang-etcd-server-dev golang-github-gogo-protobuf-dev golang-github-grpc-ecosystem-grpc-gateway-dev
  nlohmann-json3-dev libyaml-cpp-dev libsqlite3-dev
  libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  curl python3 python3-yaml wrk openssl
  etcd-server etcd-client
  libsystemd-dev
  prometheus prometheus-cpp-dev
  chromium
)

for extra in "$@"; do
  case "$extra" in
    fuzz) packages+=(clang libclang-rt-14-dev) ;;
    coverage) packages+=(gcovr) ;;
    package) packages+=(dpkg-dev binutils file adduser systemd buildah ca-certificates bash-completion docker-compose) ;;
    *) echo "install-deps: unknown group $extra (fuzz, coverage, package)" >&2; exit 2 ;;
  esac
done

# The interop tests read ccm's events with the official CloudEvents JavaScript SDK: Node.js
# and npm come from Debian when the machine has none.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
