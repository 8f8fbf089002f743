"""The comparison's rules on figures built here (no Prometheus): verdicts, thresholds, the data
a hold needs, bucket layouts that differ, the input checks, and the CLI's and the API's answers
to bad input and to a Prometheus that is down."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from inferwatch.cli import app as cli_app
from inferwatch.slo import compare_cli, compare_prometheus
from inferwatch.slo.app import create_app
from inferwatch.slo.compare import compare
from inferwatch.slo.compare_latency import common_bounds, cumulative, share_above, tail_blocks
from inferwatch.slo.compare_models import (
    CompareInputError,
    Layout,
    Ref,
    Thresholds,
    Variant,
    Window,
    duration_text,
    parse_ref,
    validate_window,
)
from inferwatch.slo.prom import Deadline, Prometheus, RangeSeries, Sample
from inferwatch.slo.service import NotFound, ServiceConfig, SLOService
from inferwatch.slo.settings import Settings
from tests.conftest import ROOT

VLLM_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
TPOT = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
E2E = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0)
STEP = 15.0
WINDOW = Window("10m", "15s", 1_700_000_000.0)


def _layout(values: list[float], bounds: tuple[float, ...]) -> Layout:
    edges = (*bounds, math.inf)
    return {le: (_text(le), float(sum(1 for v in values if v <= le))) for le in edges}


def _text(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def make_variant(
    deployment: str,
    *,
    per_step: int = 60,
    steps: int = 40,
    slower: float = 1.0,
    error_share: float = 0.0,
    kv: float = 0.3,
    preemption_share: float = 0.0,
    seed: int = 0,
    ttft_bounds: tuple[float, ...] = VLLM_TTFT,
    engine: str = "vllm",
) -> Variant:
    """A variant whose requests' latencies are drawn from fixed distributions, `slower` times
    as long, in `steps` steps of `per_step` requests."""
    rng = random.Random(seed)
    v = Variant(Ref("llm", deployment), engines=(engine,), models=("m",))
    histograms: dict[str, tuple[tuple[float, ...], float, float]] = {
        "ttft": (ttft_bounds, 0.05, 0.5),
        "tpot": (TPOT, 0.02, 0.3),
        "e2e": (E2E, 0.8, 0.4),
    }
    window_values: dict[str, list[float]] = {k: [] for k in histograms}
    for i in range(steps):
        t = WINDOW.at - (steps - 1 - i) * STEP
        errors = sum(1 for _ in range(per_step) if rng.random() < error_share)
        v.step_finished[t] = {"stop": float(per_step - errors), "error": float(errors)}
        preempted = sum(1 for _ in range(per_step) if rng.random() < preemption_share)
        v.steps.setdefault("preemptions", {})[t] = float(preempted)
        v.steps.setdefault("kv", {})[t] = min(1.0, max(0.0, rng.gauss(kv, 0.03)))
        v.steps.setdefault("rate", {})[t] = 900.0 + rng.gauss(0, 30)
        v.steps.setdefault("pods", {})[t] = 1.0
        for key, (bounds, median, sigma) in histograms.items():
            values = [slower * rng.lognormvariate(math.log(median), sigma) for _ in range(per_step)]
            window_values[key] += values
            v.step_histograms.setdefault(key, {})[t] = {engine: _layout(values, bounds)}
    for key, (bounds, _median, _sigma) in histograms.items():
        v.histograms[key] = {engine: _layout(window_values[key], bounds)}
    total_errors = math.fsum(s["error"] for s in v.step_finished.values())
    v.finished = {"stop": per_step * steps - total_errors, "error": total_errors}
    v.counters = {
        "preemptions": math.fsum(v.steps["preemptions"].values()),
        "generation_tokens": 900.0 * steps * STEP,
    }
    return v


BASE = make_variant("chat-v1", seed=1)


def test_equal_variants_with_enough_data_are_promoted() -> None:
    c = compare(BASE, make_variant("chat-v2", seed=2), Thresholds(), WINDOW)
    assert c.verdict == "promote", c.summary
    judged = {k: r.status for k, r in c.slis.items()}
    assert judged == {
        "ttft": "pass",
        "tpot": "pass",
        "e2e": "pass",
        "error_ratio": "pass",
        "tokens_per_gpu": "not-judged",  # no threshold by default
        "kv_cache": "pass",
        "preemptions": "pass",
    }
    assert c.needed is None
    # The significance is split over the six judged SLIs.
    assert all(r.significance == pytest.approx(0.05 / 6) for r in c.slis.values() if r.p_value)
    assert c.summary.startswith("Promote: no SLI is worse beyond its threshold")


def test_a_slower_candidate_is_rolled_back_on_every_latency_sli() -> None:
    c = compare(BASE, make_variant("chat-v2", seed=2, slower=1.3), Thresholds(), WINDOW)
    assert c.verdict == "rollback"
    for key in ("ttft", "tpot", "e2e"):
        r = c.slis[key]
        assert r.status == "fail", r.reason
        assert r.p_value is not None and r.p_value < r.significance  # type: ignore[operator]
        assert r.details["candidate_share_above"] > r.details["baseline_share_above"]  # type: ignore[operator]
    # The quantiles read through the buckets: close where they are narrow around the p95;
    # TPOT's p95 sits in the wide (0.025, 0.05] bucket, where interpolation understates it.
    assert c.slis["ttft"].relative_difference == pytest.approx(0.3, abs=0.08)
    assert c.slis["e2e"].relative_difference == pytest.approx(0.3, abs=0.08)
    assert 0 < c.slis["tpot"].relative_difference < 0.3  # type: ignore[operator]
    assert c.slis["ttft"].details["tail_boundary_seconds"] == 0.1  # p95 0.158 s in (0.1, 0.25]
    assert c.slis["error_ratio"].status == "pass"
    assert c.summary.startswith("Roll back: time to first token: p95")


def test_a_small_regression_within_the_threshold_passes_and_a_faster_candidate_too() -> None:
    slightly = compare(BASE, make_variant("chat-v2", seed=2, slower=1.02), Thresholds(), WINDOW)
    assert slightly.slis["ttft"].status == "pass", slightly.slis["ttft"].reason
    faster = compare(BASE, make_variant("chat-v2", seed=2, slower=0.7), Thresholds(), WINDOW)
    assert faster.verdict == "promote"
    assert faster.slis["ttft"].p_value > 0.99  # type: ignore[operator]


def test_more_errors_beyond_the_threshold_roll_back_and_within_it_pass() -> None:
    worse = make_variant("chat-v2", seed=2, error_share=0.03)
    c = compare(BASE, worse, Thresholds(), WINDOW)
    assert c.verdict == "rollback"
    r = c.slis["error_ratio"]
    assert r.status == "fail"
    assert r.baseline == 0.0
    assert r.candidate == pytest.approx(0.03, abs=0.006)
    assert "points" in r.reason
    c = compare(BASE, worse, Thresholds(error_ratio_max_increase=0.1), WINDOW)
    assert c.slis["error_ratio"].status == "pass"


def test_preemptions_and_kv_cache_are_judged_per_request_and_per_step() -> None:
    c = compare(
        BASE, make_variant("chat-v2", seed=2, preemption_share=0.2, kv=0.6), Thresholds(), WINDOW
    )
    assert c.slis["preemptions"].status == "fail"
    assert c.slis["preemptions"].candidate == pytest.approx(0.2, abs=0.03)
    assert c.slis["kv_cache"].status == "fail"
    assert c.slis["kv_cache"].difference == pytest.approx(0.3, abs=0.03)
    assert c.verdict == "rollback"


def test_throughput_is_judged_only_with_a_threshold() -> None:
    cand = make_variant("chat-v2", seed=2)
    for t in cand.steps["rate"]:
        cand.steps["rate"][t] *= 0.5
    assert compare(BASE, cand, Thresholds(), WINDOW).slis["tokens_per_gpu"].status == "not-judged"
    c = compare(BASE, cand, Thresholds(throughput_max_drop=0.1), WINDOW)
    r = c.slis["tokens_per_gpu"]
    assert r.status == "fail"
    assert r.relative_difference == pytest.approx(-0.5, abs=0.03)
    assert r.details["per"] == "pod"  # no GPU series here
    assert r.significance == pytest.approx(0.05 / 7)  # seven SLIs judged now


def test_a_candidate_with_too_few_requests_is_held_with_how_much_more_it_needs() -> None:
    quiet = make_variant("chat-v2", seed=2, per_step=2)  # 80 requests in the window
    c = compare(BASE, quiet, Thresholds(), WINDOW)
    assert c.verdict == "hold"
    for key in ("ttft", "tpot", "e2e", "error_ratio", "preemptions"):
        assert c.slis[key].status == "insufficient"
        assert "the candidate has 80" in c.slis[key].reason
        assert c.slis[key].needed_factor == pytest.approx(200 / 80)
    needed = c.needed
    assert needed is not None
    assert needed.factor == pytest.approx(2.5)
    assert needed.candidate_requests == 120
    # 80 requests over 10 minutes serving: 120 more take 15 minutes.
    assert needed.seconds == pytest.approx(900.0)
    assert needed.window == "25m"
    assert "120 more candidate requests, about 15 min" in c.summary


def test_a_candidate_without_requests_is_held_and_asks_about_traffic() -> None:
    silent = make_variant("chat-v2", seed=2, per_step=0)
    c = compare(BASE, silent, Thresholds(), WINDOW)
    assert c.verdict == "hold"
    assert c.needed is not None and c.needed.factor is None
    assert "finished no requests" in c.needed.reason
    json.loads(c.model_dump_json())  # nothing infinite or NaN reaches the JSON


def test_a_difference_between_threshold_and_noise_is_held() -> None:
    """A TTFT 8% higher with a 10% tolerance, on little data: not shown to be under the
    tolerance, not shown to be beyond it."""
    few = Thresholds(min_requests=100)
    c = compare(
        make_variant("chat-v1", seed=1, per_step=6),
        make_variant("chat-v2", seed=2, per_step=6, slower=1.08),
        few,
        WINDOW,
    )
    r = c.slis["ttft"]
    assert r.status == "insufficient", r.reason
    assert "could be up to" in r.reason
    assert r.needed_factor is not None and r.needed_factor > 1
    assert c.verdict == "hold"


def test_different_bucket_layouts_are_compared_on_the_boundaries_they_share() -> None:
    tgi_bounds = (0.005, 0.01, 0.04, 0.08, 0.25, 1.0, 5.0)  # a subset, as another engine's
    cand = make_variant("chat-v2", seed=2, ttft_bounds=tgi_bounds, engine="tgi")
    c = compare(BASE, cand, Thresholds(), WINDOW)
    r = c.slis["ttft"]
    assert any("compared on the 8 boundaries they share" in n for n in r.notes)
    assert any("different engines" in n for n in c.notes)
    assert r.status == "pass"
    # The quantile evidence reads only the shared boundaries of each variant.
    quantile = next(e for e in r.evidence if e.name.startswith("candidate ttft p95"))
    assert 'le=~"0\\\\.005|0\\\\.01|0\\\\.04|0\\\\.08|0\\\\.25|1\\\\.0|5\\\\.0|\\\\+Inf"' in (
        quantile.promql
    )


def test_a_histogram_one_variant_lacks_is_not_judged_and_does_not_block() -> None:
    cand = make_variant("chat-v2", seed=2)
    del cand.histograms["tpot"]
    c = compare(BASE, cand, Thresholds(), WINDOW)
    assert c.slis["tpot"].status == "not-judged"
    assert "llm_time_per_output_token_seconds of the candidate" in c.slis["tpot"].reason
    assert c.verdict == "promote"
    # Five SLIs judged: the significance is split five ways.
    assert c.slis["ttft"].significance == pytest.approx(0.01)


def test_nothing_judged_is_a_hold_not_a_promotion() -> None:
    nothing = Thresholds(
        ttft_max_regression=None,
        tpot_max_regression=None,
        e2e_max_regression=None,
        error_ratio_max_increase=None,
        kv_cache_max_increase=None,
        preemptions_max_increase=None,
    )
    c = compare(BASE, make_variant("chat-v2", seed=2), nothing, WINDOW)
    assert c.verdict == "hold"
    assert "no SLI could be judged" in c.summary


def test_a_tolerance_of_zero_can_never_be_shown() -> None:
    cand = make_variant("chat-v2", seed=2)
    cand.steps["kv"] = dict(BASE.steps["kv"])  # the very same usage: a difference of 0
    c = compare(BASE, cand, Thresholds(kv_cache_max_increase=0), WINDOW)
    assert c.slis["kv_cache"].status == "insufficient"
    assert c.slis["kv_cache"].needed_factor is None  # no amount of data
    assert c.verdict == "hold"
    assert c.needed is not None and c.needed.factor is None
    assert "More data would not settle it" in c.needed.reason


# ---- pieces ------------------------------------------------------------------------------------


def test_share_above_interpolates_within_a_bucket_as_histogram_quantile_does() -> None:
    buckets = [(0.1, 50.0), (0.2, 90.0), (math.inf, 100.0)]
    assert share_above(buckets, 0.2) == pytest.approx(0.1)
    assert share_above(buckets, 0.15) == pytest.approx(0.3)  # half of the 40 in (0.1, 0.2]
    assert share_above(buckets, 0.05) == pytest.approx(0.75)  # the first bucket starts at 0
    assert share_above(buckets, 7.0) == pytest.approx(0.1)  # beyond the last finite boundary
    assert share_above([(0.1, 0.0), (math.inf, 0.0)], 0.05) == 0.0


def test_common_bounds_and_cumulative_counts_over_engines() -> None:
    a = {0.1: ("0.1", 3.0), 0.5: ("0.5", 5.0), math.inf: ("+Inf", 6.0)}
    b = {0.1: ("0.1", 1.0), 0.2: ("0.2", 2.0), math.inf: ("+Inf", 4.0)}
    assert common_bounds([a, b]) == [0.1, math.inf]
    assert cumulative({"x": a, "y": b}, [0.1, math.inf]) == [(0.1, 4.0), (math.inf, 10.0)]
    steps = {1.0: {"x": a}, 2.0: {"x": b}, 3.0: {}}
    # Step 2 has no 0.5 bucket and step 3 no data: left out.
    assert tail_blocks(steps, 0.5) == [(1.0, 6.0)]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(75, "1m15s"), (90, "1m30s"), (119.2, "2m"), (121, "3m"), (3600, "1h"), (5430, "1h31m")],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("chat-v1", "expected NAMESPACE/DEPLOYMENT"),
        ("llm/chat/v1", "expected NAMESPACE/DEPLOYMENT"),
        ("", "expected NAMESPACE/DEPLOYMENT"),
        ("llm/", "deployment '' is not valid"),
        ('llm/chat"} or vector(1) #', "is not valid"),
        ("LLM/chat", "namespace 'LLM' is not valid"),
        ("llm/chat-v1\n", "is not valid"),
        ('a"b/chat', "namespace 'a\"b' is not valid"),
    ],
)
def test_malformed_or_unsafe_deployment_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(CompareInputError, match=r"^candidate ") as info:
        parse_ref(text, "candidate")
    assert message in str(info.value)


def test_a_deployment_reference() -> None:
    ref = parse_ref("llm/chat-v1.canary", "baseline")
    assert (ref.namespace, ref.deployment) == ("llm", "chat-v1.canary")
    assert ref.name == "llm/chat-v1.canary"


@pytest.mark.parametrize(
    ("window", "message"),
    [("5x", "Prometheus duration"), ("30s", "between 1m and 31d"), ("32d", "between"), ("", "")],
)
def test_bad_windows_are_refused(window: str, message: str) -> None:
    with pytest.raises(CompareInputError, match=f"^window {re.escape(repr(window))}: .*{message}"):
        validate_window(window)
    assert validate_window("1h30m") == "1h30m"


# ---- thresholds from a file ---------------------------------------------------------------------


def test_thresholds_come_from_yaml_or_json_then_set(tmp_path: Path) -> None:
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text("ttft_max_regression: 0.2\nmin_requests: 500\nthroughput_max_drop: 0.1\n")
    t = compare_cli.load_thresholds(yaml_file, ["min_requests=50", "throughput_max_drop=null"])
    assert (t.ttft_max_regression, t.min_requests, t.throughput_max_drop) == (0.2, 50, None)
    json_file = tmp_path / "t.json"
    json_file.write_text('{"significance": 0.01}')
    assert compare_cli.load_thresholds(json_file, []).significance == 0.01
    assert compare_cli.load_thresholds(None, []) == Thresholds()


@pytest.mark.parametrize(
    ("content", "sets", "message"),
    [
        ("ttft_max_regresion: 0.2\n", [], "ttft_max_regresion: Extra inputs are not permitted"),
        ("significance: 2\n", [], "significance: Input should be less than 0.5"),
        ("- 1\n- 2\n", [], "expected a mapping of threshold names to values, got list"),
        ("a: [\n", [], "not valid YAML or JSON (line 2)"),
        ("", ["min_requests"], "--set 'min_requests': expected NAME=VALUE"),
        ("", ["min_requests=lots"], "min_requests: Input should be a valid integer"),
        ("", ["kv_cache_max_increase=.nan"], "kv_cache_max_increase: Input should be a finite"),
    ],
)
def test_bad_thresholds_are_refused_in_one_line(
    tmp_path: Path, content: str, sets: list[str], message: str
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(content)
    with pytest.raises(CompareInputError) as info:
        compare_cli.load_thresholds(path if content else None, sets)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ---- reading Prometheus's answers ----------------------------------------------------------------


class FakePrometheus:
    """Answers a batch by query key (for what Prometheus itself cannot be made to answer)."""

    url = "http://fake"

    def __init__(self, answers: dict[str, list]) -> None:
        self.answers = answers
        self.sent: list[str] = []

    def batch(self, queries: dict, deadline: object) -> dict[str, list]:
        self.sent += [q.expr for q in queries.values()]
        return {key: self.answers.get(key, []) for key in queries}

    def instant(self, expr: str, at: float, deadline: object) -> list:
        self.sent.append(expr)
        return self.answers.get("lookback", [])


def _labels(ns: str, dep: str, **more: str) -> dict[str, str]:
    return {"namespace": ns, "deployment": dep, **more}


def test_reading_keeps_the_two_pairs_asked_for_and_drops_values_that_are_no_numbers() -> None:
    a, b = Ref("llm", "chat-v1"), Ref("other", "chat-v2")
    stray = _labels("llm", "chat-v2")  # matched by the regexes, not asked for
    at = 1_700_000_000.5
    answers = {
        "info": [Sample(_labels(r.namespace, r.deployment, engine="vllm", model="m"), 1.0)
                 for r in (a, b)] + [Sample({**stray, "engine": "tgi"}, 1.0)],
        "samples": [Sample(_labels("llm", "chat-v1"), 60.0)],
        "finished": [
            Sample(_labels("llm", "chat-v1", reason="stop"), 100.0),
            Sample(_labels("other", "chat-v2", reason="stop"), 50.0),
            Sample(_labels("other", "chat-v2", reason="error"), math.nan),
            Sample({**stray, "reason": "stop"}, 999.0),
        ],
        "buckets/ttft": [
            Sample(_labels("llm", "chat-v1", engine="vllm", le="0.1"), 40.0),
            Sample(_labels("llm", "chat-v1", engine="vllm", le="+Inf"), 100.0),
            Sample(_labels("llm", "chat-v1", engine="vllm", le="fast"), 7.0),
            Sample(_labels("other", "chat-v2", engine="vllm", le="0.1"), math.inf),
        ],
        "kv": [RangeSeries(_labels("llm", "chat-v1"), [(at - 1.5, 0.5), (at - 0.5, math.inf)])],
    }  # fmt: skip
    prom = FakePrometheus(answers)
    base, cand, window = compare_prometheus.read(prom, a, b, "1m", Deadline(5), at)  # type: ignore[arg-type]
    assert (base.engines, cand.engines) == (("vllm",), ("vllm",))
    assert base.finished == {"stop": 100.0}
    assert cand.finished == {"stop": 50.0}
    assert base.histograms["ttft"] == {"vllm": {0.1: ("0.1", 40.0), math.inf: ("+Inf", 100.0)}}
    assert "ttft" not in cand.histograms
    assert base.steps["kv"] == {at - 1.5: 0.5}
    # 60 scrapes in the last minute: 1 s apart, steps of 4 s.
    assert window.resolution == "4s"
    assert len(prom.sent) == 17
    assert all('namespace=~"llm|other"' in q for q in prom.sent)


def test_a_deployment_missing_from_the_window_is_named() -> None:
    a, b = Ref("llm", "chat-v1"), Ref("llm", "chat-v9")
    info = [Sample(_labels("llm", "chat-v1", engine="vllm"), 1.0)]
    prom = FakePrometheus({"info": info, "lookback": []})
    with pytest.raises(NotFound) as missing:
        compare_prometheus.read(prom, a, b, "1h", Deadline(5), 1e9)  # type: ignore[arg-type]
    assert str(missing.value).startswith("no series of deployment llm/chat-v9 in Prometheus")
    assert "within the last 7d" in str(missing.value)
    assert len(prom.sent) == 9  # the first batch and the look back, nothing more
    prom = FakePrometheus({"info": info, "lookback": [Sample(_labels("llm", "chat-v9"), 1.0)]})
    with pytest.raises(NotFound, match="no data of deployment llm/chat-v9 within the last 1h"):
        compare_prometheus.read(prom, a, b, "1h", Deadline(5), 1e9)  # type: ignore[arg-type]
    both = [*info, Sample(_labels("llm", "chat-v9", engine="vllm"), 1.0)]
    prom = FakePrometheus({"info": both})
    with pytest.raises(NotFound, match="no finished-request counts of llm/chat-v1 and llm/chat-v9"):
        compare_prometheus.read(prom, a, b, "1h", Deadline(5), 1e9)  # type: ignore[arg-type]


# ---- the docs ------------------------------------------------------------------------------------


def test_the_docs_state_the_defaults_and_exit_codes_the_code_has() -> None:
    text = (ROOT / "docs" / "compare.md").read_text()
    documented: dict[str, str] = {}
    for names, value in re.findall(
        r"^\| (`[a-z0-9_]+`(?:, `[a-z0-9_]+`)*) \| ([^|]+) \|", text, re.M
    ):
        for name in re.findall(r"`([a-z0-9_]+)`", names):
            documented[name] = value.strip()
    for name, value in Thresholds().model_dump().items():
        assert name in documented, f"docs/compare.md has no row for {name}"
        shown = documented[name]
        assert (shown == "unset") if value is None else float(shown) == value, (name, shown)
    assert "**0** promote, **1** rollback, **3** hold, **2** an error" in text
    assert compare_cli.EXIT_CODES == {"promote": 0, "rollback": 1, "hold": 3}


# ---- the CLI and the API without Prometheus -----------------------------------------------------

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli_app, ["compare", *args])
    return result.exit_code, result.stdout, result.stderr


DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port
AB = ["--prometheus", DOWN, "--baseline", "llm/a", "--candidate", "llm/b"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --prometheus URL"),
        (["--prometheus", DOWN], "give --baseline NAMESPACE/DEPLOYMENT"),
        ([*AB[:4], "--candidate", "b"], "--candidate 'b': expected NAMESPACE/DEPLOYMENT"),
        (["--prometheus", "ftp://x", *AB[2:]], "expected an http(s) URL"),
        ([*AB[:4], "--candidate", "llm/a"], "baseline and candidate are the same deployment"),
        ([*AB, "--window", "5s"], "window '5s': must be between 1m and 31d"),
        ([*AB, "--set", "nope=1"], "--set: nope: Extra inputs are not permitted"),
        ([*AB, "--thresholds", "/nonexistent.yaml"], "cannot read it"),
        (AB, "is unreachable"),
    ],
)
def test_the_cli_answers_bad_input_in_one_line_with_exit_code_2(
    args: list[str], message: str
) -> None:
    code, out, err = _cli(*args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("inferwatch compare: ")
    assert message in lines[0]
    assert "Traceback" not in err


def _client(url: str = "http://127.0.0.1:9", token: str | None = None) -> TestClient:
    settings = Settings(prometheus_url=url, kubernetes="off", token=token)
    service = SLOService((), Prometheus(url, timeout=1.0), ServiceConfig(timeout=1.0))
    return TestClient(create_app(settings, service))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("baseline=chat-v1&candidate=llm/chat-v2", "baseline 'chat-v1': expected NAMESPACE/DEPL"),
        ("baseline=llm/chat-v1&candidate=llm/x%22%7D%20or%20vector(1)%20%23", "is not valid"),
        ("baseline=llm/chat-v1&candidate=llm/chat-v2&window=1x", "window '1x': expected"),
        ("baseline=llm/chat-v1&candidate=llm/chat-v1", "the same deployment"),
    ],
)
def test_the_api_refuses_bad_input_before_asking_prometheus(query: str, message: str) -> None:
    r = _client().get(f"/v1/compare?{query}")
    assert r.status_code == 422
    assert message in r.json()["detail"]


def test_the_api_refuses_unknown_or_bad_thresholds() -> None:
    client = _client()
    r = client.get("/v1/compare?baseline=llm/a&candidate=llm/b&ttft_max_regresion=0.2")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "ttft_max_regresion"]
    for bad in ("significance=nan", "significance=1e-300", "min_requests=0", "window="):
        r = client.get(f"/v1/compare?baseline=llm/a&candidate=llm/b&{bad}")
        assert r.status_code == 422, bad
    r = client.get("/v1/compare?candidate=llm/b")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "baseline"]


def test_the_api_answers_503_when_prometheus_is_down_and_401_without_the_token() -> None:
    r = _client().get("/v1/compare?baseline=llm/a&candidate=llm/b")
    assert r.status_code == 503
    assert "unreachable" in r.json()["detail"]
    assert r.headers["Retry-After"] == "10"
    r = _client(token="s3cret").get("/v1/compare?baseline=llm/a&candidate=llm/b")
    assert r.status_code == 401
