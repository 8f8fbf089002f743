"""`inferwatch demo --real-vllm`: a real vLLM, its sidecar and Prometheus under a load in waves,
started and stopped as a user would, leaving nothing running."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import realvllm
from tests.harness.exporter import inferwatch_command

DURATION = 45  # seconds after the start: both waves, below and above --max-num-seqs
SUMMARY = re.compile(r"^  tiny\s+vllm\s+run\s+(\d+)\s+wait\s+(\d+)\s+kv\s+\d+%\s+done\s+([\d.]+)/s")
WAVE = re.compile(r"^  load\s+(\d+) streams for \d+ s: (\d+) requests  \(ttft p50")


def _out(tmp_path: Path) -> Path:
    """What the demo keeps (specs, rules, advice, previews): beside its temporary folder."""
    return tmp_path.with_name(tmp_path.name + "-out")


def demo(tmp_path: Path, cache: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "INFERWATCH_CACHE": str(cache), "TMPDIR": str(tmp_path)}
    return subprocess.run(
        [*inferwatch_command(), "demo", "--real-vllm", "--out", str(_out(tmp_path)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def ours(tmp_path: Path) -> list[int]:
    """Processes whose environment points into `tmp_path`: the demo's children inherit it."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if str(tmp_path).encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short path: vLLM's socket paths must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="iw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_the_demo_runs_a_real_vllm_under_waves_and_stops_clean(vllm_install, short_tmp):
    tmp_path = short_tmp
    cache = vllm_install.venv.parent.parent  # INFERWATCH_CACHE/vllm-0.32.0/venv
    done = demo(tmp_path, cache, "--duration", str(DURATION), "--summary-every", "5", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "inferwatch demo: a real vLLM on this machine's CPU" in out
    assert "tiny sidecar (normalized)" in out and "Prometheus" in out
    assert out.rstrip().endswith("inferwatch demo: stopped")
    summaries = [tuple(map(float, m.groups())) for line in out.splitlines()
                 if (m := SUMMARY.match(line))]  # fmt: skip
    waves = {int(m.group(1)): int(m.group(2)) for line in out.splitlines()
             if (m := WAVE.match(line))}  # fmt: skip
    assert len(summaries) >= DURATION // 5 - 2
    # The engine's own figures, through the sidecar: the batch at its limit, then a queue.
    assert max(run for run, _, _ in summaries) == realvllm.MAX_NUM_SEQS
    assert max(wait for _, wait, _ in summaries) > 0
    assert any(rate > 0 for _, _, rate in summaries)
    assert set(waves) == {2, 3 * realvllm.MAX_NUM_SEQS} and all(waves.values())
    assert ours(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # the demo's temporary folder is gone too


def test_an_unwritable_cache_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    done = demo(tmp_path, blocker, "--duration", "5", timeout=60)
    assert done.returncode == 1
    assert f"inferwatch demo: cannot install vLLM into {blocker}/vllm-0.32.0" in done.stderr
    assert "Traceback" not in done.stderr
    assert ours(tmp_path) == []


@pytest.mark.e2e
def test_a_tmpdir_too_long_for_vllm_is_a_clear_error(vllm_install, tmp_path):
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    done = demo(deep, vllm_install.venv.parent.parent, "--duration", "5", timeout=120)
    assert done.returncode == 1
    assert "a Unix socket's path allows 70 there: set TMPDIR to a shorter folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert ours(deep) == [] and list(deep.iterdir()) == []
