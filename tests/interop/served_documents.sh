#!/usr/bin/env bash
# The documents a running ccm serves: /openapi.json is valid OpenAPI 3.1 (an OpenAPI
# validator from npm), and /asyncapi.yaml is docs/asyncapi.yaml as the AsyncAPI parser
# checks it (docs_asyncapi_is_valid), byte for byte; both without a token.
# Usage: served_documents.sh CCM_BINARY NODE_MODULES_DIR ASYNCAPI_YAML
set -euo pipefail
ccm=$1 modules=$2 asyncapi=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Authentication on (no JWKS): the documents are public, everything else would be 401.
CCM_STORE="sqlite:$work/ccm.db" CCM_LISTEN=127.0.0.1:0 CCM_LOG_LEVEL=error CCM_RECONCILERS=false \
  "$ccm" serve --ready-file "$work/ready" &
pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.05; done
base="http://$(cat "$work/ready")"
curl -sS --fail-with-body -o "$work/openapi.json" "$base/openapi.json"
curl -sS --fail-with-body -o "$work/asyncapi.yaml" -D "$work/asyncapi.headers" "$base/asyncapi.yaml"
node "$here/openapi_validate.mjs" "$work/openapi.json" "$modules"
cmp "$work/asyncapi.yaml" "$asyncapi" || { echo "/asyncapi.yaml differs from $asyncapi" >&2; exit 1; }
grep -qi '^content-type: application/yaml' "$work/asyncapi.headers" ||
  { echo "/asyncapi.yaml is not served as application/yaml" >&2; exit 1; }
echo "/asyncapi.yaml is $asyncapi ($(wc -c <"$asyncapi") bytes, application/yaml)"
