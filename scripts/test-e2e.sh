#!/usr/bin/env bash
# The end-to-end suite alone: a real vLLM (CPU build, installed into .cache/ or
# $INFERWATCH_CACHE on first use), the sidecar, Prometheus with the generated rules, Alertmanager,
# and `inferwatch demo --real-vllm`. Prints the measured figures at the end. scripts/test.sh runs
# it too, with everything else. Extra arguments go to pytest, e.g. scripts/test-e2e.sh -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
exec .venv/bin/pytest tests/e2e "$@"
