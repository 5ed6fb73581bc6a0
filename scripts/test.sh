#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite plus the linter:  bash scripts/test.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/env.sh"
cd "$ROOT"
ruff check .
ruff format --check . >/dev/null || { ruff format --diff . | head -50; echo "ruff format: files need formatting"; exit 1; }
# A hard bound on the whole session (about 4 min on 2 cores): whatever wedges, CI gets the output
# and an exit code long before its own limit.
timeout --foreground --kill-after=60 2400 python -m pytest "$@" || {
  rc=$?
  [ "$rc" -ne 124 ] || echo "pytest did not finish within 2400 s (scripts/test.sh)" >&2
  exit "$rc"
}
