#!/usr/bin/env bash
# Installs the npm packages the interop and documentation tests use (the CloudEvents
# JavaScript SDK, the AsyncAPI parser, an OpenAPI validator), exactly as
# tests/interop/package-lock.json pins them and their dependencies (or those of SRC, such as
# tests/console), into DEST, from the npm
# registry (`npm ci`). Idempotent: an install made from the same lock file is kept.
set -euo pipefail
dest=$1
# SRC (optional): the folder holding package.json and package-lock.json; default this one.
here=$(cd "${2:-$(dirname "$0")}" && pwd)
mkdir -p "$dest"
if [ -d "$dest/node_modules" ] && cmp -s "$here/package-lock.json" "$dest/installed-from.lock.json"; then
  echo "npm packages of $here/package-lock.json already installed in $dest"
  exit 0
fi
rm -rf "$dest/node_modules" "$dest/installed-from.lock.json"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
npm_config_update_notifier=false npm ci --no-audit --no-fund --loglevel=error
cp "$here/package-lock.json" "$dest/installed-from.lock.json"
