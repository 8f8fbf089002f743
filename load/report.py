"""What a load run measured: per-request results, and the report built from them.

Latencies are client-side and in seconds:

- TTFT: from sending the request to the first chunk that carries output (streaming only).
- ITL: between consecutive chunks that carry output, one sample per gap (streaming only).
- TPOT: per request, (e2e - TTFT) / (completion tokens - 1) (streaming, 2+ tokens).
- E2E: from sending the request to the end of the response.

Token counts are the server's own, from the `usage` of each successful response.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from inferwatch.load.spec import LoadSpec
from inferwatch.load.stats import Summary

# The kinds of failure a request can end in, besides `http_<status>`.
TIMEOUT = "timeout"  # no complete response within --timeout
CONNECTION = "connection"  # refused, reset, or closed before the response was complete
INVALID_RESPONSE = "invalid_response"  # not the OpenAI protocol (bad JSON, SSE, shape)
STREAM_ERROR = "stream_error"  # the server sent an error object inside a 200 stream
INCOMPLETE_STREAM = "incomplete_stream"  # the stream ended without `data: [DONE]`


def http_error(status: int) -> str:
    return f"http_{status}"


@dataclass
class RequestResult:
    """One request: when it ran, what it got, or why it failed."""

    start: float  # perf_counter seconds
    end: float
    error: str | None = None  # one of the kinds above, or http_<status>; None when it succeeded
    first_token: float | None = None  # perf_counter seconds of the first output chunk
    itls: list[float] = field(default_factory=list)
    chunks: int = 0  # streamed chunks that carried output
    prompt_tokens: int | None = None  # from `usage`
    completion_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def e2e(self) -> float:
        return self.end - self.start

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.start

    @property
    def tpot(self) -> float | None:
        tokens = self.completion_tokens if self.completion_tokens is not None else self.chunks
        if self.first_token is None or tokens < 2:
            return None
        return (self.end - self.first_token) / (tokens - 1)


@dataclass
class LoadReport:
    """The outcome of a load run (see `to_dict` for the JSON shape)."""

    spec: LoadSpec
    model: str
    duration: float  # seconds from the first request sent to the last one finished
    results: list[RequestResult]

    @property
    def succeeded(self) -> list[RequestResult]:
        return [r for r in self.results if r.ok]

    @property
    def requests(self) -> int:
        return len(self.results)

    @property
    def requests_ok(self) -> int:
        return len(self.succeeded)

    @property
    def requests_failed(self) -> int:
        return self.requests - self.requests_ok

    @property
    def errors(self) -> dict[str, int]:
        return dict(sorted(Counter(r.error for r in self.results if r.error).items()))

    @property
    def usage_missing(self) -> int:
        """Successful responses without token counts (a server that does not send `usage`)."""
        return sum(1 for r in self.succeeded if r.completion_tokens is None)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens or 0 for r in self.succeeded)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens or 0 for r in self.succeeded)

    @property
    def ttft(self) -> Summary | None:
        return Summary.of([t for r in self.succeeded if (t := r.ttft) is not None])

    @property
    def itl(self) -> Summary | None:
        return Summary.of([gap for r in self.succeeded for gap in r.itls])

    @property
    def tpot(self) -> Summary | None:
        return Summary.of([t for r in self.succeeded if (t := r.tpot) is not None])

    @property
    def e2e(self) -> Summary | None:
        return Summary.of([r.e2e for r in self.succeeded])

    def _per_second(self, count: int) -> float:
        return count / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        latencies = {"ttft": self.ttft, "itl": self.itl, "tpot": self.tpot, "e2e": self.e2e}
        return {
            "target": spec.base_url,
            "endpoint": spec.path,
            "model": self.model,
            "stream": spec.stream,
            "mode": spec.mode,
            "concurrency": spec.concurrency,
            "rate": spec.rate,
            "seed": spec.seed,
            "prompt_tokens_requested": spec.prompt_tokens,
            "max_tokens": spec.max_tokens,
            "duration_seconds": self.duration,
            "requests": {
                "total": self.requests,
                "succeeded": self.requests_ok,
                "failed": self.requests_failed,
                "usage_missing": self.usage_missing,
            },
            "errors": self.errors,
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "throughput": {
                "requests_per_second": self._per_second(self.requests_ok),
                "output_tokens_per_second": self._per_second(self.completion_tokens),
            },
            "latency_seconds": {
                name: None if s is None else s.to_dict() for name, s in latencies.items()
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def table(self) -> str:
        """The report for a person: a header, then latencies in milliseconds."""
        spec = self.spec
        shape = (
            f"closed loop, concurrency {spec.concurrency}"
            if spec.mode == "closed"
            else f"open loop, Poisson arrivals at {spec.rate:g} req/s"
        )
        kind = "chat" if spec.chat else "completions"
        kind += ", streaming" if spec.stream else ""
        failed = f"{self.requests_failed} failed"
        if self.errors:
            failed += " (" + ", ".join(f"{k}: {n}" for k, n in self.errors.items()) + ")"
        lines = [
            f"target    {spec.url}  (model {self.model}, {kind})",
            f"load      {shape}; {self.requests} requests in {self.duration:.2f} s",
            f"requests  {self.requests_ok} ok, {failed}",
            f"tokens    prompt {self.prompt_tokens}, completion {self.completion_tokens}"
            f"  ({self._per_second(self.completion_tokens):.1f} output tok/s, "
            f"{self._per_second(self.requests_ok):.2f} req/s)",
        ]
        if self.usage_missing:
            lines.append(
                f"          {self.usage_missing} response(s) had no `usage`: "
                "their tokens are not counted"
            )
        lines.append("")
        columns = ("mean", "p50", "p90", "p95", "p99")
        lines.append(
            f"{'latency (ms)':<14}" + "".join(f"{c:>10}" for c in columns) + f"{'samples':>10}"
        )
        for name, summary in (
            ("TTFT", self.ttft),
            ("ITL", self.itl),
            ("TPOT", self.tpot),
            ("E2E", self.e2e),
        ):
            if summary is None:
                lines.append(f"{name:<14}" + "".join(f"{'-':>10}" for _ in columns) + f"{0:>10}")
                continue
            values = (summary.mean, summary.p50, summary.p90, summary.p95, summary.p99)
            lines.append(
                f"{name:<14}"
                + "".join(f"{v * 1000:>10.1f}" for v in values)
                + f"{summary.count:>10}"
            )
        return "\n".join(lines) + "\n"
