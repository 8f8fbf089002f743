#!/usr/bin/env bash
# The main job: `inferwatch demo` on embedded defaults (engine simulators, the sidecar,
# Prometheus, the SLO service). Installs what it needs. Extra arguments go to `inferwatch demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh all
exec .venv/bin/inferwatch demo "$@"
