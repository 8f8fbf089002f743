"""`promtool` for tests: rule checks, rule unit tests, and backfilling history.

Each function raises `PromtoolError` carrying promtool's own output when promtool fails, so a
failing test shows which rule or which line was wrong.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import require_tool

TIMEOUT = 300


class PromtoolError(RuntimeError):
    """promtool exited non-zero; the message holds the command and its output."""


def run(*args: str | Path, timeout: float = TIMEOUT) -> str:
    """Run `promtool args...`; its combined output, or `PromtoolError` with it."""
    command = [require_tool("promtool"), *map(str, args)]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise PromtoolError(f"{' '.join(command)}: no answer after {timeout}s") from None
    if done.returncode != 0:
        raise PromtoolError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}")
    return done.stdout


def check_rules(*paths: str | Path) -> str:
    """`promtool check rules`: syntax, PromQL and template checks of rule files."""
    return run("check", "rules", *paths)


def test_rules(*paths: str | Path) -> str:
    """`promtool test rules`: run rule unit-test files (each names its own rule_files)."""
    return run("test", "rules", *paths)


# Not a test function, whatever its name says.
test_rules.__test__ = False  # type: ignore[attr-defined]


def backfill(openmetrics_text: str, storage_path: str | Path) -> str:
    """Write `openmetrics_text` as TSDB blocks into `storage_path`; promtool's report.

    Uses `promtool tsdb create-blocks-from openmetrics`. Run it *before* starting Prometheus
    on `storage_path` (the blocks are picked up when the TSDB opens). What promtool demands of
    the input, which `openmetrics()` below takes care of:

    - OpenMetrics, not the Prometheus text format: the text must end with `# EOF`
      (added here when missing);
    - every sample needs a timestamp, in **seconds** (floats allowed), not milliseconds;
    - a counter family is declared without `_total` (`# TYPE x counter`) and its samples are
      named `x_total`; the lines of one family are contiguous, and each series' samples are in
      time order;
    - promtool cuts 2-hour blocks aligned to the epoch. Blocks must not overlap the head of a
      running Prometheus (the last ~3 hours it is still writing): backfill into storage that
      no Prometheus has open, and prefer history that ends before "now" when the test then
      scrapes new samples on top of it.

    The server must keep the data: the harness' Prometheus uses a ten-year retention, so old
    blocks are not deleted on start. Queries on history use `at=` (instant) or a range.
    """
    if not openmetrics_text.rstrip().endswith("# EOF"):
        openmetrics_text = openmetrics_text.rstrip("\n") + "\n# EOF\n"
    storage = Path(storage_path)
    storage.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om.txt", delete=False) as f:
        f.write(openmetrics_text)
        source = Path(f.name)
    try:
        return run("tsdb", "create-blocks-from", "openmetrics", "--quiet", source, storage)
    finally:
        source.unlink(missing_ok=True)


@dataclass
class Family:
    """One metric family for `openmetrics()`: its samples as (labels, [(unix_s, value)])."""

    name: str
    type: str = "gauge"
    help: str = ""
    series: list[tuple[Mapping[str, str], Sequence[tuple[float, float]]]] = field(
        default_factory=list
    )

    def add(self, labels: Mapping[str, str], points: Iterable[tuple[float, float]]) -> Family:
        """Add a series; `labels` may include `le` (histogram buckets) and a `__name__`
        suffix is given by naming the sample, e.g. `{"__name__": "x_bucket", "le": "0.5"}`."""
        self.series.append((dict(labels), sorted(points)))
        return self


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def openmetrics(families: Iterable[Family]) -> str:
    """OpenMetrics text (with `# EOF`) that `backfill` accepts.

    A counter family's name may be given with or without `_total`; its samples get `_total`.
    Series default to the family name; give `__name__` in a series' labels for the suffixed
    samples of a histogram (`_bucket`, `_sum`, `_count`).
    """
    lines: list[str] = []
    for family in families:
        base = family.name
        if family.type == "counter":
            base = base.removesuffix("_total")
        lines.append(f"# TYPE {base} {family.type}")
        if family.help:
            lines.append(f"# HELP {base} {_escape(family.help)}")
        default = f"{base}_total" if family.type == "counter" else base
        for labels, points in family.series:
            labels = dict(labels)
            name = labels.pop("__name__", default)
            rendered = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            selector = f"{name}{{{rendered}}}" if rendered else name
            lines.extend(f"{selector} {_number(v)} {_number(t)}" for t, v in points)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
