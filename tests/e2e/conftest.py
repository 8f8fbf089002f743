"""Fixtures for the end-to-end tests against a real vLLM (see realvllm.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.e2e import realvllm
from tests.e2e.stack import Stack


@pytest.fixture(scope="session")
def vllm_install() -> realvllm.Installation:
    """vLLM 0.32.0 and the tiny model, installed into the cache when missing.

    A failed install fails the run in CI (where it must work) and skips locally (no network,
    say), with pip's last lines either way."""
    try:
        return realvllm.ensure_installed()
    except realvllm.InstallError as exc:
        message = f"cannot install vLLM {realvllm.VLLM_VERSION} for the e2e tests: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


# Package scope: the server (1.2 GB, an engine core) and the chain in front of it are stopped
# once the last e2e test has run, not left idling through the rest of the suite.
@pytest.fixture(scope="package")
def real_vllm(
    request: pytest.FixtureRequest,
    vllm_install: realvllm.Installation,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[realvllm.VllmServer]:
    """A running vLLM shared by the e2e tests. Its options (`max_num_seqs`,
    `kv_cache_memory_bytes`, ... of `realvllm.start_server`) can be set by indirect
    parametrization: `@pytest.mark.parametrize("real_vllm", [{"max_num_seqs": 2}],
    indirect=True)` starts one server per distinct set."""
    options = getattr(request, "param", {})
    server = realvllm.start_server(vllm_install, Path(tmp_path_factory.mktemp("vllm")), **options)
    yield server
    server.stop()


@pytest.fixture(scope="package")
def stack(
    real_vllm: realvllm.VllmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The sidecar, Prometheus with the generated rules, Alertmanager and a webhook receiver in
    front of the session's vLLM (see stack.py). Stopped by PID at the end of the session, and
    checked to be gone."""
    chain = Stack.start(real_vllm, Path(tmp_path_factory.mktemp("stack")))
    yield chain
    pids = chain.processes()
    chain.stop()
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    assert left == [], f"still running after stop: {left}"


def _zombie(pid: int) -> bool:
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


# The run's measured figures (counts, latency agreement, alert timing, advice, dashboard
# coverage), shown at the end of the run and written as JSON beside the run's temporary files.
REPORT = pytest.StashKey[dict[str, list[str]]]()


@pytest.fixture(scope="session")
def e2e_report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, list[str]]]:
    sections: dict[str, list[str]] = {}
    request.config.stash[REPORT] = sections
    yield sections
    path = tmp_path_factory.getbasetemp() / "e2e-report.json"
    path.write_text(json.dumps(sections, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    sections = config.stash.get(REPORT, None)
    if not sections:
        return
    terminalreporter.section("inferwatch against a real vLLM: what was measured")
    for title, lines in sections.items():
        terminalreporter.write_line(title)
        for line in lines:
            terminalreporter.write_line("  " + line)
