"""HPA rules: scale out when a latency objective is missed because requests queue, scale in
when every pod idles.

- The queue target per pod comes from the fitted relation between queue length per pod and the
  headline latency (least squares over the window's steps): the queue at which latency reaches
  `LATENCY_AIM` of its target.
- `maxReplicas` covers the peak load (plus `LOAD_HEADROOM`) at the per-replica throughput
  achieved while the latency met its target (the 90th percentile over those steps).
- `minReplicas` (when idle): the fewest pods that would carry the load with the busiest of
  KV-cache usage, GPU utilization and batch occupancy under `IDLE_UTILIZATION`.
- Behaviour: the seed's stabilization windows and one pod per period, stretched to the
  measured pod start-up time (no new pod before the last one can serve; no pod removed
  after a dip shorter than two start-ups).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from inferwatch.slo import patches, queries
from inferwatch.slo.figures import GROUP, Evidence, Figures, Headline, Point, quantile_of_sorted
from inferwatch.slo.flags import format_value
from inferwatch.slo.models import Direction, Kind, Recommendation, Value
from inferwatch.slo.objectives import pct
from inferwatch.slo.rule_inputs import (
    MIN_REQUESTS,
    Inputs,
    Outcome,
    known,
    ratio_text,
    round_up,
    target_ref,
)
from inferwatch.slo.rules_engine import KNOBS

MIN_RELATION_POINTS = 10  # steps with queue and latency to fit their relation
MIN_GOOD_STEPS = 3  # steps within the objective to measure per-replica throughput
QUEUEING = 1.0  # mean waiting requests per pod that count as a queue
IDLE_QUEUE = 0.5  # p95 waiting requests per pod under which pods count as idle
LATENCY_AIM = 0.8  # queue target: where latency reaches this share of its target
LOAD_HEADROOM = 1.25  # maxReplicas covers the peak load plus this margin
IDLE_UTILIZATION = 0.7  # consolidate pods until their busiest signal would reach this
MAX_QUEUE_TARGET = 50.0


@dataclass(frozen=True)
class Fit:
    """latency = intercept + slope x queue per pod, over n steps."""

    slope: float
    intercept: float
    r2: float
    n: int


def fit_relation(points: Sequence[Point]) -> Fit | None:
    """Least squares of latency on queue length per pod; None without enough steps or spread."""
    pairs = [
        (p.queue_per_pod, p.latency)
        for p in points
        if p.queue_per_pod is not None and p.latency is not None
    ]
    if len(pairs) < MIN_RELATION_POINTS:
        return None
    n = len(pairs)
    mx = math.fsum(q for q, _ in pairs) / n
    my = math.fsum(v for _, v in pairs) / n
    sxx = math.fsum((q - mx) ** 2 for q, _ in pairs)
    if sxx <= 1e-12:
        return None
    sxy = math.fsum((q - mx) * (v - my) for q, v in pairs)
    syy = math.fsum((v - my) ** 2 for _, v in pairs)
    slope = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 0.0
    return Fit(slope, my - slope * mx, r2, n)


def queue_target(fit: Fit | None, threshold: float) -> float | None:
    """Waiting requests per pod where the fitted latency reaches LATENCY_AIM of its target,
    rounded down to half a request; None when the relation gives no usable target."""
    if fit is None or fit.slope <= 0:
        return None
    raw = (LATENCY_AIM * threshold - fit.intercept) / fit.slope
    if raw < 0.5:
        return None
    return min(MAX_QUEUE_TARGET, math.floor(raw * 2) / 2)


def scaling_behavior(startup: float | None) -> patches.Scaling:
    """The seed's behaviour, stretched to a measured start-up time."""
    seed = patches.seed_scaling()
    if startup is None:
        return seed
    return dataclasses.replace(
        seed,
        scale_up_period=max(seed.scale_up_period, round_up(startup, 30)),
        scale_down_window=max(seed.scale_down_window, round_up(2 * startup, 60)),
    )


def _describe(h: Headline) -> str:
    return f"{h.histogram.upper()} p{pct(h.quantile)}"


def _within(points: Sequence[Point], h: Headline) -> list[float]:
    """Requests per second per replica at the steps where the latency met its target."""
    return [
        p.request_rate / p.replicas
        for p in points
        if p.replicas
        and p.request_rate is not None
        and p.request_rate > 0
        and p.latency is not None
        and p.latency <= h.threshold
    ]


def _direction(fig: Figures) -> Literal["out", "in"] | None:
    """Whether the window's figures call for scaling out (latency missed while requests
    queue) or for checking whether fewer pods would do (latency met, queue empty)."""
    h = fig.headline
    observed = fig.quantile(h.histogram, h.quantile) if h else None
    waiting_mean = fig.gauge("requests_waiting", "mean")
    waiting95 = fig.gauge("requests_waiting", "p95") or 0.0
    if h is None or fig.replicas is None or observed is None or waiting_mean is None:
        return None
    if (fig.observations(h.histogram) or 0) < MIN_REQUESTS:
        return None
    if observed > h.threshold and (waiting_mean >= QUEUEING or waiting95 >= 2 * QUEUEING):
        return "out"
    if observed <= h.threshold and waiting95 < IDLE_QUEUE:
        return "in"
    return None


def needs_history(fig: Figures) -> bool:
    """Whether the HPA rules may recommend scaling this deployment, and so read its pods'
    start-up time (and, scaling out, its per-step history: `needs_series`). The SLO service
    fetches those for these deployments alone, so a healthy fleet costs no per-step data."""
    direction = _direction(fig)
    if direction == "in":
        return fig.replicas is not None and round(fig.replicas.min) >= 2
    return direction == "out"


def needs_series(fig: Figures) -> bool:
    """Whether the HPA rules will fit this deployment's per-step history: when scaling out."""
    return _direction(fig) == "out"


def hpa(x: Inputs, out: Outcome) -> None:
    fig = x.figures
    if fig.source != "prometheus":
        out.notes.append(
            "HPA bounds and the queue target need the deployment's history (replicas, load and "
            "latency over time): use `inferwatch advise --prometheus` once Prometheus scrapes it."
        )
        return
    if not needs_history(fig):
        return
    h = fig.headline
    observed = fig.quantile(h.histogram, h.quantile) if h else None
    assert h is not None and observed is not None
    plan = _Plan(x, h, observed)
    if _direction(fig) == "out":
        plan.scale_out(out)
    else:
        plan.scale_in(out)


class _Plan:
    """What both HPA recommendations share: the fit, the target, the behaviour, evidence."""

    def __init__(self, x: Inputs, h: Headline, observed: float):
        self.x, self.h, self.observed = x, h, observed
        fig: Figures = x.figures
        self.fig = fig
        assert fig.replicas is not None
        self.replicas = fig.replicas
        self.fit = fit_relation(fig.series)
        self.target = queue_target(self.fit, h.threshold)
        self.behavior = scaling_behavior(fig.startup_seconds)
        self.matchers = fig.target.matchers()
        self.rate_expr = queries.request_rate("5m", GROUP, self.matchers, fig.recorded)

    @property
    def queue(self) -> float:
        return self.target if self.target is not None else self.behavior.queue_target

    def target_note(self) -> str:
        if self.target is not None:
            return (
                f"fitted: {_describe(self.h)} reaches {LATENCY_AIM:.0%} of its "
                f"{format_value(self.h.threshold)} s target at {format_value(self.target)} "
                "waiting requests per pod"
            )
        if self.fit is None:
            return "the reference target: no relation between queue and latency could be fitted"
        return (
            "the reference target: the fitted relation gives none (latency is high even with "
            "an empty queue, which more replicas alone do not fix)"
        )

    def evidence(self) -> list[Evidence]:
        fig, h = self.fig, self.h
        out = [
            fig.evidence_quantile(h.histogram, h.quantile),
            fig.evidence_gauge("requests_waiting", "mean"),
        ]
        if self.fit is not None:
            out.append(
                fig.evidence_series(
                    f"{_describe(h)} seconds per waiting request per pod (fitted slope)",
                    self.fit.slope,
                    queries.quantile(
                        h.histogram,
                        h.quantile,
                        queries.step_rate_window(fig.step, fig.recorded),
                        GROUP,
                        self.matchers,
                        fig.recorded,
                    ),
                    f"least squares over {self.fit.n} steps of {fig.step} against the queue "
                    f"per pod: latency = {self.fit.intercept:.3f} s + {self.fit.slope:.4f} s "
                    f"x queue (r² {self.fit.r2:.2f}); queue target: {self.target_note()}",
                    "seconds",
                )
            )
        if fig.startup_seconds is not None:
            up = queries.first_seen(fig.window, "1m", GROUP, self.matchers, up=True)
            seen = queries.first_seen(fig.window, "1m", GROUP, self.matchers, up=False)
            out.append(
                fig.evidence_series(
                    "slowest pod start-up in the window (sidecar first seen to engine answering)",
                    fig.startup_seconds,
                    f"max({up}\n-\n{seen})",
                    "over the pods that started within the window",
                    "seconds",
                )
            )
        return out

    def details(self, s: patches.Scaling) -> dict[str, object]:
        return {
            "minReplicas": s.min_replicas,
            "maxReplicas": s.max_replicas,
            "queue_target_per_pod": s.queue_target,
            "queue_target": self.target_note(),
            "scale_up": {
                "stabilizationWindowSeconds": s.scale_up_window,
                "periodSeconds": s.scale_up_period,
            },
            "scale_down": {
                "stabilizationWindowSeconds": s.scale_down_window,
                "periodSeconds": s.scale_down_period,
            },
            "start_up_seconds": self.fig.startup_seconds,
        }

    def recommendation(
        self,
        parameter: str,
        current: Value,
        proposed: int,
        direction: Direction,
        rationale: str,
        effect: str,
        high_confidence: bool,
        evidence: list[Evidence],
        scaling: patches.Scaling,
        kind: Kind = "hpa",
    ) -> Recommendation:
        t = self.fig.target
        return Recommendation(
            kind=kind,
            target=target_ref(self.x),
            parameter=parameter,
            current=current,
            current_source="observed",
            proposed=proposed,
            direction=direction,
            rationale=rationale,
            evidence=evidence,
            expected_effect=effect,
            confidence="high" if high_confidence else "medium",
            patch=patches.hpa_patch(t.namespace, t.deployment, scaling, self.x.prometheus_url),
            details=self.details(scaling),
        )

    def scale_out(self, out: Outcome) -> None:
        fig, h = self.fig, self.h
        good = _within(fig.series, h)
        rates = [p.request_rate for p in fig.series if p.request_rate is not None]
        if len(good) < MIN_GOOD_STEPS or not rates:
            out.missing.append(
                f"{_describe(h)} misses its target, but fewer than {MIN_GOOD_STEPS} steps of "
                "the window met it, so the throughput one replica sustains within the target is "
                "unknown: widen --window to include a calmer period"
            )
            return
        capacity = quantile_of_sorted(0.9, sorted(good))
        peak = max(rates)
        low = quantile_of_sorted(0.05, sorted(rates))
        recent = [p.request_rate for p in fig.series[-3:] if p.request_rate is not None]
        now_rate = math.fsum(recent) / len(recent)
        observed_max = round(self.replicas.max)
        needed_peak = math.ceil(peak * LOAD_HEADROOM / capacity)
        max_replicas = max(needed_peak, observed_max + 1)
        scaling = dataclasses.replace(
            self.behavior,
            min_replicas=min(max(1, math.ceil(low / capacity)), max_replicas),
            max_replicas=max_replicas,
            queue_target=self.queue,
        )
        pods = queries.pods_serving(GROUP, self.matchers, fig.recorded)
        load = [
            fig.evidence_series(
                f"requests/s per replica while {_describe(h)} <= {format_value(h.threshold)} s",
                capacity,
                f"{self.rate_expr}\n/\n{pods}",
                f"90th percentile over the {len(good)} steps of {fig.step} that met the target",
                "requests/s",
            ),
            fig.evidence_series(
                "peak requests/s",
                peak,
                queries.stat_over_time("max", self.rate_expr, fig.window, fig.step),
                f"the highest of the window's {len(rates)} steps",
                "requests/s",
            ),
            fig.evidence_series(
                "replicas serving (max over the window)",
                self.replicas.max,
                queries.stat_over_time("max", pods, fig.window, fig.step),
                "pods whose engine answered its sidecar",
            ),
        ]
        out.recommendations.append(
            self.recommendation(
                "maxReplicas",
                observed_max,
                max_replicas,
                "raise",
                f"{_describe(h)} is {self.observed:.2f} s against "
                f"{format_value(h.threshold)} s while requests queue; one replica sustains "
                f"{capacity:.2f} requests/s within the target and the peak of {peak:.2f} "
                f"requests/s needs {needed_peak} replicas.",
                f"The HPA adds replicas on the queue (target {format_value(self.queue)} waiting "
                f"per pod) up to {max_replicas}, covering the peak with "
                f"{LOAD_HEADROOM - 1:.0%} headroom, so {_describe(h)} returns under its target.",
                self.fit is not None and len(good) >= MIN_RELATION_POINTS,
                [*self.evidence(), *load],
                scaling,
            )
        )
        needed_now = math.ceil(now_rate / capacity)
        if fig.replicas_now is not None and needed_now > fig.replicas_now:
            t = fig.target
            out.recommendations.append(
                Recommendation(
                    kind="capacity",
                    target=target_ref(self.x),
                    parameter="replicas",
                    current=fig.replicas_now,
                    current_source="observed",
                    proposed=needed_now,
                    direction="raise",
                    rationale=f"The current {now_rate:.2f} requests/s need {needed_now} replicas "
                    f"at {capacity:.2f} requests/s each within the target; "
                    f"{fig.replicas_now} serve now.",
                    expected_effect="Relief now, before the HPA's new bounds act: the queue "
                    "drains as the new pods start serving.",
                    confidence="medium",
                    evidence=load,
                    patch=patches.replicas_patch(t.namespace, t.deployment, needed_now),
                )
            )

    def scale_in(self, out: Outcome) -> None:
        fig = self.fig
        floor_pods = round(self.replicas.min)
        if floor_pods < 2:
            return
        signals = self._utilization()
        if not signals:
            out.missing.append(
                "every pod's queue is empty, but neither KV-cache usage nor GPU utilization is "
                "reported, so how many pods the load needs cannot be told"
            )
            return
        busiest_name, busiest, _ = max(signals, key=lambda s: s[1])
        needed = max(1, math.ceil(floor_pods * busiest / IDLE_UTILIZATION))
        if needed >= floor_pods:
            return
        scaling = dataclasses.replace(
            self.behavior,
            min_replicas=needed,
            max_replicas=max(round(self.replicas.max), self.behavior.max_replicas, needed + 1),
            queue_target=self.queue,
        )
        pods = queries.pods_serving(GROUP, self.matchers, fig.recorded)
        evidence = [
            fig.evidence_quantile(self.h.histogram, self.h.quantile),
            fig.evidence_gauge("requests_waiting", "p95"),
            *[s[2] for s in signals],
            fig.evidence_series(
                "replicas serving (min over the window)",
                self.replicas.min,
                queries.stat_over_time("min", pods, fig.window, fig.step),
                "pods whose engine answered its sidecar",
            ),
        ]
        out.recommendations.append(
            self.recommendation(
                "minReplicas",
                floor_pods,
                needed,
                "lower",
                f"Never fewer than {floor_pods} pods served in the window, yet none queued and "
                f"the busiest signal ({busiest_name}) peaked at {ratio_text(busiest)}: {needed} "
                f"would carry the load under {IDLE_UTILIZATION:.0%}.",
                f"{floor_pods - needed} GPU(s) freed while the load is low; the HPA adds pods "
                "back on the queue when it returns (each after its start-up time).",
                len(signals) >= 2,
                evidence,
                scaling,
            )
        )

    def _utilization(self) -> list[tuple[str, float, Evidence]]:
        fig = self.fig
        signals: list[tuple[str, float, Evidence]] = []
        kv95 = fig.gauge("kv_cache_usage", "p95")
        if kv95 is not None:
            signals.append(
                ("KV-cache usage p95", kv95, fig.evidence_gauge("kv_cache_usage", "p95"))
            )
        util95 = fig.gauge("gpu_utilization", "p95")
        if util95 is not None:
            signals.append(
                ("GPU utilization p95", util95, fig.evidence_gauge("gpu_utilization", "p95"))
            )
        knobs = KNOBS.get(self.x.engine or "")
        limit = known(self.x, knobs.max_seqs if knobs else None)
        running95 = fig.gauge("requests_running", "p95")
        if isinstance(limit, int | float) and limit > 0 and running95 is not None:
            signals.append(
                (
                    "running batch p95 of its limit",
                    running95 / limit,
                    fig.evidence_gauge("requests_running", "p95"),
                )
            )
        return signals
