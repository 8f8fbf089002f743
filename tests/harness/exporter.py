"""The real sidecar, `inferwatch exporter`, as a subprocess on a free loopback port.

exp = ExporterProcess(tmp_path, upstream=page.url, timeout=1.0,
                      env={"POD_NAME": "p-0", "POD_NAMESPACE": "ns"}).start()
status, body, seconds = exp.get("/metrics")
exp.stop()
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.harness import loopback, procs


def inferwatch_command() -> list[str]:
    """The `inferwatch` console script of the environment running the tests."""
    script = Path(sys.executable).parent / "inferwatch"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from inferwatch.cli import main; main()"]


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    seconds: float
    headers: dict[str, str]


class ExporterProcess:
    """One `inferwatch exporter` process and an HTTP client for its endpoints."""

    def __init__(
        self,
        workdir: Path,
        *,
        upstream: str | None = None,
        dcgm: str | None = None,
        engine: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ):
        self.workdir = Path(workdir)
        self._set_port(procs.free_port())
        self.options: list[str] = []
        if upstream:
            self.options += ["--upstream", upstream]
        if dcgm:
            self.options += ["--dcgm", dcgm]
        if engine:
            self.options += ["--engine", engine]
        if timeout is not None:
            self.options += ["--timeout", str(timeout)]
        self.options += list(extra_args)
        # The pod identity comes from the Downward API in a real pod; unset here unless given.
        self.env = {
            "POD_NAME": "",
            "POD_NAMESPACE": "",
            "NVIDIA_VISIBLE_DEVICES": "",
            "INFERWATCH_GPU_UUIDS": "",
            **(env or {}),
        }
        self.proc: procs.Proc | None = None

    def _set_port(self, port: int) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"

    def start(self, timeout: float = 30.0) -> ExporterProcess:
        """Start and wait for /healthz. `port`, `address` and `url` are final once this returns."""

        def launch(port: int) -> procs.Proc:
            self._set_port(port)
            return procs.start(
                [*inferwatch_command(), "exporter", "--listen", self.address, *self.options],
                name=f"exporter-{port}",
                workdir=self.workdir,
                env=self.env,
                ready_url=f"{self.url}/healthz",
                ready_timeout=timeout,
            )

        self.proc = procs.on_free_port(launch, first=self.port)
        return self

    def stop(self, grace: float = 10.0) -> int | None:
        return self.proc.stop(grace) if self.proc is not None else None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def rss_bytes(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.rss_bytes()

    def get(
        self,
        path: str = "/metrics",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Answer:
        """GET `path`; the status, body and how long the answer took (errors included)."""
        request = urllib.request.Request(self.url + path, headers=dict(headers or {}))
        start = time.perf_counter()
        try:
            with loopback.urlopen(request, timeout=timeout) as resp:
                body = resp.read().decode()
                status, got = resp.status, dict(resp.headers.items())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            status, got = exc.code, dict(exc.headers.items())
        return Answer(status, body, time.perf_counter() - start, got)

    def metrics(self, headers: Mapping[str, str] | None = None) -> Answer:
        """A scrape of /metrics that must succeed (HTTP 200)."""
        answer = self.get("/metrics", headers)
        if answer.status != 200:
            raise AssertionError(f"/metrics answered {answer.status}: {answer.body[:500]}")
        return answer


def sample_value(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name{labels...}` (labels matched as a subset) in an exposition
    text, or None when there is none; raises if several samples match."""
    from prometheus_client.parser import text_string_to_metric_families

    found = [
        s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples match {name}{labels}: {found}")
    return found[0] if found else None
