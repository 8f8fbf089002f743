"""What the proxy mode measures from the traffic passing through, and how it is normalized.

No HTTP here: `proxy.py` forwards requests and feeds a `Watch` per generation request; this
module turns what the watches saw into the proxy's own metric names, normalized through a
table (`adapter_for`) like any engine's page. Imported by the Ollama adapter too, so it must
stay free of aiohttp (the sidecar's scrape path does not load it).

`inferwatch exporter --proxy --upstream http://127.0.0.1:11434 --listen 0.0.0.0:9450` serves
every path except its own `/metrics`, `/healthz` and `/readyz` by forwarding it to the upstream:
same method, path, query, headers and body; the upstream's status, headers and body come back
byte for byte, streamed chunk by chunk (each write waits for the client to drain, so a slow
client holds back the upstream instead of filling memory). Generation requests, Ollama's
`POST /api/generate` and `/api/chat` and the OpenAI-compatible `POST /v1/chat/completions` and
`/v1/completions`, are measured on the way:

- time to first token: from the request's arrival to the first streamed chunk carrying
  content (text, thinking or a tool call);
- inter-token latency: between consecutive content chunks (one chunk is one token for Ollama
  and for OpenAI-compatible servers, which send one delta per token);
- time per output token: (last content chunk - first) / (output tokens - 1), per request;
- end-to-end duration, prompt and generated tokens (Ollama's `prompt_eval_count` and
  `eval_count`, or OpenAI `usage`), and the outcome: Ollama's `done_reason` or OpenAI's
  `finish_reason` (`stop`, `length`; tool calls and content filters count as `stop`), `abort`
  when the client disconnects before the end, `error` for an upstream answer of HTTP 400 or
  more, an error inside the stream, a stream that ends without its final chunk, or an
  upstream that cannot be reached (the client then gets a 502 saying so).

The figures are written in the proxy's own names and normalized through a table like any
engine's (`adapter_for`), with `source="proxy"` on every series: a proxied engine that also
has its own /metrics (vLLM behind the proxy) then keeps both, engine-side and client-side,
and queries select one with `source` (absent on engine-side series) instead of counting
each request twice. Histograms use fixed boundaries, vLLM V1's defaults (`BUCKETS`), so the
same SLO thresholds hold for both.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from inferwatch import schema
from inferwatch.exporters.adapter import Adapter, Concept, Source
from inferwatch.exporters.normalize import (
    Context,
    Normalizer,
    Result,
    canonical_float,
    escape_label,
)

log = logging.getLogger("inferwatch.exporter")

OLLAMA, OPENAI = "ollama", "openai"
# The requests that are measured, by path (POST only); everything else is only forwarded.
GENERATION_PATHS: dict[str, str] = {
    "/api/generate": OLLAMA,
    "/api/chat": OLLAMA,
    "/v1/chat/completions": OPENAI,
    "/v1/completions": OPENAI,
}
# The sidecar's own paths, never forwarded.
OWN_PATHS = ("/metrics", "/healthz", "/readyz")
SOURCE_LABEL = (schema.SOURCE_LABEL, schema.PROXY_SOURCE)
# A non-streamed answer is parsed for its token counts only up to this size (it is always
# forwarded whole).
MAX_PARSED_BYTES = 8 * 1024 * 1024
# Model names come from clients: beyond this many distinct ones, new names count as "other".
MAX_MODELS = 64


# fmt: off
# vLLM V1's default boundaries (`vllm/v1/metrics/buckets.py`), in seconds.
BUCKETS: dict[str, tuple[float, ...]] = {
    "time_to_first_token_seconds": (
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
        10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
    "inter_token_latency_seconds": (
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        20.0, 40.0, 80.0),
    "time_per_output_token_seconds": (
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        20.0, 40.0, 80.0),
    "request_duration_seconds": (
        0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
        240.0, 480.0, 960.0, 1920.0, 7680.0),
}
# fmt: on

# Finish reasons as the upstreams write them; anything else that ends a 200 answer is a stop.
_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "stop",
    "function_call": "stop",
    "content_filter": "stop",
    "abort": "abort",
    "error": "error",
}
# Ollama answers these to a request that only loads or unloads a model: not a generation.
_NOT_GENERATION = frozenset(("load", "unload"))


class BucketCounts:
    """Observations per bucket, not cumulative (the last: above every bound), and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1


@dataclass
class _Model:
    """Everything the proxy measured for one model."""

    histograms: dict[str, BucketCounts] = field(
        default_factory=lambda: {name: BucketCounts(b) for name, b in BUCKETS.items()}
    )
    finished: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    running: int = 0


class ProxyMetrics:
    """The proxy's measurements, per model, rendered in its own names for its adapter."""

    def __init__(self, engine: str):
        self.engine = engine
        self.models: dict[str, _Model] = {}
        self.normalizer = Normalizer(adapter_for(engine), Context())

    def model(self, name: str | None) -> _Model:
        key = escape_label(name or "unknown")
        found = self.models.get(key)
        if found is None:
            if len(self.models) >= MAX_MODELS:
                key = "other"
                found = self.models.get(key)
            if found is None:
                found = self.models[key] = _Model()
        return found

    def exposition(self) -> str:
        lines: list[str] = []
        for name, m in self.models.items():
            base = f'model="{name}"'
            lines.append(f"proxy:requests_running{{{base}}} {m.running}")
            lines.append(f"proxy:prompt_tokens_total{{{base}}} {m.prompt_tokens}")
            lines.append(f"proxy:generation_tokens_total{{{base}}} {m.generation_tokens}")
            for reason, count in m.finished.items():
                lines.append(f'proxy:requests_finished_total{{{base},reason="{reason}"}} {count}')
            for family, h in m.histograms.items():
                total = 0
                for bound, count in zip((*h.bounds, float("inf")), h.counts, strict=True):
                    total += count
                    le = canonical_float(bound)
                    lines.append(f'proxy:{family}_bucket{{{base},le="{le}"}} {total}')
                lines.append(f"proxy:{family}_sum{{{base}}} {canonical_float(h.sum)}")
                lines.append(f"proxy:{family}_count{{{base}}} {total}")
        return "\n".join(lines) + "\n"

    def result(self) -> Result:
        return self.normalizer.normalize(self.exposition())


def proxy_engine(engine: str) -> str:
    """The `engine` label of proxied requests: the one given, else Ollama (which has no
    /metrics, and so is the engine the proxy exists for)."""
    return "ollama" if engine == "auto" else engine


def adapter_for(engine: str) -> Adapter:
    """The table from the proxy's own names to the schema, for the engine it stands before."""
    if engine not in schema.ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(schema.ENGINES)}")
    return Adapter(
        name=engine,
        title=f"{engine} (proxy)",
        group=schema.Group.ENGINE,
        detect=("proxy:",),
        model_label="model",
        concepts=PROXY_CONCEPTS,
    )


def _measured(sample: str, kind: schema.Kind, note: str = "", **kw) -> Source:
    return Source(sample, kind, set_labels=dict((SOURCE_LABEL,)), note=note, **kw)


G, C, H = schema.Kind.GAUGE, schema.Kind.COUNTER, schema.Kind.HISTOGRAM
PROXY_CONCEPTS: tuple[Concept, ...] = (
    Concept(
        "llm_requests_running",
        (_measured("proxy:requests_running", G, "generation requests in flight"),),
    ),
    Concept(
        "llm_time_to_first_token_seconds",
        (_measured("proxy:time_to_first_token_seconds", H, "streamed requests"),),
    ),
    Concept(
        "llm_inter_token_latency_seconds",
        (_measured("proxy:inter_token_latency_seconds", H, "between content chunks"),),
    ),
    Concept(
        "llm_time_per_output_token_seconds",
        (_measured("proxy:time_per_output_token_seconds", H, "streamed requests"),),
    ),
    Concept(
        "llm_request_duration_seconds",
        (_measured("proxy:request_duration_seconds", H, "arrival to last byte"),),
    ),
    Concept(
        "llm_prompt_tokens_total",
        (_measured("proxy:prompt_tokens_total", C, "`prompt_eval_count` / `usage`"),),
    ),
    Concept(
        "llm_generation_tokens_total",
        (_measured("proxy:generation_tokens_total", C, "`eval_count` / `usage`"),),
    ),
    Concept(
        "llm_requests_finished_total",
        (
            _measured(
                "proxy:requests_finished_total",
                C,
                "`done_reason` / `finish_reason`; client gone → `abort`; HTTP ≥ 400 or "
                "unreachable → `error`",
                labels={"reason": "reason"},
            ),
        ),
    ),
)


# -- watching one response ------------------------------------------------------------------


def _has_content_ollama(doc: dict) -> bool:
    if doc.get("response") or doc.get("thinking"):
        return True
    message = doc.get("message")
    return isinstance(message, dict) and bool(
        message.get("content") or message.get("thinking") or message.get("tool_calls")
    )


def _has_content_openai(doc: dict) -> bool:
    for choice in doc.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls")
        ):
            return True
    return False


def _plain_token(line: bytes, api: str) -> bool:
    """A chunk that certainly carries one token and nothing else, told without parsing it.

    Most of a stream is such chunks, and parsing each would cost the proxy more than the rest
    of its work. The test reads compact JSON (`"done":false`, `"finish_reason":null`) and
    sends anything else to the parser. Quotes inside a JSON string are escaped, so `"error":`
    can only be a key; `""` is an empty value (a chunk whose text may be empty) or an escaped
    quote ending a string, and either way the parser decides.
    """
    if b'""' in line or b'"error":' in line:
        return False
    if api == OLLAMA:
        return b'"done":false' in line
    return (
        b'"finish_reason":null' in line
        and b'"usage":{' not in line
        and (b'"content":"' in line or b'"text":"' in line or b'"reasoning_content":"' in line)
    )


class Watch:
    """What the proxy sees of one generation request, from arrival to its last byte."""

    def __init__(self, api: str, metrics: ProxyMetrics, model: str | None, start: float):
        self.api = api
        self.metrics = metrics
        self.model = metrics.model(model)
        self.start = start
        self.first: float | None = None
        self.last: float | None = None
        self.chunks = 0
        self.reason: str | None = None
        self.prompt_tokens: int | None = None
        self.output_tokens: int | None = None
        self.stream_format: str | None = None  # "sse", "ndjson" or None (one JSON body)
        self._pending = b""
        self._body: list[bytes] = []
        self._body_size = 0
        self._done = False
        self.model.running += 1

    def begin(self, status: int, content_type: str, encoded: bool) -> None:
        if status >= 400:
            self.reason = "error"
        if encoded:
            return  # compressed: forwarded as it is, not read
        if content_type.startswith("text/event-stream"):
            self.stream_format = "sse"
        elif content_type.startswith("application/x-ndjson"):
            self.stream_format = "ndjson"

    def feed(self, chunk: bytes, now: float) -> None:
        if self.stream_format is None:
            if self._body_size <= MAX_PARSED_BYTES:
                self._body.append(chunk)
                self._body_size += len(chunk)
            return
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_PARSED_BYTES:
            self._pending = b""  # a runaway line: stop reading it, keep forwarding
        for line in lines:
            self._line(line, now)

    def _line(self, line: bytes, now: float) -> None:
        line = line.strip()
        if self.stream_format == "sse":
            if not line.startswith(b"data:"):
                return
            line = line[5:].strip()
            if line == b"[DONE]":
                return
        if not line:
            return
        if _plain_token(line, self.api):
            self._content(now)
            return
        try:
            doc = json.loads(line)
        except ValueError:
            return
        if isinstance(doc, dict):
            self._document(doc, now, streamed=True)

    def _document(self, doc: dict, now: float, streamed: bool) -> None:
        if doc.get("error"):
            self.reason = "error"
            return
        if self.api == OLLAMA:
            content = _has_content_ollama(doc)
            if doc.get("done"):
                reason = doc.get("done_reason") or "stop"
                self.reason = self.reason or reason
                self._tokens(doc.get("prompt_eval_count"), doc.get("eval_count"))
        else:
            content = _has_content_openai(doc)
            for choice in doc.get("choices") or ():
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    self.reason = self.reason or str(choice["finish_reason"])
                    break
            usage = doc.get("usage")
            if isinstance(usage, dict):
                self._tokens(usage.get("prompt_tokens"), usage.get("completion_tokens"))
        if content and streamed:
            self._content(now)

    def _content(self, now: float) -> None:
        if self.first is None:
            self.first = now
        elif self.last is not None:
            self.model.histograms["inter_token_latency_seconds"].observe(now - self.last)
        self.last = now
        self.chunks += 1

    def _tokens(self, prompt: object, output: object) -> None:
        if isinstance(prompt, int) and prompt >= 0:
            self.prompt_tokens = prompt
        if isinstance(output, int) and output >= 0:
            self.output_tokens = output

    def finish(self, now: float, outcome: str | None = None) -> None:
        """The request is over: `outcome` is "abort" or "error" when it did not end well."""
        if self._done:
            return
        self._done = True
        m = self.model
        m.running -= 1
        if self.stream_format is None and self._body and self._body_size <= MAX_PARSED_BYTES:
            try:
                doc = json.loads(b"".join(self._body))
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                self._document(doc, now, streamed=False)
        elif self._pending:
            self._line(self._pending, now)
        reason = outcome or self.reason
        if reason in _NOT_GENERATION:
            return
        if reason is None:
            reason = "error"  # a 200 answer that never said it was done: cut short upstream
        reason = _REASONS.get(reason, "stop")
        m.finished[reason] = m.finished.get(reason, 0) + 1
        if self.prompt_tokens is not None:
            m.prompt_tokens += self.prompt_tokens
        if self.output_tokens is not None:
            m.generation_tokens += self.output_tokens
        m.histograms["request_duration_seconds"].observe(now - self.start)
        if self.first is not None:
            m.histograms["time_to_first_token_seconds"].observe(self.first - self.start)
            tokens = self.output_tokens if self.output_tokens else self.chunks
            if self.last is not None and tokens > 1:
                per_token = (self.last - self.first) / (tokens - 1)
                m.histograms["time_per_output_token_seconds"].observe(per_token)
