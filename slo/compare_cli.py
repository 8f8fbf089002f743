"""`inferwatch compare`: read, compare, print; thresholds from a file and `--set`.

Exit codes, for pipelines: 0 promote, 1 rollback, 3 hold (compare again later), 2 an error
(bad input, an unknown deployment, Prometheus unreachable) with one line on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from inferwatch.slo.compare_models import (
    SLIS,
    CompareInputError,
    Comparison,
    SLIResult,
    Thresholds,
    parse_ref,
)

# The command line waits longer for Prometheus than the API does.
TIMEOUT = 30.0
EXIT_CODES = {"promote": 0, "rollback": 1, "hold": 3}
WIDTH = 100


def load_thresholds(path: Path | None, sets: Sequence[str]) -> Thresholds:
    """Thresholds from a YAML or JSON file, then `NAME=VALUE` overrides; CompareInputError with
    the file or the setting that is wrong."""
    import yaml

    values: dict[str, Any] = {}
    where = "--set"
    if path is not None:
        where = f"--thresholds {path}"
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CompareInputError(f"{where}: cannot read it ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise CompareInputError(f"{where}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1})" if mark is not None else ""
            raise CompareInputError(f"{where}: not valid YAML or JSON{at}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise CompareInputError(
                f"{where}: expected a mapping of threshold names to values, "
                f"got {type(loaded).__name__}"
            )
        values.update(loaded)
    for item in sets:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise CompareInputError(f"--set {item!r}: expected NAME=VALUE, e.g. min_requests=500")
        try:
            values[name.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise CompareInputError(f"--set {item!r}: cannot read the value") from None
        where = "--set" if path is None else f"{where} and --set"
    try:
        return Thresholds(**{str(k): v for k, v in values.items()})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'thresholds'}: {e['msg']}"
            for e in exc.errors()
        )
        raise CompareInputError(f"{where}: {problems}") from None


def run(
    prometheus: str,
    baseline: str,
    candidate: str,
    window: str,
    thresholds: Thresholds,
) -> Comparison:
    """The comparison; CompareInputError (bad input), or RuntimeError/LookupError from the
    reading, which the command prints as one line."""
    from inferwatch.slo.compare_prometheus import compare_deployments
    from inferwatch.slo.prom import Deadline, Prometheus

    base, cand = parse_ref(baseline, "--baseline"), parse_ref(candidate, "--candidate")
    try:
        prom = Prometheus(prometheus, timeout=TIMEOUT)
    except ValueError as exc:
        raise CompareInputError(str(exc)) from None
    try:
        return compare_deployments(
            prom, base, cand, window, thresholds, Deadline(TIMEOUT), time.time()
        )
    finally:
        prom.close()


# ---- the table ----------------------------------------------------------------------------


def _value(r: SLIResult, value: float | None) -> str:
    if value is None:
        return "-"
    if r.unit == "seconds":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    if r.unit == "ratio":
        return f"{value:.2%}"
    return f"{value:.4g}"


def _change(r: SLIResult) -> str:
    if r.difference is None:
        return "-"
    if r.unit == "ratio":
        return f"{r.difference * 100:+.2g} pt"
    if r.relative_difference is not None:
        return f"{r.relative_difference:+.1%}"
    return f"{r.difference:+.3g}"


def _threshold(r: SLIResult) -> str:
    t = r.threshold
    if t is None:
        return "not set"
    if r.sli == "tokens_per_gpu":
        return f"-{t:.0%}"
    if r.unit == "ratio":
        return f"+{t * 100:g} pt"
    if r.unit == "preemptions":
        return f"+{t:g}/req"
    return f"+{t:.0%}"


def _label(r: SLIResult) -> str:
    if r.sli in ("ttft", "tpot", "e2e"):
        return f"{r.title} {r.figure}"
    if r.sli == "tokens_per_gpu":
        per = r.details.get("per", "GPU")
        return f"tokens/s per {per} (mean)"
    if r.sli == "kv_cache":
        return f"{r.title} (mean)"
    return r.title


def _p_value(r: SLIResult) -> str:
    if r.p_value is None:
        return "-"
    return f"{r.p_value:.2g}" if r.p_value >= 1e-12 else "<1e-12"


def _variant(role: str, c: Comparison) -> str:
    v = c.baseline if role == "baseline" else c.candidate
    engines = ", ".join(v.engines) or "engine unknown"
    models = f" ({', '.join(v.models)})" if v.models else ""
    requests = "no" if v.requests is None else f"{v.requests:.0f}"
    rate = f", {v.request_rate:.3g}/s" if v.request_rate is not None else ""
    return f"{role:<9}  {v.namespace}/{v.deployment}: {engines}{models}, {requests} requests{rate}"


def render_table(c: Comparison) -> str:
    import textwrap

    when = datetime.fromtimestamp(c.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"inferwatch compare over {c.window} to {when} (per-step figures every {c.resolution})",
        _variant("baseline", c),
        _variant("candidate", c),
        "",
        f"{'SLI':<28} {'baseline':>10} {'candidate':>10} {'change':>9} {'p-value':>8} "
        f"{'threshold':>10}  status",
    ]
    for key in SLIS:
        r = c.slis.get(key)
        if r is None:
            continue
        name = _label(r)
        lines.append(
            f"{name:<28} {_value(r, r.baseline):>10} {_value(r, r.candidate):>10} "
            f"{_change(r):>9} {_p_value(r):>8} {_threshold(r):>10}  {r.status}"
        )
    lines.append("")
    for key in SLIS:
        r = c.slis.get(key)
        if r is None:
            continue
        text = f"{key}: {r.reason}" + "".join(f"; {note}" for note in r.notes)
        lines.append(textwrap.fill(text, WIDTH, subsequent_indent="    "))
    for note in c.notes:
        lines.append(textwrap.fill(f"note: {note}", WIDTH, subsequent_indent="    "))
    lines.append("")
    lines.append(f"verdict: {c.verdict} (exit code {exit_code(c)})")
    lines.append(textwrap.fill(c.summary, WIDTH))
    lines.append("(--json shows each figure's PromQL and the value it returned.)")
    return "\n".join(lines) + "\n"


def render(c: Comparison, as_json: bool) -> str:
    if as_json:
        return c.model_dump_json(indent=2) + "\n"
    return render_table(c)


def exit_code(c: Comparison) -> int:
    return EXIT_CODES[c.verdict]
