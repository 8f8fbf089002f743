"""Fixtures for the end-to-end tests against a real vLLM (see realvllm.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.e2e import realvllm


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


@pytest.fixture(scope="session")
def real_vllm(
    request: pytest.FixtureRequest,
    vllm_install: realvllm.Installation,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[realvllm.VllmServer]:
    """A running vLLM shared by the session. Its options (`max_num_seqs`,
    `kv_cache_memory_bytes`, ... of `realvllm.start_server`) can be set by indirect
    parametrization: `@pytest.mark.parametrize("real_vllm", [{"max_num_seqs": 2}],
    indirect=True)` starts one server per distinct set."""
    options = getattr(request, "param", {})
    server = realvllm.start_server(vllm_install, Path(tmp_path_factory.mktemp("vllm")), **options)
    yield server
    server.stop()
