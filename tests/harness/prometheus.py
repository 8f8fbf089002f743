"""A real Prometheus (Debian's `prometheus`) for tests, and a small client for its HTTP API.

    prom = Prometheus(tmp_path, scrape_configs=[scrape_job("engine", "127.0.0.1:9450",
                      pod_labels(namespace="ns", pod="p-0", deployment="p"))]).start()
    prom.wait_targets_up()
    assert prom.value('sum(llm_prompt_tokens_total{namespace="ns"})') == 127
    prom.stop()

The server listens on 127.0.0.1 on a free port, keeps its TSDB in a temporary directory, and
runs with `--web.enable-lifecycle` so `reload()` can apply a changed configuration.
Retention is ten years, so history backfilled with `promtool.backfill` (or `history=`) is
never deleted as "too old" on start.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from inferwatch.deploy import sidecar
from tests.conftest import require_tool
from tests.harness import loopback, procs

Duration = str | float
Timestamp = float | datetime


class PrometheusError(RuntimeError):
    """The API refused a request (bad PromQL, bad config) or did not answer."""


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector."""

    labels: dict[str, str]
    value: float
    timestamp: float

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


@dataclass(frozen=True)
class Series:
    """One element of a range vector: its labels and (timestamp, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]

    @property
    def values(self) -> list[float]:
        return [v for _t, v in self.points]


def duration(value: Duration) -> str:
    """A Prometheus duration string from seconds (`1.5` -> `1500ms`) or a string as given."""
    if isinstance(value, str):
        return value
    return f"{round(value * 1000)}ms"


def pod_labels(
    *, namespace: str, pod: str, deployment: str, container: str = sidecar.CONTAINER_NAME
) -> dict[str, str]:
    """The target labels our PodMonitor gives a sidecar's target, for static scrape configs:
    `namespace`, `pod`, `container` from the pod, `deployment` relabelled from its
    `inferwatch.io/deployment` label."""
    return {"namespace": namespace, "pod": pod, "deployment": deployment, "container": container}


def scrape_job(
    job_name: str,
    targets: str | Sequence[str],
    labels: Mapping[str, str] | None = None,
    *,
    interval: Duration = "1s",
    timeout: Duration | None = None,
    metrics_path: str = "/metrics",
    **extra: Any,
) -> dict[str, Any]:
    """A scrape config with static `targets` ("host:port"), each given `labels`.

    `timeout` defaults to the interval (Prometheus refuses a timeout above it). `extra` keys go
    into the config as they are (e.g. `honor_labels=True`, `scheme="https"`).
    """
    if isinstance(targets, str):
        targets = [targets]
    group: dict[str, Any] = {"targets": list(targets)}
    if labels:
        group["labels"] = dict(labels)
    return {
        "job_name": job_name,
        "scrape_interval": duration(interval),
        "scrape_timeout": duration(timeout if timeout is not None else interval),
        "metrics_path": metrics_path,
        "static_configs": [group],
        **extra,
    }


def _unix(at: Timestamp) -> float:
    return at.timestamp() if isinstance(at, datetime) else float(at)


def _parse_result(data: dict[str, Any]) -> list[Sample] | float | list[Series] | str:
    kind, result = data["resultType"], data["result"]
    if kind == "vector":
        return [Sample(r["metric"], float(r["value"][1]), float(r["value"][0])) for r in result]
    if kind == "scalar":
        return float(result[1])
    if kind == "matrix":
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in result]
    return str(result[1])


class Prometheus:
    """One Prometheus server: configuration, process, and API helpers."""

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_configs: Iterable[Mapping[str, Any]] = (),
        rule_files: Iterable[Path | str] = (),
        alertmanager_url: str | None = None,
        scrape_interval: Duration = "1s",
        evaluation_interval: Duration = "1s",
        external_labels: Mapping[str, str] | None = None,
        storage: Path | None = None,
        retention: str = "3650d",
        extra_args: Sequence[str] = (),
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scrape_configs = [dict(c) for c in scrape_configs]
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.alertmanager_url = alertmanager_url
        self.scrape_interval = duration(scrape_interval)
        self.evaluation_interval = duration(evaluation_interval)
        self.external_labels = dict(external_labels or {})
        self.storage = Path(storage) if storage else self.workdir / "data"
        self.retention = retention
        self.extra_args = list(extra_args)
        self.config_path = self.workdir / "prometheus.yml"
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: procs.Proc | None = None

    # -- configuration and process ------------------------------------------------------

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "scrape_configs": self.scrape_configs,
        }
        if self.external_labels:
            config["global"]["external_labels"] = self.external_labels
        if self.rule_files:
            config["rule_files"] = [str(p) for p in self.rule_files]
        if self.alertmanager_url:
            parsed = urllib.parse.urlsplit(self.alertmanager_url)
            config["alerting"] = {
                "alertmanagers": [
                    {
                        "scheme": parsed.scheme or "http",
                        "path_prefix": parsed.path or "/",
                        "timeout": "5s",
                        "static_configs": [{"targets": [parsed.netloc]}],
                    }
                ]
            }
        return config

    def write_config(self) -> Path:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return self.config_path

    def start(self, timeout: float = 60.0) -> Prometheus:
        """Start and wait for /-/ready. `port` and `url` are final once this returns."""
        binary = require_tool("prometheus")
        self.storage.mkdir(parents=True, exist_ok=True)

        def launch(port: int) -> procs.Proc:
            self.port, self.url = port, f"http://127.0.0.1:{port}"
            self.write_config()
            args = [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.storage}",
                f"--storage.tsdb.retention.time={self.retention}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--web.enable-admin-api",
                # Alertmanagers are discovered up to 5s after start; alerts that fired before
                # that are re-sent on this delay (default 1m), so tests see notifications soon.
                "--rules.alert.resend-delay=1s",
                "--log.level=info",
                *self.extra_args,
            ]
            return procs.start(
                args,
                name=f"prometheus-{port}",
                workdir=self.workdir,
                ready_url=f"{self.url}/-/ready",
                ready_timeout=timeout,
            )

        self.proc = procs.on_free_port(launch, first=self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def __enter__(self) -> Prometheus:
        return self.start() if self.proc is None else self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def configure(
        self,
        *,
        scrape_configs: Iterable[Mapping[str, Any]] | None = None,
        rule_files: Iterable[Path | str] | None = None,
        alertmanager_url: str | None = None,
    ) -> None:
        """Change the configuration and apply it with `reload()`."""
        if scrape_configs is not None:
            self.scrape_configs = [dict(c) for c in scrape_configs]
        if rule_files is not None:
            self.rule_files = [Path(p).resolve() for p in rule_files]
        if alertmanager_url is not None:
            self.alertmanager_url = alertmanager_url
        self.write_config()
        self.reload()

    def reload(self) -> None:
        """Re-read the configuration and rule files; raise with Prometheus' reason if refused."""
        try:
            self._request("POST", "/-/reload")
        except PrometheusError as exc:
            raise PrometheusError(f"reload of {self.config_path} refused: {exc}") from None

    # -- HTTP API --------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, timeout: float = 30
    ) -> bytes:
        data = None
        url = self.url + path
        if params:
            encoded = urllib.parse.urlencode(params, doseq=True)
            if method == "GET":
                url += "?" + encoded
            else:
                data = encoded.encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with loopback.urlopen(request, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            try:
                doc = json.loads(body)
                reason = f"{doc.get('errorType')}: {doc.get('error')}"
            except ValueError:
                reason = body.strip() or exc.reason
            raise PrometheusError(f"{method} {path} -> HTTP {exc.code}: {reason}") from None
        except (OSError, urllib.error.URLError) as exc:
            raise PrometheusError(f"{method} {url}: {exc}") from None

    def api(self, path: str, params: Mapping[str, Any] | None = None, method: str = "GET") -> Any:
        """The `data` of an /api/v1 answer; raise `PrometheusError` on an error status."""
        doc = json.loads(self._request(method, "/api/v1/" + path.lstrip("/"), params))
        if doc.get("status") != "success":
            raise PrometheusError(f"{path}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str, at: Timestamp | None = None) -> list[Sample] | float | str:
        """An instant query: a list of `Sample` for a vector, a float for a scalar."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = _unix(at)
        try:
            return _parse_result(self.api("query", params, method="POST"))  # type: ignore[return-value]
        except PrometheusError as exc:
            raise PrometheusError(f"query {expr!r}: {exc}") from None

    def vector(self, expr: str, at: Timestamp | None = None) -> list[Sample]:
        """An instant query that must give a vector."""
        result = self.query(expr, at)
        if not isinstance(result, list):
            raise PrometheusError(f"query {expr!r}: expected a vector, got {result!r}")
        return result

    def value(self, expr: str, at: Timestamp | None = None) -> float:
        """The value of an instant query that gives one sample (or a scalar)."""
        result = self.query(expr, at)
        if isinstance(result, float):
            return result
        if not isinstance(result, list) or len(result) != 1:
            raise PrometheusError(f"query {expr!r}: expected one sample, got {result!r}")
        return result[0].value

    def query_range(
        self, expr: str, start: Timestamp, end: Timestamp, step: Duration
    ) -> list[Series]:
        params = {"query": expr, "start": _unix(start), "end": _unix(end), "step": duration(step)}
        try:
            return _parse_result(self.api("query_range", params, method="POST"))  # type: ignore[return-value]
        except PrometheusError as exc:
            raise PrometheusError(f"query_range {expr!r}: {exc}") from None

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[Any], bool] = bool,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> Any:
        """Poll `query(expr)` until `predicate(result)` is true; that result.

        A PromQL error fails at once; an unreachable server is retried until the timeout,
        which raises `TimeoutError` with the last result.
        """
        deadline = time.monotonic() + timeout
        last: Any = "no answer"
        while True:
            try:
                last = self.query(expr)
                if predicate(last):
                    return last
            except PrometheusError as exc:
                if "bad_data" in str(exc):
                    raise
                last = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{expr!r} not satisfied after {timeout:.0f}s; last: {last!r}")
            time.sleep(interval)

    def targets(self, state: str = "active") -> list[dict[str, Any]]:
        data = self.api("targets", {"state": state})
        return data["activeTargets"] if state == "active" else data["droppedTargets"]

    def wait_targets_up(self, timeout: float = 30.0, jobs: Iterable[str] | None = None) -> list:
        """Wait until every active target (of `jobs`, if given) was scraped and is up.

        Prometheus batches target discovery in 5-second rounds, so new targets (at start or
        after `reload()`) take about that long to appear."""
        wanted = set(jobs) if jobs is not None else None
        deadline = time.monotonic() + timeout
        while True:
            chosen = [
                t for t in self.targets() if wanted is None or t["labels"].get("job") in wanted
            ]
            if chosen and all(t["health"] == "up" for t in chosen):
                return chosen
            if time.monotonic() >= deadline:
                summary = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in chosen]
                raise TimeoutError(f"targets not all up after {timeout:.0f}s: {summary}")
            time.sleep(0.2)

    def rules(self, type: str | None = None) -> list[dict[str, Any]]:
        """Rule groups as loaded (`type`: "alert" or "record" to filter)."""
        return self.api("rules", {"type": type} if type else None)["groups"]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing)."""
        return self.api("alerts")["alerts"]

    def series(
        self, match: str, start: Timestamp | None = None, end: Timestamp | None = None
    ) -> list[dict[str, str]]:
        params: dict[str, Any] = {"match[]": match}
        if start is not None:
            params["start"] = _unix(start)
        if end is not None:
            params["end"] = _unix(end)
        return self.api("series", params, method="POST")

    def label_values(self, label: str) -> list[str]:
        return self.api(f"label/{urllib.parse.quote(label)}/values")
