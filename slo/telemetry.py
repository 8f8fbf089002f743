"""The SLO service's own metrics (`GET /metrics`), in a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from inferwatch import __version__


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inferwatch_slo_requests",
            "API requests answered, by route template and status code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "inferwatch_slo_request_duration_seconds",
            "Time to answer an API request, by route template.",
            ["route"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.queries = Counter(
            "inferwatch_slo_prometheus_queries",
            "PromQL queries sent, by kind (instant, range) and outcome (ok, error, refused).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.query_seconds = Histogram(
            "inferwatch_slo_prometheus_query_duration_seconds",
            "Time Prometheus took to answer a query.",
            ["kind"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.slos = Gauge(
            "inferwatch_slo_specs", "SLO specs the service loaded.", registry=self.registry
        )
        build = Gauge(
            "inferwatch_slo_build_info",
            "inferwatch build information (value 1).",
            ["version"],
            registry=self.registry,
        )
        build.labels(__version__).set(1)

    def on_query(self, kind: str, seconds: float, outcome: str) -> None:
        self.queries.labels(kind, outcome).inc()
        self.query_seconds.labels(kind).observe(seconds)
