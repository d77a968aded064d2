#!/usr/bin/env bash
# Installs the CloudEvents JavaScript SDK and the AsyncAPI parser (pinned in package.json) into
# DEST for the interop and documentation tests, from the npm registry. Idempotent: an install
# that is already there is kept.
set -euo pipefail
dest=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dest"
cp "$here/package.json" "$dest/package.json"
if [ -f "$dest/node_modules/cloudevents/package.json" ] && \
   grep -q '"version": "10.0.0"' "$dest/node_modules/cloudevents/package.json" && \
   [ -f "$dest/node_modules/@asyncapi/parser/package.json" ] && \
   grep -q '"version": "3.6.6"' "$dest/node_modules/@asyncapi/parser/package.json"; then
  echo "cloudevents SDK and AsyncAPI parser already installed in $dest"
  exit 0
fi
rm -rf "$dest/node_modules" "$dest/package-lock.json"
cd "$dest"
npm_config_update_notifier=false npm install --no-audit --no-fund --loglevel=error
