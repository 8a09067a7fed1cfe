#!/usr/bin/env bash
# The README's test command: the whole suite with line coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || ./scripts/setup.sh
exec .venv/bin/pytest -n auto --cov=syncflow_core --cov=syncflow_dagster --cov-report=term:skip-covered "$@"
