#!/usr/bin/env bash
# Set up (idempotent) and run the whole stack on the simulated arm, then print the health report.
#   bash scripts/demo.sh [--duration SECONDS] [other `ramp up` options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/env.sh"
cd "$ROOT"
ramp up --robot sim --duration 30 --report report.json "$@"
ramp summary report.json
