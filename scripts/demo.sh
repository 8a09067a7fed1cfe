#!/usr/bin/env bash
# The README's main command: install, generate the demo ERP, sync it through Dagster twice
# (initial load, then one business day of changes) and print a summary per entity.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/dagster ] || ./scripts/setup.sh
exec .venv/bin/python -m syncflow_dagster.demo "$@"
