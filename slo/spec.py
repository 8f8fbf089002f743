"""The SLO spec: what one service promises, as a validated model loaded from YAML.

A spec file lists SLOs under `slos:`. Each names the deployment it covers (namespace and
deployment, the labels Prometheus puts on every series of its pods), optionally the models and
the engine, one SLI and an objective over a 28- or 30-day period:

    slos:
      - name: chat-availability
        description: Chat completions finish without an error or an abort.
        namespace: llm
        deployment: chat-vllm
        models: [meta-llama/Llama-3.1-8B-Instruct]   # optional; default: every model
        sli:
          type: availability                 # error ratio over llm_requests_finished_total
          error_reasons: [abort, error]      # optional; the default
        objective: 0.999
        period: 30d                          # 28d or 30d; default 30d
        labels: {team: inference}            # optional; added to the SLO's alerts
      - name: chat-ttft
        namespace: llm
        deployment: chat-vllm
        engine: vllm                         # required for latency: bucket layouts differ
        sli:
          type: latency                      # fraction of requests at or under the threshold
          metric: llm_time_to_first_token_seconds
          threshold: 0.5                     # seconds; must be one of the engine's buckets
        objective: 0.99

A latency SLI is read from histogram buckets, so its threshold must be a bucket boundary of
that engine's histogram (`inferwatch.exporters.buckets`); an engine started with custom buckets
states them under `sli.buckets`. Any other threshold is refused with the nearest valid ones.

`load(path)` and `parse(text, source)` raise `SpecError`, whose message names the file, the line
and the field (`slos.yaml:14: slos[1].sli.threshold: 0.3 is not a bucket boundary ...`).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inferwatch import schema
from inferwatch.alerts import promql
from inferwatch.exporters import buckets

# Histogram families a latency SLI may read.
LATENCY_FAMILIES: tuple[str, ...] = tuple(
    schema.family(name).name
    for name in (
        "llm_time_to_first_token_seconds",
        "llm_time_per_output_token_seconds",
        "llm_inter_token_latency_seconds",
        "llm_request_duration_seconds",
    )
)
AVAILABILITY_FAMILY = schema.family("llm_requests_finished_total").name
PERIODS: dict[str, int] = {"28d": 28, "30d": 30}
# Labels the generated rules set themselves; a spec's extra labels may not replace them.
RESERVED_LABELS = frozenset(
    ("alertname", "severity", "slo", "le", *schema.TARGET_LABELS, *schema.ENGINE_LABELS)
)
MAX_FILE_BYTES = 1_000_000
_MAX_NODES = 100_000

LatencyFamily = Literal[
    "llm_time_to_first_token_seconds",
    "llm_time_per_output_token_seconds",
    "llm_inter_token_latency_seconds",
    "llm_request_duration_seconds",
]


class FieldError(ValueError):
    """A cross-field check that failed, with the path of the field to blame."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(f"{_dotted(path)}: {message}")
        self.path = path
        self.message = message


class SpecError(ValueError):
    """A spec that cannot be used; the message names the file, line and field."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class AvailabilitySLI(BaseModel):
    """Error ratio: finished requests whose `reason` counts against availability."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["availability"]
    error_reasons: tuple[str, ...] = schema.ERROR_REASONS

    @field_validator("error_reasons")
    @classmethod
    def _known_reasons(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one finish reason that counts as an error")
        unknown = [r for r in value if r not in schema.FINISH_REASONS]
        if unknown:
            raise ValueError(
                f"unknown finish reason(s) {', '.join(map(repr, unknown))}; "
                f"the schema's reasons are {', '.join(schema.FINISH_REASONS)}"
            )
        if len(set(value)) != len(value):
            raise ValueError("a finish reason is listed twice")
        return tuple(sorted(value, key=schema.FINISH_REASONS.index))

    @property
    def family(self) -> str:
        return AVAILABILITY_FAMILY


class LatencySLI(BaseModel):
    """Fraction of requests with `metric` at or under `threshold` seconds (a bucket boundary)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["latency"]
    metric: LatencyFamily
    threshold: float = Field(gt=0, allow_inf_nan=False)
    # The engine's boundaries when it runs with custom buckets; default: the engine's defaults.
    buckets: tuple[float, ...] | None = None

    @field_validator("buckets")
    @classmethod
    def _sorted_buckets(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list the engine's bucket boundaries, or leave `buckets` out")
        if any(not math.isfinite(b) or b <= 0 for b in value):
            raise ValueError("bucket boundaries are positive, finite seconds")
        if list(value) != sorted(set(value)):
            raise ValueError("bucket boundaries must be strictly increasing")
        return value

    @property
    def family(self) -> str:
        return self.metric

    @property
    def le(self) -> str:
        """The `le` label value of the threshold's bucket, as the exporter writes it."""
        return buckets.le_text(self.threshold)


SLI = Annotated[AvailabilitySLI | LatencySLI, Field(discriminator="type")]


class SLOSpec(BaseModel):
    """One SLO of one deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique SLO name, a DNS label, e.g. chat-ttft.")
    description: str = ""
    namespace: str
    deployment: str
    engine: str | None = None
    models: tuple[str, ...] = ()
    sli: SLI
    objective: float = Field(gt=0, lt=1, allow_inf_nan=False)
    period: Literal["28d", "30d"] = "30d"
    labels: dict[str, str] = Field(default_factory=dict)

    # Namespace, deployment and name reach PromQL as label values: Kubernetes names only.
    @field_validator("name")
    @classmethod
    def _slo_name(cls, value: str) -> str:
        return promql.validate_slo_name(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return promql.validate_namespace(value)

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, value: str) -> str:
        return promql.validate_deployment(value)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str | None) -> str | None:
        if value is not None and value not in schema.ENGINES:
            raise ValueError(f"unknown engine {value!r}; known: {', '.join(schema.ENGINES)}")
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for model in value:
            promql.validate_model(model)  # free text, escaped when rendered
        if len(set(value)) != len(value):
            raise ValueError("a model is listed twice")
        return value

    @field_validator("objective", mode="before")
    @classmethod
    def _ratio_not_percent(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value == 1:
                raise ValueError("an objective of 1 leaves no error budget: use e.g. 0.999")
            if 1 < value < 100:
                raise ValueError(
                    f"{value:g} looks like a percentage: the objective is a ratio, "
                    f"e.g. {value / 100:g} for {value:g}%"
                )
        return value

    @field_validator("labels")
    @classmethod
    def _label_set(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not promql.LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a Prometheus label name")
            if name in RESERVED_LABELS:
                raise ValueError(f"label {name!r} is set by the generated rules")
            # Rule label values are templates in Prometheus; a literal value must stay literal.
            if "{{" in text or "}}" in text or any(ord(c) < 0x20 for c in text):
                raise ValueError(f"label {name}={text!r}: no templates or control characters")
        return value

    @model_validator(mode="after")
    def _threshold_is_a_boundary(self) -> SLOSpec:
        if not isinstance(self.sli, LatencySLI):
            return self
        sli = self.sli
        if sli.buckets is not None:
            valid, origin = sli.buckets, "sli.buckets"
        else:
            if self.engine is None:
                raise FieldError(
                    ("engine",),
                    "a latency SLI needs the engine: bucket boundaries differ between engines "
                    f"(one of {', '.join(buckets.DEFAULT_BUCKETS)})",
                )
            valid = buckets.boundaries(self.engine, sli.metric)
            origin = f"{self.engine}'s default {sli.metric} buckets"
            if not valid:
                reported = [f for f in LATENCY_FAMILIES if buckets.boundaries(self.engine, f)]
                raise FieldError(
                    ("sli", "metric"),
                    f"{self.engine} does not report {sli.metric}"
                    + (f"; it reports {', '.join(reported)}" if reported else "")
                    + " (an engine started with custom buckets: list them under sli.buckets)",
                )
        if sli.le not in {buckets.le_text(b) for b in valid}:
            raise FieldError(
                ("sli", "threshold"),
                f"{sli.threshold:g} is not a bucket boundary of {origin}, so the fraction of "
                f"requests under it cannot be read; nearest: {_nearest(sli.threshold, valid)}",
            )
        return self

    @property
    def period_days(self) -> int:
        return PERIODS[self.period]

    @property
    def error_budget(self) -> float:
        return 1 - self.objective


class SLOFile(BaseModel):
    """A spec file: `slos:`, a list of SLOs with unique names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slos: tuple[SLOSpec, ...]

    @model_validator(mode="after")
    def _unique_names(self) -> SLOFile:
        if not self.slos:
            raise FieldError(("slos",), "list at least one SLO")
        seen: dict[str, int] = {}
        for i, slo in enumerate(self.slos):
            if slo.name in seen:
                first = seen[slo.name]
                raise FieldError(("slos", i, "name"), f"{slo.name!r} is already slos[{first}]")
            seen[slo.name] = i
        return self


def _nearest(value: float, valid: Sequence[float]) -> str:
    """The boundaries just below and just above `value`."""
    i = bisect.bisect_left(valid, value)
    near = [valid[j] for j in (i - 1, i) if 0 <= j < len(valid)]
    return ", ".join(buckets.le_text(b) for b in near)


def _dotted(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_map(node: yaml.Node) -> dict[tuple[str | int, ...], int]:
    """1-based line of every key path in a composed YAML document; refuses duplicate keys."""
    lines: dict[tuple[str | int, ...], int] = {}
    stack: list[tuple[tuple[str | int, ...], yaml.Node]] = [((), node)]
    while stack:
        if len(lines) > _MAX_NODES:
            raise SpecError([f"more than {_MAX_NODES} YAML nodes: not an SLO spec"])
        path, current = stack.pop()
        lines.setdefault(path, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in current.value:
                name = str(key.value)
                if name in seen:
                    raise _DuplicateKey((*path, name), key.start_mark.line + 1)
                seen.add(name)
                lines[(*path, name)] = key.start_mark.line + 1
                stack.append(((*path, name), value))
        elif isinstance(current, yaml.SequenceNode):
            for i, item in enumerate(current.value):
                stack.append(((*path, i), item))
    return lines


class _DuplicateKey(Exception):
    def __init__(self, path: tuple[str | int, ...], line: int):
        self.path, self.line = path, line


def _error_path(error: dict[str, Any]) -> tuple[str | int, ...]:
    path = tuple(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        path += cause.path
    return path


def _locate(
    path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]
) -> tuple[int, tuple[str | int, ...]]:
    """The line of the deepest part of `path` present in the file, and the path as written.

    Pydantic's locations carry the tag of a discriminated union (`sli.latency.threshold`); parts
    that are not in the file are skipped.
    """
    found: tuple[str | int, ...] = ()
    for part in path:
        if (*found, part) in lines:
            found += (part,)
    return lines.get(found, 1), found


def _message(error: dict[str, Any]) -> str:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        return cause.message
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    return message


def parse(text: str, source: str = "<string>") -> tuple[SLOSpec, ...]:
    """The SLOs of one spec document; `source` names it in error messages."""
    if len(text.encode()) > MAX_FILE_BYTES:
        raise SpecError([f"{source}: larger than {MAX_FILE_BYTES} bytes: not an SLO spec"])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{source}{line}: not valid YAML: {problem}"]) from None
    if node is None:
        raise SpecError([f"{source}: empty; expected `slos:` with a list of SLOs"])
    try:
        lines = _line_map(node)
    except _DuplicateKey as dup:
        raise SpecError([f"{source}:{dup.line}: {_dotted(dup.path)}: duplicate key"]) from None
    if not isinstance(data, dict):
        found = type(data).__name__
        raise SpecError([f"{source}:1: expected a mapping with `slos:`, found a {found}"])
    try:
        return SLOFile.model_validate(data).slos
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            line, _ = _locate(_error_path(error), lines)
            problems.append(f"{source}:{line}: {_dotted(_error_path(error))}: {_message(error)}")
        raise SpecError(_clean_paths(problems)) from None


def _clean_paths(problems: list[str]) -> list[str]:
    # The union tag in pydantic's location (`sli.latency.threshold`) is not a field the user wrote.
    return [re.sub(r"\.sli\.(availability|latency)\b", ".sli", p) for p in problems]


def load(path: str | Path) -> tuple[SLOSpec, ...]:
    """The SLOs of one spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot read: {exc}"]) from None
    return parse(text, str(path))


def load_all(paths: Iterable[str | Path]) -> tuple[SLOSpec, ...]:
    """The SLOs of several files or directories (their `*.yaml`/`*.yml`, in name order).

    SLO names are unique across all of them.
    """
    specs: list[SLOSpec] = []
    origin: dict[str, Path] = {}
    for path in _expand(paths):
        for spec in load(path):
            if spec.name in origin:
                raise SpecError(
                    [f"{path}: SLO {spec.name!r} is already defined in {origin[spec.name]}"]
                )
            origin[spec.name] = path
            specs.append(spec)
    return tuple(specs)


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files
