#!/usr/bin/env bash
# The whole test suite: lint, every test (real Prometheus, Alertmanager, promtool, real vLLM),
# and the check that committed generated artifacts are up to date. Installs what it needs.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/test_normalize.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
