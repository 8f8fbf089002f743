"""Apply an adapter to one exposition page: parse, map, and render the normalized families.

The hot path is one pass over the lines. Lines of families the adapter does not use are
skipped after a dict lookup on the name; label strings are parsed once and their normalized
form is cached per route, so a sidecar scraped every few seconds does little more than split
lines and join strings. A line that cannot be parsed is skipped and counted; it never aborts
the page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from inferwatch import schema
from inferwatch.exporters.adapter import Adapter, Source

_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,|$)')
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

# Label values an engine prints when a setting is unset; never state them as configuration.
_UNSET_VALUES = frozenset(("", "None", "none", "null"))
# Bounds on the per-route caches: a pathological upstream can't grow memory without limit.
_CACHE_LIMIT = 200_000

_FILTERED = object()  # the series is valid but not ours (e.g. another pod's GPU)
_INVALID = object()  # the line's labels cannot be parsed


def parse_labels(raw: str) -> dict[str, str] | None:
    """`a="1",b="x"` to a dict of raw (still escaped) values; None when malformed."""
    labels: dict[str, str] = {}
    pos, end = 0, len(raw)
    while pos < end:
        m = _LABEL_PAIR.match(raw, pos)
        if m is None:
            return None if raw[pos:].strip() else labels
        name, value, comma = m.group(1), m.group(2), m.group(3)
        if name in labels:
            return None
        labels[name] = value
        pos = m.end()
        if not comma:
            break
    return labels if pos >= end or not raw[pos:].strip() else None


def escape_label(value: str) -> str:
    """Escape a label value for the text exposition."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_body(labels: dict[str, str]) -> str:
    """`k="v",...` from already-escaped values, in the order given."""
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def canonical_float(value: float) -> str:
    """OpenMetrics' canonical number text (what Prometheus 3 normalizes `le` to)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass(frozen=True)
class Context:
    """What the sidecar knows about where it runs, beyond the page itself."""

    model: str | None = None  # --model, or the engine's info endpoint
    info: dict[str, str] = field(default_factory=dict)  # from the engine's info endpoint
    pod: str | None = None
    namespace: str | None = None
    gpu_uuids: frozenset[str] | None = None  # None: not known; keep GPUs by pod only


class _Route:
    """One upstream sample name feeding one normalized family."""

    __slots__ = (
        "adapter",
        "cache",
        "concept",
        "ctx",
        "fallback",
        "kind",
        "out",
        "scale_sum",
        "source",
    )

    def __init__(self, adapter: Adapter, concept: str, source: Source, kind: str, ctx: Context):
        self.adapter = adapter
        self.concept = concept
        self.source = source
        self.kind = kind  # "bucket", "sum", "count" or "" for a plain sample
        self.fallback = source.fallback
        self.ctx = ctx
        self.cache: dict[str, object] = {}
        suffix = f"_{kind}" if kind else ""
        fam = schema.family(concept)
        if fam.kind is schema.Kind.COUNTER and not fam.name.endswith("_total"):
            raise ValueError(f"counter {fam.name} must end in _total")
        self.out = fam.name + suffix
        # Only `le` and `_sum` carry the unit of a histogram; counts never scale.
        self.scale_sum = source.scale if kind in ("sum", "") else 1.0

    def compute(self, labels: dict[str, str]) -> object:
        """The normalized series for one upstream label set: (series key, sample text)."""
        src, adapter = self.source, self.adapter
        for k, v in src.match.items():
            if labels.get(k) != v:
                return _FILTERED
        out: dict[str, str] = {}
        if adapter.group is schema.Group.ENGINE:
            model = labels.get(adapter.model_label) if adapter.model_label else None
            out["engine"] = adapter.name
            out["model"] = model or escape_label(self.ctx.model or "unknown")
            for rank_label in adapter.rank_labels:
                if rank_label in labels:
                    out[schema.RANK_LABEL] = labels[rank_label]
        elif not _gpu_is_ours(labels, self.ctx):
            return _FILTERED
        for upstream, normalized in src.labels.items():
            if upstream not in labels:
                continue
            value: str | None = labels[upstream]
            value_map = src.values.get(normalized)
            if value_map is not None and value in value_map:
                value = value_map[value]
            if value is None:
                return _FILTERED
            if self.concept == "llm_engine_info" and value in _UNSET_VALUES:
                continue
            out[normalized] = value
        out.update(src.set_labels)
        body = label_body(out)
        if self.kind == "bucket":
            le = labels.get("le")
            if le is None:
                return _INVALID
            try:
                bound = float(le) * src.scale
            except ValueError:
                return _INVALID
            sample = f'{self.out}{{{body},le="{canonical_float(bound)}"}}'
        else:
            sample = f"{self.out}{{{body}}}"
        info = out if self.concept == "llm_engine_info" else None
        return (body, sample, out.get("model"), info)


def _gpu_is_ours(labels: dict[str, str], ctx: Context) -> bool:
    """Keep only this pod's GPUs: by dcgm-exporter's pod mapping, else by GPU UUID."""
    pod = labels.get("pod", labels.get("pod_name"))
    if pod is not None and ctx.pod is not None:
        namespace = labels.get("namespace", labels.get("pod_namespace"))
        return pod == ctx.pod and (ctx.namespace is None or namespace == ctx.namespace)
    if ctx.gpu_uuids is not None:
        uuid = labels.get("UUID", labels.get("uuid", ""))
        if uuid in ctx.gpu_uuids:
            return True
        # MIG devices are listed by their MIG UUID; dcgm-exporter labels the parent GPU.
        mig = labels.get("GPU_I_ID")
        return (
            mig is not None
            and any(u.startswith("MIG-") for u in ctx.gpu_uuids)
            and (uuid in {u.split("/")[0] for u in ctx.gpu_uuids})
        )
    # No identity at all (a local run outside Kubernetes): every GPU on the page is ours.
    return ctx.pod is None


@dataclass
class Result:
    """The normalized families of one page, ready to render."""

    families: dict[str, dict[str, list]]  # family -> series key -> [fallback, {sample: (v, o)}]
    errors: int
    samples: int  # upstream samples that fed a normalized series
    model: str | None

    def series_count(self) -> int:
        return sum(len(s) for s in self.families.values())

    def values(self) -> dict[str, float]:
        """Every normalized sample as text -> value (for tests and the advisor)."""
        out: dict[str, float] = {}
        for series in self.families.values():
            for _fallback, samples in series.values():
                for sample, (value, _origin) in samples.items():
                    out[sample] = float(value)
        return out


class Normalizer:
    """Applies one adapter to pages from one upstream, keeping its parse caches warm."""

    def __init__(self, adapter: Adapter, ctx: Context | None = None):
        self.adapter = adapter
        self.ctx = ctx or Context()
        self.routes: dict[str, tuple[_Route, ...]] = {}
        self._label_cache: dict[str, dict[str, str] | None] = {}
        table: dict[str, list[_Route]] = {}
        for concept in adapter.concepts:
            for source in concept.sources:
                if source.kind is schema.Kind.HISTOGRAM and not source.suffix:
                    kinds = ("bucket", "sum", "count")
                    names = source.sample_names()
                else:
                    kinds = ("",)
                    names = source.sample_names()
                for kind, name in zip(kinds, names, strict=True):
                    table.setdefault(name, []).append(
                        _Route(adapter, concept.family, source, kind, self.ctx)
                    )
        self.routes = {k: tuple(v) for k, v in table.items()}

    def with_context(self, ctx: Context) -> Normalizer:
        return self if ctx == self.ctx else Normalizer(self.adapter, ctx)

    def normalize(self, text: str) -> Result:
        routes_get = self.routes.get
        label_cache = self._label_cache
        families: dict[str, dict[str, list]] = {}
        errors = 0
        used = 0
        first_model: str | None = None
        for line in text.split("\n"):
            if not line or line[0] == "#":
                continue
            brace = line.find("{")
            if brace == -1:
                space = line.find(" ")
                if space == -1:
                    errors += 1
                    continue
                name = line[:space]
                raw = ""
                rest = line[space + 1 :]
            else:
                name = line[:brace]
                close = line.rfind("}")
                if close < brace:
                    errors += 1
                    continue
                raw = line[brace + 1 : close]
                rest = line[close + 1 :]
            routes = routes_get(name)
            if routes is None:
                if not _METRIC_NAME.fullmatch(name.strip()) and line.strip():
                    errors += 1
                continue
            labels = label_cache.get(raw)
            if labels is None:
                if raw in label_cache:
                    errors += 1
                    continue
                labels = parse_labels(raw)
                if len(label_cache) > _CACHE_LIMIT:
                    label_cache.clear()
                label_cache[raw] = labels
                if labels is None:
                    errors += 1
                    continue
            parts = rest.split()
            if not parts or len(parts) > 2:
                errors += 1
                continue
            text_value = parts[0]
            try:
                value = float(text_value)
            except ValueError:
                errors += 1
                continue
            if value != value:  # NaN: the engine has no figure; absent, never zero
                continue
            for route in routes:
                entry = route.cache.get(raw)
                if entry is None:
                    entry = route.compute(labels)
                    if len(route.cache) > _CACHE_LIMIT:
                        route.cache.clear()
                    route.cache[raw] = entry
                if entry is _FILTERED:
                    continue
                if entry is _INVALID:
                    errors += 1
                    break
                drop_if = route.source.drop_if
                if drop_if is not None and drop_if(value):
                    continue
                key, sample, model, _info = entry  # type: ignore[misc]
                if first_model is None:
                    first_model = model
                scale = route.scale_sum
                out_value = text_value if scale == 1.0 else canonical_float(value * scale)
                used += 1
                series = families.get(route.concept)
                if series is None:
                    series = families[route.concept] = {}
                slot = series.get(key)
                if slot is None or route.fallback < slot[0]:
                    series[key] = [route.fallback, {sample: (out_value, entry)}]
                elif route.fallback == slot[0]:
                    samples = slot[1]
                    prior = samples.get(sample)
                    if prior is None:
                        samples[sample] = (out_value, entry)
                    elif prior[1] is not entry:
                        # Two upstream series, one normalized series: their sum loses nothing.
                        samples[sample] = (canonical_float(float(prior[0]) + value * scale), entry)
        return Result(families, errors, used, first_model)


def render(results: Iterable[Result], ctx: Context, extra: str = "") -> str:
    """The text exposition (format 0.0.4) of normalized results, families in schema order."""
    merged: dict[str, list[str]] = {}
    for result in results:
        for fam_name, series in result.families.items():
            lines = merged.setdefault(fam_name, [])
            for _fallback, samples in series.values():
                for sample, (value, _origin) in samples.items():
                    lines.append(f"{sample} {value}")
    out: list[str] = []
    for fam in schema.FAMILIES:
        lines = merged.get(fam.name)
        if not lines:
            continue
        out.append(f"# HELP {fam.name} {fam.help}")
        out.append(f"# TYPE {fam.name} {fam.kind.value}")
        out.extend(lines)
    text = "\n".join(out)
    if text:
        text += "\n"
    return text + extra


def engine_info(result: Result, adapter: Adapter, ctx: Context) -> None:
    """Make sure an engine page states `llm_engine_info`, with what the info endpoint said."""
    if adapter.group is not schema.Group.ENGINE:
        return
    model = result.model or escape_label(ctx.model or "unknown")
    extra = {k: escape_label(v) for k, v in ctx.info.items() if v not in _UNSET_VALUES}
    stated = [
        entry[3]
        for _fallback, samples in result.families.get("llm_engine_info", {}).values()
        for _value, entry in samples.values()
    ]
    fixed: dict[str, list] = {}
    for upstream in stated or [{"engine": adapter.name}]:
        # Info metrics carry no model label: they belong to the page's model.
        labels = {"engine": adapter.name, "model": model}
        labels.update({k: v for k, v in upstream.items() if k not in ("engine", "model")})
        for k, v in extra.items():
            labels.setdefault(k, v)
        if adapter.info_derive is not None:
            labels.update(adapter.info_derive(labels))
        body = label_body(labels)
        fixed[body] = [0, {f"llm_engine_info{{{body}}}": ("1", None)}]
    result.families["llm_engine_info"] = fixed
