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
python -m pytest "$@"
