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
# Bounds on the caches, in series: past them new series are resolved on every scrape instead of
# cached, so a page with very many series costs time, never unbounded memory (~0.5 KB each).
_CACHE_LIMIT = 50_000


_LABEL_PAIRS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


def parse_labels(raw: str) -> dict[str, str] | None:
    """`a="1",b="x"` to a dict of raw (still escaped) values; None when malformed."""
    # Fast path: the common compact form, checked by rebuilding it exactly.
    pairs = _LABEL_PAIRS.findall(raw)
    if ",".join(f'{k}="{v}"' for k, v in pairs) == raw.removesuffix(","):
        labels = dict(pairs)
        return labels if len(labels) == len(pairs) else None
    return _parse_labels_spaced(raw)


def _parse_labels_spaced(raw: str) -> dict[str, str] | None:
    """The general form, with optional white space around names, values and commas."""
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
        "bodies",
        "concept",
        "ctx",
        "fallback",
        "kind",
        "out",
        "scale",
        "source",
    )

    def __init__(self, adapter: Adapter, concept: str, source: Source, kind: str, ctx: Context):
        self.adapter = adapter
        self.concept = concept
        self.source = source
        self.kind = kind  # "bucket", "sum", "count" or "" for a plain sample
        self.fallback = source.fallback
        self.ctx = ctx
        self.bodies: dict[str, object] = {}  # upstream labels (without `le`) -> labels_for()
        suffix = f"_{kind}" if kind else ""
        fam = schema.family(concept)
        if fam.kind is schema.Kind.COUNTER and not fam.name.endswith("_total"):
            raise ValueError(f"counter {fam.name} must end in _total")
        self.out = fam.name + suffix
        # Only `le` and `_sum` carry the unit of a histogram; counts never scale.
        self.scale = source.scale if kind in ("sum", "") else 1.0

    def labels_for(self, labels: dict[str, str]) -> tuple[str, str | None, dict | None] | None:
        """(label body, model, info labels) of the normalized series; None when not ours.

        `le` is not part of it: buckets of one series share this, and it is cached per route.
        """
        src, adapter = self.source, self.adapter
        for k, v in src.match.items():
            # As in Prometheus, an empty label value is the same as no label.
            if labels.get(k, "") != v:
                return None
        out: dict[str, str] = {}
        if adapter.group is schema.Group.ENGINE:
            model = labels.get(adapter.model_label) if adapter.model_label else None
            out["engine"] = adapter.name
            out["model"] = model or escape_label(self.ctx.model or "unknown")
            for rank_label in adapter.rank_labels:
                if rank_label in labels:
                    out[schema.RANK_LABEL] = labels[rank_label]
        elif not _gpu_is_ours(labels, self.ctx):
            return None
        for upstream, normalized in src.labels.items():
            if upstream not in labels:
                continue
            value: str | None = labels[upstream]
            value_map = src.values.get(normalized)
            if value_map is not None and value in value_map:
                value = value_map[value]
            if value is None:
                return None
            if self.concept == "llm_engine_info" and value in _UNSET_VALUES:
                continue
            out[normalized] = value
        out.update(src.set_labels)
        info = out if self.concept == "llm_engine_info" else None
        return label_body(out), out.get("model"), info

    def entry(self, base: str, labels: dict[str, str] | None, le: str | None) -> _Entry | None:
        """The cached entry of one upstream series; `labels` parses `base` when not cached."""
        got = self.bodies.get(base, _MISSING)
        if got is _MISSING:
            if labels is None:
                raise ValueError("labels needed")
            got = self.labels_for(labels)
            if len(self.bodies) < _CACHE_LIMIT:
                self.bodies[base] = got
        if got is None:
            return None
        body, model, info = got  # type: ignore[misc]
        if le is None:
            return _Entry(self, body, f"{self.out}{{{body}}} ", model, info)
        bound = _bound(le, self.source.scale)
        return _Entry(self, body, f'{self.out}{{{body},le="{bound}"}} ', model, info)


_MISSING = object()
_BOUNDS: dict[tuple[str, float], str] = {}


def _bound(le: str, scale: float) -> str:
    """A bucket boundary in canonical text, scaled to base units (ValueError if malformed)."""
    key = (le, scale)
    text = _BOUNDS.get(key)
    if text is None:
        text = canonical_float(float(le) * scale)
        if len(_BOUNDS) < 10_000:
            _BOUNDS[key] = text
    return text


_LE_PAIR = re.compile(r'(^|,)\s*le\s*=\s*"([^"\\]*)"\s*(,?)')


def _split_le(raw: str) -> tuple[str, str] | None:
    """A bucket's labels without `le`, and its `le`; None when there is no `le`."""
    m = _LE_PAIR.search(raw)
    if m is None:
        return None
    joint = "," if m.group(1) and m.group(3) else ""
    return raw[: m.start()] + joint + raw[m.end() :], m.group(2)


class _Entry:
    """Where one upstream series goes: its route and normalized sample text (cached)."""

    __slots__ = (
        "concept",
        "drop_if",
        "fallback",
        "info",
        "key",
        "model",
        "prefix",
        "route",
        "scale",
    )

    def __init__(
        self, route: _Route, key: str, prefix: str, model: str | None, info: dict[str, str] | None
    ):
        self.route = route
        self.concept = route.concept
        self.fallback = route.fallback
        self.scale = route.scale
        self.drop_if = route.source.drop_if
        self.key = key  # the series without `le`: fallbacks are resolved per series
        self.prefix = prefix  # "name{labels} "
        self.model = model
        self.info = info


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

    # family -> "sample{labels} " -> [value text, entry, fallback level]
    families: dict[str, dict[str, list]]
    errors: int
    samples: int  # upstream samples that fed a normalized series
    model: str | None
    matched: int = 0  # well-formed lines of families the adapter reads (ours or not)

    def series_count(self) -> int:
        return sum(len(s) for s in self.families.values())

    def values(self) -> dict[str, float]:
        """Every normalized sample as text -> value (for tests and the advisor)."""
        return {
            prefix[:-1]: float(slot[0])
            for samples in self.families.values()
            for prefix, slot in samples.items()
        }


# Marks a series text whose labels cannot be parsed (cached like any other; compared by identity).
_INVALID: tuple = ("invalid",)


class Normalizer:
    """Applies one adapter to pages from one upstream, keeping its parse caches warm.

    The cache maps a line's series text (`name{labels}`) to where it goes, so a page seen
    before costs one dict lookup and one float parse per line.
    """

    def __init__(self, adapter: Adapter, ctx: Context | None = None):
        self.adapter = adapter
        self.ctx = ctx or Context()
        table: dict[str, list[_Route]] = {}
        for concept in adapter.concepts:
            for source in concept.sources:
                names = source.sample_names()
                kinds = ("bucket", "sum", "count") if len(names) == 3 else ("",)
                for kind, name in zip(kinds, names, strict=True):
                    table.setdefault(name, []).append(
                        _Route(adapter, concept.family, source, kind, self.ctx)
                    )
        self.routes: dict[str, tuple[_Route, ...]] = {k: tuple(v) for k, v in table.items()}
        self._with_fallbacks = frozenset(
            c.family for c in adapter.concepts if any(s.fallback for s in c.sources)
        )
        self._series: dict[str, tuple] = {}

    def with_context(self, ctx: Context) -> Normalizer:
        return self if ctx == self.ctx else Normalizer(self.adapter, ctx)

    def _resolve(self, name: str, raw: str) -> tuple | None:
        """The entries of one series text (empty when none is ours), _INVALID, or None when
        the adapter does not read this name."""
        routes = self.routes.get(name)
        if routes is None:
            return None
        base, le = raw, None
        if routes[0].kind == "bucket":
            split = _split_le(raw)
            if split is None:
                return _INVALID
            base, le = split
        labels = None
        if any(base not in route.bodies for route in routes):
            labels = parse_labels(base)
            if labels is None:
                return _INVALID
        entries = []
        try:
            for route in routes:
                entry = route.entry(base, labels, le)
                if entry is not None:
                    entries.append(entry)
        except ValueError:
            return _INVALID
        return tuple(entries)

    def normalize(self, text: str) -> Result:
        return self.normalize_lines(text.split("\n"))

    def normalize_lines(self, lines: Iterable[str]) -> Result:
        cache = self._series
        cache_get = cache.get
        families: dict[str, dict[str, list]] = {}
        errors = 0
        used = 0
        first_model: str | None = None
        matched = 0
        last_concept: str | None = None
        samples: dict[str, list] = {}
        for line in lines:
            if not line or line[0] == "#":
                continue
            close = line.rfind("}")
            if close == -1:
                space = line.find(" ")
                if space == -1:
                    if line.strip():
                        errors += 1
                    continue
                series = line[:space]
                rest = line[space + 1 :]
            else:
                series = line[: close + 1]
                rest = line[close + 1 :]
            targets = cache_get(series)
            if targets is None:
                brace = series.find("{")
                if brace == -1:
                    name, raw = series, ""
                elif close == -1 or brace > close:
                    errors += 1
                    continue
                else:
                    name, raw = series[:brace], series[brace + 1 : -1]
                targets = self._resolve(name, raw)
                if targets is None:
                    if not _METRIC_NAME.fullmatch(name):
                        errors += 1
                    continue
                if len(cache) < _CACHE_LIMIT:
                    cache[series] = targets
            if targets is _INVALID:
                errors += 1
                continue
            matched += 1
            text_value = rest.strip()
            if " " in text_value:  # a timestamp after the value (or junk)
                parts = text_value.split()
                if len(parts) != 2:
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
            for entry in targets:
                if entry.drop_if is not None and entry.drop_if(value):
                    continue
                if first_model is None:
                    first_model = entry.model
                used += 1
                out_value = (
                    text_value if entry.scale == 1.0 else canonical_float(value * entry.scale)
                )
                if entry.concept is not last_concept:  # lines of one family come together
                    last_concept = entry.concept
                    samples = families.get(last_concept)
                    if samples is None:
                        samples = families[last_concept] = {}
                prior = samples.get(entry.prefix)
                if prior is None:
                    samples[entry.prefix] = [out_value, entry, entry.fallback]
                elif prior[1] is entry:
                    continue  # the same upstream series twice: keep the first, as Prometheus
                elif entry.fallback < prior[2]:
                    samples[entry.prefix] = [out_value, entry, entry.fallback]
                elif entry.fallback == prior[2]:
                    # Two upstream series, one normalized series: their sum loses nothing.
                    prior[0] = canonical_float(float(prior[0]) + value * entry.scale)
        for concept in self._with_fallbacks & families.keys():
            families[concept] = _best_sources(families[concept])
        return Result(families, errors, used, first_model, matched)


def _best_sources(samples: dict[str, list]) -> dict[str, list]:
    """Per series, keep only the samples of the lowest fallback level present."""
    best: dict[str, int] = {}
    for _value, entry, level in samples.values():
        if level < best.get(entry.key, level + 1):
            best[entry.key] = level
    return {p: slot for p, slot in samples.items() if slot[2] == best[slot[1].key]}


def render(results: Iterable[Result], ctx: Context, extra: str = "") -> str:
    """The text exposition (format 0.0.4) of normalized results, families in schema order."""
    merged: dict[str, list[str]] = {}
    for result in results:
        for fam_name, samples in result.families.items():
            lines = merged.setdefault(fam_name, [])
            lines.extend([prefix + slot[0] for prefix, slot in samples.items()])
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


def _page_models(result: Result) -> list[str]:
    """The models a page's series are labelled with, in order of appearance."""
    models: dict[str, None] = {}
    for family, samples in result.families.items():
        if family == "llm_engine_info":
            continue
        for slot in samples.values():
            models[slot[1].model] = None
    return [m for m in models if m is not None]


def engine_info(result: Result, adapter: Adapter, ctx: Context) -> None:
    """Make sure an engine page states `llm_engine_info`, with what the info endpoint said.

    A server of several models (Triton) states one series per model on its page, each with
    the server's configuration; any other engine's belongs to the model its page names first.
    """
    if adapter.group is not schema.Group.ENGINE:
        return
    models = _page_models(result) if adapter.several_models else []
    if not models:
        models = [result.model or escape_label(ctx.model or "unknown")]
    extra = {k: escape_label(v) for k, v in ctx.info.items() if v not in _UNSET_VALUES}
    stated = [slot[1].info for slot in result.families.get("llm_engine_info", {}).values()]
    fixed: dict[str, list] = {}
    for model in models:
        for upstream in stated or [{"engine": adapter.name}]:
            # Info metrics carry no model label: they belong to the page's models.
            labels = {"engine": adapter.name, "model": model}
            labels.update({k: v for k, v in upstream.items() if k not in ("engine", "model")})
            for k, v in extra.items():
                labels.setdefault(k, v)
            if adapter.info_derive is not None:
                labels.update(adapter.info_derive(labels))
            prefix = f"llm_engine_info{{{label_body(labels)}}} "
            fixed[prefix] = ["1", None, 0]
    result.families["llm_engine_info"] = fixed
