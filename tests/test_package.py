"""Packaging: the sidecar stays light, and a wheel built from the repo works on its own."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

from tests.conftest import ROOT, UPSTREAM
from tests.harness.procs import free_port

HEAVY = (
    "pandas",
    "matplotlib",
    "fastapi",
    "kubernetes",
    "prometheus_api_client",
    "grafanalib",
    "numpy",
    "uvicorn",
    "starlette",
)


def test_the_sidecar_process_loads_no_typer_pydantic_or_aiohttp() -> None:
    """`inferwatch exporter` runs in every pod: argparse and the standard library only."""
    code = (
        "import sys, threading, os, json\n"
        "def report():\n"
        "    import time; time.sleep(2)\n"
        "    mods = {m.split('.')[0] for m in sys.modules}\n"
        "    print(json.dumps(sorted(mods & {'typer', 'pydantic', 'aiohttp', 'yaml', 'rich'})))\n"
        "    sys.stdout.flush(); os._exit(0)\n"
        "threading.Thread(target=report, daemon=True).start()\n"
        "from inferwatch.cli import main\n"
        "main(['exporter', '--upstream', 'http://127.0.0.1:9', '--engine', 'vllm',\n"
        f"      '--listen', '127.0.0.1:{free_port()}'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == [], out.stderr


def test_cli_and_exporter_imports_stay_light() -> None:
    code = (
        "import sys, json\n"
        "import inferwatch.cli, inferwatch.exporters.server, inferwatch.exporters.sources\n"
        f"print(json.dumps(sorted(set(sys.modules) & set({list(HEAVY)!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_wheel_with_exporter_extra_installs_light_and_runs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("inferwatch-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"{wheel}[exporter]"], check=True, timeout=600
    )
    listed = subprocess.run(
        [str(py), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not installed & {"pandas", "matplotlib", "fastapi", "kubernetes", "numpy"}
    # Imported from site-packages, not from the checkout, and no generic top-level names.
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import inferwatch.exporters, importlib.util as u; "
            "print(inferwatch.exporters.__file__); "
            "print([n for n in ('exporters','slo','alerts','dashboards','deploy')"
            " if u.find_spec(n)])",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    path, generic = where.stdout.splitlines()
    assert "site-packages" in path
    assert generic == "[]"
    out = subprocess.run(
        [
            str(env_dir / "bin" / "inferwatch"),
            "normalize",
            str(UPSTREAM / "vllm-0.32.0-cpu-tiny-real.prom"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "llm_prompt_tokens_total{" in out.stdout
    help_out = subprocess.run(
        [str(env_dir / "bin" / "inferwatch"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert help_out.returncode == 0, help_out.stderr
