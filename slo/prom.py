"""Querying Prometheus (or any Prometheus-compatible API: Thanos, Mimir, VictoriaMetrics)
through prometheus-api-client, within a deadline.

Every request of the SLO service has one deadline (`Deadline`), shared by its queries, which
run in parallel: a Prometheus that is down, slow or answers garbage turns into
`PrometheusUnavailable` before the deadline, never into a hung request or a stack trace. A
query Prometheus refuses as bad PromQL is `QueryRefused` (a bug of ours: names are validated
and escaped before they reach a query). Retries are off: a retry would outlive the deadline.

Every query sent is counted and kept in `log` (the last `LOG_SIZE`), so tests can assert the
exact PromQL that reached Prometheus and benchmarks can count queries.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ipaddress
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LOG_SIZE = 2000
MAX_PARALLEL = 8


class PrometheusUnavailable(RuntimeError):
    """Prometheus is down, too slow, or answered something that is not its API."""


class QueryRefused(RuntimeError):
    """Prometheus refused a query (HTTP 400/422): the query was wrong."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Query:
    """One query of a batch: instant at `at`, or a range from `start` to `at` every `step`."""

    expr: str
    at: float
    start: float | None = None
    step: float | None = None


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> float:
        left = self.remaining()
        if left <= 0:
            raise PrometheusUnavailable(
                f"Prometheus did not answer within {self.seconds:g}s ({what})"
            )
        return left


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


class Prometheus:
    """A Prometheus HTTP API client with a deadline, parallel batches and a query log."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 4.0,
        headers: Mapping[str, str] | None = None,
        verify: bool = True,
    ):
        import requests
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"--prometheus {url!r}: expected an http(s) URL, e.g. http://prometheus:9090"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        session = requests.Session()
        # A proxy from the environment must never see loopback traffic.
        session.trust_env = not _is_loopback(self.url)
        self._client = PrometheusConnect(
            url=self.url,
            headers=dict(headers or {}),
            disable_ssl=not verify,
            retry=Retry(total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False),
            session=session,
            method="POST",
        )
        self._lock = threading.Lock()
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_SIZE)
        self.count = 0
        self.on_query: Callable[[str, float, str], None] | None = None  # kind, seconds, outcome
        self._pool = concurrent.futures.ThreadPoolExecutor(
            MAX_PARALLEL, thread_name_prefix="prometheus"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # ---- one query ------------------------------------------------------------------------

    def _record(self, expr: str) -> None:
        with self._lock:
            self.count += 1
            self.log.append(expr)

    def _call(self, q: Query, deadline: Deadline) -> list[Any]:
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        timeout = min(self.timeout, deadline.check("before sending a query"))
        self._record(q.expr)
        kind = "range" if q.start is not None else "instant"
        started = time.perf_counter()
        outcome = "error"
        try:
            if q.start is None:
                result = self._client.custom_query(q.expr, params={"time": q.at}, timeout=timeout)
            else:
                result = self._client.custom_query_range(
                    q.expr,
                    start_time=datetime.fromtimestamp(q.start, UTC),
                    end_time=datetime.fromtimestamp(q.at, UTC),
                    step=f"{q.step:g}s",
                    timeout=timeout,
                )
            outcome = "ok"
        except PrometheusApiClientException as exc:
            status = _status(str(exc))
            if status in (400, 422):
                outcome = "refused"
                raise QueryRefused(
                    f"Prometheus refused a query ({_reason(str(exc))}): {q.expr}"
                ) from None
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered HTTP {status or '?'}: {_reason(str(exc))}"
            ) from None
        except requests.Timeout:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} did not answer within {timeout:.1f}s"
            ) from None
        except requests.JSONDecodeError:
            raise PrometheusUnavailable(
                f"{self.url} did not answer as a Prometheus API: the body is not JSON"
            ) from None
        except requests.RequestException as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} is unreachable: {_short(exc)}"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise PrometheusUnavailable(
                f"{self.url} did not answer as a Prometheus API: {_short(exc)}"
            ) from None
        finally:
            if self.on_query is not None:
                self.on_query(kind, time.perf_counter() - started, outcome)
        if not isinstance(result, list):
            raise PrometheusUnavailable(f"{self.url} did not answer as a Prometheus API")
        return result

    def instant(self, expr: str, at: float, deadline: Deadline) -> list[Sample]:
        return _samples(self._call(Query(expr, at), deadline))

    def range(
        self, expr: str, start: float, end: float, step: float, deadline: Deadline
    ) -> list[RangeSeries]:
        return _series(self._call(Query(expr, end, start, step), deadline))

    def ready(self, deadline: Deadline) -> None:
        """Raise PrometheusUnavailable unless a trivial query succeeds."""
        self.instant("vector(1)", time.time(), deadline)

    # ---- a batch, in parallel ---------------------------------------------------------------

    def batch(
        self, queries: Mapping[str, Query], deadline: Deadline
    ) -> dict[str, list[Sample] | list[RangeSeries]]:
        """Run every query in parallel; the first failure fails the batch."""
        futures = {
            self._pool.submit(self._call, q, deadline): (key, q) for key, q in queries.items()
        }
        out: dict[str, list[Sample] | list[RangeSeries]] = {}
        try:
            done, pending = concurrent.futures.wait(
                futures, timeout=max(0.0, deadline.remaining()), return_when="FIRST_EXCEPTION"
            )
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
            if pending:
                raise PrometheusUnavailable(
                    f"Prometheus at {self.url} did not answer within {deadline.seconds:g}s"
                )
            for future, (key, q) in futures.items():
                raw = future.result()
                out[key] = _samples(raw) if q.start is None else _series(raw)
        finally:
            for future in futures:
                future.cancel()
        return out


def _samples(raw: list[Any]) -> list[Sample]:
    out = []
    for item in raw:
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, list) or len(value) != 2:
            raise PrometheusUnavailable("the answer is not an instant vector")
        # The decoded answer is ours alone: its label dicts need no copy.
        out.append(Sample(item.get("metric") or {}, _number(value[1])))
    return out


def _series(raw: list[Any]) -> list[RangeSeries]:
    out = []
    for item in raw:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            raise PrometheusUnavailable("the answer is not a range vector")
        points = [(float(t), _number(v)) for t, v in values]
        out.append(RangeSeries(item.get("metric") or {}, points))
    return out


_STATUS = re.compile(r"HTTP Status Code (\d{3})")


def _status(message: str) -> int | None:
    m = _STATUS.search(message)
    return int(m.group(1)) if m else None


def _reason(message: str) -> str:
    m = re.search(r'"error":\s*"((?:[^"\\]|\\.)*)"', message)
    text = m.group(1) if m else message
    return text[:300]


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
