"""The `le` shards of a histogram's bucket rates: one recording rule per contiguous slice.

Prometheus evaluates the rules of a group one after another, and reading one histogram's
buckets over 1,000 pods (up to 26,000 series) takes 80-160 ms, whatever the expression does with
them: the cost is per series selected. Split by `le` into a few groups, each reading a slice,
every group stays under 50 ms (bench/rules.py).

The slices come from the engines' default boundaries (`exporters/buckets.py`): their union,
sorted numerically, cut into contiguous shards of about equal weight, where a boundary weighs
as many engines as report it (the series an even fleet would have). Every shard but the last
selects its boundaries by name; the last is the complement of all the others, so `+Inf` and any
custom boundary (vLLM `--custom-histogram-buckets`) land there. Together they select every `le`
once, whatever the engines report. TTFT in two shards:

    le=~"0\\\\.001|0\\\\.005|0\\\\.01|...|2\\\\.0|2\\\\.5"      18 boundaries, weight 26
    le!~"0\\\\.001|0\\\\.005|0\\\\.01|...|2\\\\.0|2\\\\.5"      16 boundaries and +Inf, weight 26
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

from inferwatch import schema
from inferwatch.alerts import conventions, promql
from inferwatch.alerts.promql import Matcher
from inferwatch.exporters import buckets

LE = "le"
INF = buckets.le_text(float("inf"))


@dataclass(frozen=True)
class Shard:
    """One slice of a histogram's buckets: the default boundaries it holds (`le` text, the last
    shard also `+Inf`), their weight, and the matcher selecting it (None: a single shard, every
    bucket)."""

    values: tuple[str, ...]
    weight: int
    matcher: Matcher | None


def weights(family: str) -> dict[str, int]:
    """The family's default boundaries of every engine, numerically sorted, each with the number
    of engines reporting it, then `+Inf`, which every engine reports."""
    name = schema.family(family).name
    layouts = [fams[name] for fams in buckets.DEFAULT_BUCKETS.values() if name in fams]
    counts = Counter(buckets.le_text(b) for layout in layouts for b in layout)
    ordered = sorted(counts, key=float)
    return {**{le: counts[le] for le in ordered}, INF: len(layouts)}


def max_count(families: Sequence[str] = conventions.LATENCY_HISTOGRAMS) -> int:
    """The most shards every family can take: one per default boundary of the family with the
    fewest, plus the last (`+Inf` and custom boundaries)."""
    return min(len(weights(family)) for family in families)


def cuts(items: Sequence[int], count: int) -> list[int]:
    """Where to cut `items` (weights, in order) into `count` non-empty contiguous parts of about
    equal weight: the k-th cut is where the running total comes nearest k/count of the whole."""
    if not 1 <= count <= len(items):
        raise ValueError(f"cannot cut {len(items)} boundaries into {count} non-empty shards")
    running = [0, *accumulate(items)]
    total = running[-1]
    out: list[int] = []
    for k in range(1, count):
        # Leave at least one item before this cut (after the last) and one per later part.
        candidates = range((out[-1] if out else 0) + 1, len(items) - (count - k) + 1)
        out.append(min(candidates, key=lambda i: abs(running[i] * count - k * total)))
    return out


def shards(family: str, count: int) -> tuple[Shard, ...]:
    """The family's buckets in `count` shards; one shard has no matcher (every bucket)."""
    table = weights(family)
    if not 1 <= count <= len(table):
        raise ValueError(
            f"{schema.family(family).name} has {len(table) - 1} default boundaries: "
            f"it takes 1 to {len(table)} shards, not {count}"
        )
    values, items = list(table), list(table.values())
    bounds = [0, *cuts(items, count), len(values)]
    parts = [(tuple(values[a:b]), sum(items[a:b])) for a, b in pairwise(bounds)]
    if count == 1:
        return (Shard(parts[0][0], parts[0][1], None),)
    named = [p for part, _ in parts[:-1] for p in part]
    out = [Shard(part, weight, promql.one_of(LE, part)) for part, weight in parts[:-1]]
    last, weight = parts[-1]
    out.append(Shard(last, weight, Matcher(LE, "!~", promql.regex_exact(named))))
    return tuple(out)
