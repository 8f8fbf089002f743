"""How an adapter is declared: tables from upstream families to normalized concepts.

An adapter is data. `Source` says where one upstream family goes (label renames, value maps,
unit scale, which series to keep); `Concept` lists the sources of one normalized family;
`Adapter` gathers them with the engine's identity. `inferwatch.exporters.normalize` applies
them, and `docs/metrics.md` is generated from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from inferwatch import schema

# Upstream value filters: a series whose value matches is absent, never data.
ValueFilter = Callable[[float], bool]


def negative(v: float) -> bool:
    return v < 0


@dataclass(frozen=True)
class Source:
    """One upstream family feeding a normalized concept.

    `sample` is the name as exposed: the full sample name for gauges and counters
    (`vllm:prompt_tokens_total`, TGI's `tgi_request_success`), the family base name for
    histograms. `suffix` takes one sample of a histogram as a counter (`_sum`, `_count`).
    `fallback` orders alternatives: a series is taken from the lowest fallback level that has
    it, so an old and a new name exposed together for the same data give one series.
    Series of the same level that land on the same normalized series are summed.
    """

    sample: str
    kind: schema.Kind
    labels: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    match: Mapping[str, str] = field(default_factory=dict)
    set_labels: Mapping[str, str] = field(default_factory=dict)
    scale: float = 1.0
    suffix: str = ""
    fallback: int = 0
    drop_if: ValueFilter | None = None
    note: str = ""

    def sample_names(self) -> tuple[str, ...]:
        if self.kind is schema.Kind.HISTOGRAM and not self.suffix:
            return (f"{self.sample}_bucket", f"{self.sample}_sum", f"{self.sample}_count")
        return (self.sample + self.suffix,)

    def describe(self, omit_labels: Mapping[str, str] | None = None) -> str:
        """One line for the docs table (label renames shared by the whole adapter omitted)."""
        text = f"`{self.sample}{self.suffix}`"
        if self.match:
            text += " where " + ", ".join(f'`{k}="{v}"`' for k, v in self.match.items())
        if self.scale != 1.0:
            text += f" × {_fmt_scale(self.scale)}"
        renames = {
            k: v for k, v in self.labels.items() if k != v and (omit_labels or {}).get(k) != v
        }
        if renames:
            text += " (" + ", ".join(f"`{k}`→`{v}`" for k, v in renames.items()) + ")"
        if self.set_labels:
            text += " as " + ", ".join(f'`{k}="{v}"`' for k, v in self.set_labels.items())
        if self.fallback:
            text += " (fallback, when the above is absent)"
        if self.note:
            text += f": {self.note}"
        return text


def _fmt_scale(scale: float) -> str:
    if scale < 1:
        inverse = 1 / scale
        if math.isclose(inverse, round(inverse)):
            return f"1/{round(inverse)}"
    return str(int(scale)) if float(scale).is_integer() else f"{scale:g}"


@dataclass(frozen=True)
class Concept:
    """The sources of one normalized family, and how ranks are treated."""

    family: str
    sources: tuple[Source, ...]
    note: str = ""

    def __post_init__(self) -> None:
        schema.family(self.family)  # fails loudly on a name outside the contract


# Parses an engine's JSON info endpoint into (model, info labels).
InfoParser = Callable[[dict], tuple[str | None, dict[str, str]]]


@dataclass(frozen=True)
class InfoEndpoint:
    path: str
    parse: InfoParser


@dataclass(frozen=True)
class Variant:
    """A server or build an adapter covers that never exposes some of its sources (TensorRT-LLM
    on Triton has none of trtllm-serve's histograms): the dashboards' notes name it."""

    title: str
    lacks: tuple[str, ...]  # upstream sample names, or name prefixes, it never exposes

    def reports(self, concept: Concept) -> bool:
        """Whether this variant feeds `concept` (a concept from an info endpoint always does)."""
        if not concept.sources:
            return True
        return any(not s.sample.startswith(self.lacks) for s in concept.sources)


@dataclass(frozen=True)
class Adapter:
    """Everything the sidecar knows about one engine (or about DCGM), as data."""

    name: str  # the `engine` label value; for GPU sources the source name
    title: str
    group: schema.Group
    detect: tuple[str, ...]  # metric-name prefixes that identify this source's page
    concepts: tuple[Concept, ...]
    model_label: str | None = None
    rank_labels: tuple[str, ...] = ()
    versions: str = ""  # which upstream versions the tables cover, for the docs
    info_endpoints: tuple[InfoEndpoint, ...] = ()
    # Fills in `llm_engine_info` labels the engine implies but does not state.
    info_derive: Callable[[dict[str, str]], dict[str, str]] | None = None
    rank_note: str = ""
    notes: tuple[str, ...] = ()
    variants: tuple[Variant, ...] = ()
    # One server serves several models (Triton): `llm_engine_info` is stated for each.
    several_models: bool = False

    def concept(self, family: str) -> Concept | None:
        for c in self.concepts:
            if c.family == family:
                return c
        return None
