#!/usr/bin/env bash
# The main job (`make demo`): a full lablet lifecycle against the bundled simulators, printing
# the CloudEvents as the sink receives them. See scripts/demo.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec python3 "$root/scripts/demo.py" "${1:-build}"
