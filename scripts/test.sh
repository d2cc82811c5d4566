#!/usr/bin/env bash
# Set up (or update) .venv/ and run the whole test suite.
#   bash scripts/test.sh [pytest args...]     e.g. bash scripts/test.sh -k interfaces
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec "$ROOT/.venv/bin/python" -m pytest tests "$@"
