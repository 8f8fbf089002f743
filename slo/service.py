"""The SLO service's work, apart from HTTP: SLO status and advice for the deployments in scope.

`SLOService` holds the specs, the Prometheus client and (optionally) the Deployment reader.
Each call has one deadline shared by its queries; Prometheus trouble surfaces as
`PrometheusUnavailable` (the API answers 503), an unknown SLO or deployment as `NotFound`
(404). The CLI (`inferwatch advise --prometheus`), the API and the benchmark all go through
here, so they give the same answers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from inferwatch.alerts import conventions
from inferwatch.alerts.config import AlertConfig
from inferwatch.slo import from_prometheus, queries, sli
from inferwatch.slo.advisor import advise
from inferwatch.slo.figures import Figures, Headline
from inferwatch.slo.gc_pause import pausing
from inferwatch.slo.kube import DeploymentReader, DeploymentSpec, KubeUnavailable
from inferwatch.slo.models import Advice, SLOStatus
from inferwatch.slo.objectives import headline, objectives_for
from inferwatch.slo.prom import Deadline, Prometheus
from inferwatch.slo.rule_inputs import Inputs
from inferwatch.slo.spec import LatencySLI, SLOSpec

DEFAULT_WINDOW = conventions.ADVISOR_WINDOW  # the window the recording rules precompute
DEFAULT_TIMEOUT = 4.5  # seconds per request: a 503 comes well within 5 s


class NotFound(LookupError):
    """No such SLO, or no series of that deployment in the window."""


@dataclass
class ServiceConfig:
    window: str = DEFAULT_WINDOW
    timeout: float = DEFAULT_TIMEOUT
    # The Prometheus URL KEDA should query from inside the cluster (ScaledObject serverAddress);
    # default: the URL the service uses.
    keda_prometheus_url: str | None = None
    alerts: AlertConfig = field(default_factory=AlertConfig)
    # Read inferwatch's recorded series where Prometheus has them (SLO burn rates, the
    # advisor's window figures); False: always the raw series, as a Prometheus without them.
    recording_rules: bool = True


class SLOService:
    def __init__(
        self,
        specs: Sequence[SLOSpec],
        prometheus: Prometheus,
        config: ServiceConfig | None = None,
        kube: DeploymentReader | None = None,
        kube_note: str = "",
    ):
        self.specs = tuple(specs)
        self.by_name = {s.name: s for s in self.specs}
        self.by_target: dict[tuple[str, str], list[SLOSpec]] = {}
        for s in self.specs:
            self.by_target.setdefault((s.namespace, s.deployment), []).append(s)
        self.prometheus = prometheus
        self.config = config or ServiceConfig()
        self.kube = kube
        self.kube_note = kube_note

    # ---- SLOs -----------------------------------------------------------------------------

    @pausing
    def statuses(self, at: float | None = None, with_queries: bool = False) -> list[SLOStatus]:
        """Every SLO's status; each one's PromQL only when asked (see `status`)."""
        deadline = Deadline(self.config.timeout)
        return sli.statuses(
            self.specs,
            self.prometheus,
            deadline,
            at or time.time(),
            with_queries,
            recorded=self.config.recording_rules,
        )

    @pausing
    def status(self, name: str, at: float | None = None) -> SLOStatus:
        spec = self.by_name.get(name)
        if spec is None:
            raise NotFound(f"no SLO named {name!r}; known: {', '.join(self.by_name) or 'none'}")
        deadline = Deadline(self.config.timeout)
        (found,) = sli.statuses(
            [spec],
            self.prometheus,
            deadline,
            at or time.time(),
            recorded=self.config.recording_rules,
        )
        return found

    # ---- advice ---------------------------------------------------------------------------

    def _headlines(self) -> tuple[dict[tuple[str, str], Headline | None], list[Headline]]:
        reported = list(queries.HISTOGRAMS)
        per_target: dict[tuple[str, str], Headline | None] = {}
        for key, specs in self.by_target.items():
            if any(isinstance(s.sli, LatencySLI) for s in specs):
                latency, _ = objectives_for(*key, specs, self.config.alerts)
                per_target[key] = headline(latency, reported)
        defaults, _ = objectives_for(None, None, (), self.config.alerts)
        return per_target, [Headline(o.histogram, o.quantile, o.threshold) for o in defaults]

    @pausing
    def figures(
        self, namespace: str | None = None, deployment: str | None = None, at: float | None = None
    ) -> dict[tuple[str, str], Figures]:
        deadline = Deadline(self.config.timeout)
        per_target, defaults = self._headlines()
        found = from_prometheus.collect(
            self.prometheus,
            from_prometheus.scope(namespace, deployment),
            self.config.window,
            per_target,
            defaults,
            deadline,
            at or time.time(),
            recorded=self.config.recording_rules,
        )
        if not found and (namespace or deployment):
            what = (
                f"deployment {namespace}/{deployment}"
                if namespace and deployment
                else f"deployment {deployment!r}"
                if deployment
                else f"namespace {namespace!r}"
            )
            raise NotFound(
                f"no series of {what} in Prometheus within the last {self.config.window} "
                "(llm_engine_info, from the inferwatch sidecar)"
            )
        return found

    @pausing
    def advice(
        self, namespace: str | None = None, deployment: str | None = None, at: float | None = None
    ) -> list[Advice]:
        found = self.figures(namespace, deployment, at)
        deployments, note = self._deployments(sorted(found))
        return [self.advise(fig, deployments.get(key), note) for key, fig in sorted(found.items())]

    def advise(
        self, fig: Figures, deployment: DeploymentSpec | None = None, note: str = ""
    ) -> Advice:
        t = fig.target
        key = (t.namespace or "", t.deployment or "")
        latency, availability = objectives_for(
            t.namespace, t.deployment, self.by_target.get(key, ()), self.config.alerts
        )
        return advise(
            Inputs(
                figures=fig,
                latency=latency,
                availability=availability,
                deployment=deployment,
                deployment_note=note,
                prometheus_url=self.config.keda_prometheus_url or self.prometheus.url,
            )
        )

    def _deployments(
        self, keys: list[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], DeploymentSpec | None], str]:
        if self.kube is None:
            return {}, self.kube_note
        try:
            return self.kube.read_many(keys), ""
        except KubeUnavailable as exc:
            note = f"The Deployments could not be read ({exc}): flags the engine does not state "
            return {}, note + "are unknown."
