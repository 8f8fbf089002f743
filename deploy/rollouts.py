"""Model rollouts: a candidate beside each framework's baseline, the traffic split between the
two, and our LLM SLIs as analysis for the rollout controllers teams already run.

    <framework>/candidate/      the base as `<name>-candidate`: its own pods, Service, PodMonitor
                                and `deployment` label; its `images:` entry is what it changes
    <framework>/canary-istio/   baseline + candidate + an Istio VirtualService splitting traffic
    <framework>/canary-apisix/  baseline + candidate + an ApisixRoute splitting traffic
    rollouts/argo/              an Argo Rollouts AnalysisTemplate comparing the two variants
    rollouts/flagger/           Flagger MetricTemplates for the canary Flagger runs itself

The queries come from `alerts.queries`, so names come from the schema and a family the
sidecar's proxy also measures counts each request once. Controller template variables
(`{{args.x}}`, `{{ namespace }}`) are label values to that code, rendered as quoted strings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from inferwatch import schema
from inferwatch.alerts import promql, queries
from inferwatch.alerts.promql import Matcher
from inferwatch.deploy import manifests
from inferwatch.deploy.frameworks import Framework

CANDIDATE_SUFFIX = "-candidate"
# Share of requests the candidate gets, in percent; the baseline gets the rest.
CANDIDATE_WEIGHT = 10
ROUTE_NAME = "canary"
ISTIO_API = "networking.istio.io/v1beta1"  # served by every Istio release that serves v1 too
APISIX_API = "apisix.apache.org/v2"

# One measurement per window: each reads the rates over the window it waited for.
WINDOW = "5m"
QUANTILE = 0.95
ANALYSIS_NAME = "inferwatch-llm-slis"
# Flagger's canary pods: `<target>-<replicaset hash>-<pod suffix>`, which excludes the
# `<target>-primary-...` pods it keeps the baseline in (Flagger's own metrics select so too).
FLAGGER_TARGET_PODS = "{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
FLAGGER_INTERVAL = "{{ interval }}"
# `queries` takes only real durations: queries are built with this one, then it becomes
# Flagger's `{{ interval }}` (and nothing else in a query can read `[4321s]`).
_INTERVAL_STANDIN = "4321s"


@dataclass(frozen=True)
class LatencySli:
    """A latency SLI the analysis reads as a p95: its name there, and its histogram."""

    name: str
    family: str


LATENCY_SLIS = (
    LatencySli("ttft-p95", "llm_time_to_first_token_seconds"),
    LatencySli("tpot-p95", "llm_time_per_output_token_seconds"),
)
FINISHED = "llm_requests_finished_total"

# Argo Rollouts arguments (name, default); None means the Rollout must pass it.
ARGO_ARGS: tuple[tuple[str, str | None], ...] = (
    ("namespace", None),
    ("baseline", None),
    ("candidate", None),
    ("prometheus-address", manifests.PROMETHEUS_URL),
    # Candidate p95 over baseline p95 above this: the candidate is slower, roll back.
    ("max-latency-ratio", "1.2"),
    # Share of the candidate's finished requests that fail (schema.ERROR_REASONS).
    ("max-error-ratio", "0.01"),
    # Fewer candidate requests per window than this: not enough evidence, hold (inconclusive).
    ("min-requests", "100"),
)
# Each metric: 3 measurements WINDOW apart; one bad window (or one quiet one) is tolerated.
ARGO_COUNT = 3
ARGO_FAILURE_LIMIT = 1
ARGO_INCONCLUSIVE_LIMIT = 1


def candidate_name(fw: Framework) -> str:
    return fw.name + CANDIDATE_SUFFIX


def weights() -> dict[str, int]:
    """Route weights in percent, baseline first; they sum to 100."""
    if not 0 <= CANDIDATE_WEIGHT <= 100:
        raise ValueError(f"CANDIDATE_WEIGHT {CANDIDATE_WEIGHT} is not a percentage")
    return {"baseline": 100 - CANDIDATE_WEIGHT, "candidate": CANDIDATE_WEIGHT}


def _image(fw: Framework) -> tuple[str, str]:
    name, _, tag = fw.image.rpartition(":")
    return name, tag


# --- the candidate and the traffic split ----------------------------------------------------


def candidate(fw: Framework) -> Framework:
    """The baseline's framework renamed: its Deployment, Service, PodMonitor, PDB and HPA, its
    `app.kubernetes.io/name` selector and its `inferwatch.io/deployment` label (which becomes
    the `deployment` label our SLIs select by) all say `<name>-candidate`.

    Rendered as a base of its own rather than by kustomize's `nameSuffix` over the baseline:
    with both variants in one build, kustomize points the baseline's HPA at the candidate's
    Deployment (its name references are ambiguous between two copies of one base).
    """
    return dataclasses.replace(fw, name=candidate_name(fw))


def candidate_images(fw: Framework) -> list[dict[str, str]]:
    """The candidate starts as the baseline's exact copy (an A/A split, which must be
    promoted); `kustomize edit set image` in its folder makes it the new version."""
    image, tag = _image(fw)
    return [{"name": image, "newTag": tag}]


def _meta(fw: Framework) -> dict[str, Any]:
    return {"name": fw.name, "labels": manifests.labels(fw)}


def virtual_service(fw: Framework) -> dict[str, Any]:
    """Mesh traffic to the baseline's Service, split by weight with the candidate's."""
    w = weights()
    route = [
        {"destination": {"host": host, "port": {"number": fw.port}}, "weight": w[variant]}
        for variant, host in (("baseline", fw.name), ("candidate", candidate_name(fw)))
    ]
    return {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _meta(fw),
        "spec": {"hosts": [fw.name], "http": [{"name": ROUTE_NAME, "route": route}]},
    }


def apisix_route(fw: Framework) -> dict[str, Any]:
    """Every path to the two Services by weight: with more than one backend, the ingress
    controller configures APISIX's `traffic-split` plugin (weighted upstreams) from these."""
    w = weights()
    backends = [
        {"serviceName": service, "servicePort": fw.port, "weight": w[variant]}
        for variant, service in (("baseline", fw.name), ("candidate", candidate_name(fw)))
    ]
    return {
        "apiVersion": APISIX_API,
        "kind": "ApisixRoute",
        "metadata": _meta(fw),
        "spec": {"http": [{"name": ROUTE_NAME, "match": {"paths": ["/*"]}, "backends": backends}]},
    }


# --- analysis queries -------------------------------------------------------------------------


def p95(family: str, window: str, *matchers: Matcher) -> str:
    """One variant's p95 as one number: the engine's (a deployment runs one engine)."""
    return (
        f"max(\n  {queries.histogram_quantile(QUANTILE, family, ['engine'], window, *matchers)}\n)"
    )


def error_ratio(window: str, *matchers: Matcher) -> str:
    return queries.error_ratio([], window, schema.ERROR_REASONS, *matchers)


def finished_requests(window: str, *matchers: Matcher) -> str:
    """Requests that finished in the window (any reason)."""
    rate = queries.rate_sum(FINISHED, [], window, *matchers)
    return f"{rate} * {promql.seconds(window)}"


def _argo_variant(arg: str) -> tuple[Matcher, Matcher]:
    """The selector of the variant whose `deployment` label Argo passes as `arg`."""
    deployment = "{{args." + arg + "}}"
    return promql.eq("namespace", "{{args.namespace}}"), promql.eq("deployment", deployment)


def argo_queries() -> dict[str, str]:
    """Metric name -> PromQL, with Argo's `{{args.*}}` in the label values."""
    base, cand = _argo_variant("baseline"), _argo_variant("candidate")
    out = {"candidate-requests": finished_requests(WINDOW, *cand)}
    for sli in LATENCY_SLIS:
        out[f"{sli.name}-ratio"] = (
            f"{p95(sli.family, WINDOW, *cand)}\n/\n{p95(sli.family, WINDOW, *base)}"
        )
    out["error-ratio"] = error_ratio(WINDOW, *cand)
    return out


def _conditions(metric: str) -> tuple[str, str]:
    """(successCondition, failureCondition). Where a result is empty (no traffic) or NaN,
    neither holds: the measurement is inconclusive and the rollout holds, never rolls back."""
    if metric == "candidate-requests":
        # Too few requests is never a failure, only not yet enough evidence.
        return "len(result) > 0 && result[0] >= {{args.min-requests}}", "false"
    limit = (
        "{{args." + ("max-error-ratio" if metric == "error-ratio" else "max-latency-ratio") + "}}"
    )
    return f"len(result) > 0 && result[0] <= {limit}", f"len(result) > 0 && result[0] > {limit}"


def analysis_template() -> dict[str, Any]:
    """Argo Rollouts: the candidate against the baseline, both selected by `deployment`."""
    metrics = []
    for name, query in argo_queries().items():
        success, failure = _conditions(name)
        metrics.append(
            {
                "name": name,
                "interval": WINDOW,
                "count": ARGO_COUNT,
                "failureLimit": ARGO_FAILURE_LIMIT,
                "inconclusiveLimit": ARGO_INCONCLUSIVE_LIMIT,
                "successCondition": success,
                "failureCondition": failure,
                "provider": {
                    "prometheus": {"address": "{{args.prometheus-address}}", "query": query}
                },
            }
        )
    args = [{"name": n} if v is None else {"name": n, "value": v} for n, v in ARGO_ARGS]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {
            "name": ANALYSIS_NAME,
            "labels": {"app.kubernetes.io/part-of": manifests.PART_OF},
        },
        "spec": {"args": args, "metrics": metrics},
    }


def flagger_queries() -> dict[str, str]:
    """MetricTemplate name -> PromQL over Flagger's canary pods, `{{ interval }}` windows."""
    canary = (
        promql.eq("namespace", "{{ namespace }}"),
        Matcher("pod", "=~", FLAGGER_TARGET_PODS),
    )
    built = {
        f"inferwatch-{s.name}": p95(s.family, _INTERVAL_STANDIN, *canary) for s in LATENCY_SLIS
    }
    built["inferwatch-error-ratio"] = error_ratio(_INTERVAL_STANDIN, *canary)
    out = {}
    for name, text in built.items():
        templated = text.replace(f"[{_INTERVAL_STANDIN}]", f"[{FLAGGER_INTERVAL}]")
        if _INTERVAL_STANDIN in templated:
            raise AssertionError(f"{name}: {_INTERVAL_STANDIN} outside a range selector")
        out[name] = templated
    return out


def metric_templates() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": manifests.PART_OF}},
            "spec": {
                "provider": {"type": "prometheus", "address": manifests.PROMETHEUS_URL},
                "query": query,
            },
        }
        for name, query in flagger_queries().items()
    ]


def argo_objects() -> dict[str, Any]:
    """file name -> object(s), for deploy/rollouts/argo/."""
    return {"analysistemplate.yaml": analysis_template()}


def flagger_objects() -> dict[str, Any]:
    """file name -> object(s), for deploy/rollouts/flagger/."""
    return {"metrictemplates.yaml": metric_templates()}
