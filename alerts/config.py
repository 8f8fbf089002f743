"""Every threshold, duration and selector the alerts use, in one object users can override.

    from inferwatch.alerts.config import AlertConfig
    config = AlertConfig(ttft_p95_seconds=1.0, selector='namespace=~"llm-.*"')

or from YAML (`inferwatch alerts build --config overrides.yaml`), with the same field names:

    ttft_p95_seconds: 1.0
    kv_cache_for: 30m
    selector: 'namespace=~"llm-.*"'

Unknown fields are refused, so a misspelt override never silently keeps the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from inferwatch import schema
from inferwatch.alerts import promql, shards
from inferwatch.deploy import sidecar

Duration = Annotated[str, AfterValidator(promql.validate_duration)]
Ratio = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]

DEFAULT_RUNBOOK_URL = "https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md#{anchor}"


class AlertConfig(BaseModel):
    """Thresholds (`*_ratio`, `*_seconds`, ...) and how long each must hold (`*_for`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Extra matchers on every series the alerts read, e.g. `namespace=~"llm-.*"`.
    selector: str = ""
    # The sidecar's scrape targets, for the target-down alert (the sidecar container's name).
    target_selector: str = f"container={promql.quote(sidecar.CONTAINER_NAME)}"
    # `{anchor}` is the alert name in lower case, the anchor of its section in docs/runbooks.md.
    runbook_url: str = DEFAULT_RUNBOOK_URL

    kv_cache_usage_ratio: Ratio = 0.95
    kv_cache_for: Duration = "15m"

    queue_waiting_requests: Positive = 10
    queue_growth_window: Duration = "10m"
    queue_for: Duration = "10m"

    preemptions_per_second: Positive = 0.1
    preemptions_for: Duration = "15m"

    ttft_p95_seconds: Positive = 2.0
    ttft_for: Duration = "10m"
    tpot_p95_seconds: Positive = 0.2
    tpot_for: Duration = "10m"

    # Finished-request reasons that count as errors (see llm_requests_finished_total).
    error_reasons: tuple[str, ...] = schema.ERROR_REASONS
    error_ratio_warning: Ratio = 0.01
    error_ratio_warning_for: Duration = "10m"
    error_ratio_critical: Ratio = 0.05
    error_ratio_critical_for: Duration = "5m"

    target_down_for: Duration = "5m"
    engine_metrics_down_for: Duration = "5m"
    gpu_metrics_down_for: Duration = "10m"

    # XID codes after which NVIDIA's XID catalog says the GPU needs a reset or the node a drain
    # (double-bit ECC, row remapping, NVLink, fallen off the bus, contained/uncontained ECC, GSP).
    xid_critical_codes: tuple[int, ...] = (46, 48, 63, 64, 74, 79, 94, 95, 119, 120)

    gpu_memory_used_ratio: Ratio = 0.98
    gpu_memory_for: Duration = "15m"

    gpu_idle_utilization_ratio: Ratio = 0.05
    gpu_idle_for: Duration = "15m"

    # "No data": a deployment that had series within the lookback and now has none.
    absent_lookback: Duration = "1h"
    absent_for: Duration = "10m"

    # Rule groups each histogram's bucket rates are recorded in, each reading a slice of its
    # `le` values (alerts/shards.py): at 1,000 pods one group reading them all takes up to 160 ms,
    # six stay under 50 ms. 1 records them in one rule; fewer pods need fewer shards.
    bucket_shards: int = Field(6, strict=True)

    @field_validator("selector", "target_selector")
    @classmethod
    def _matchers(cls, value: str) -> str:
        promql.parse_matchers(value)  # refuses anything but label matchers
        return value

    @field_validator("runbook_url")
    @classmethod
    def _url_template(cls, value: str) -> str:
        if "{anchor}" not in value:
            raise ValueError("runbook_url must contain {anchor}, the alert's section")
        try:
            value.format(anchor="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"runbook_url is not a valid template: {exc}") from None
        return value

    @field_validator("error_reasons")
    @classmethod
    def _reasons(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in value if r not in schema.FINISH_REASONS]
        if not value or unknown:
            raise ValueError(f"choose among {', '.join(schema.FINISH_REASONS)}")
        return value

    @field_validator("xid_critical_codes")
    @classmethod
    def _codes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(code <= 0 for code in value):
            raise ValueError("XID codes are positive integers")
        return tuple(sorted(set(value)))

    @field_validator("bucket_shards")
    @classmethod
    def _shards(cls, value: int) -> int:
        most = shards.max_count()
        if not 1 <= value <= most:
            raise ValueError(
                f"bucket_shards must be from 1 (one rule per histogram) to {most} (one shard "
                f"per default boundary, and one for +Inf, of the histogram with the fewest), "
                f"not {value}"
            )
        return value

    def runbook(self, alertname: str) -> str:
        return self.runbook_url.format(anchor=alertname.lower())


def load(path: str | Path) -> AlertConfig:
    """An `AlertConfig` from a YAML file of overrides; errors name the file and the field."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, found {type(data).__name__}")
    try:
        return AlertConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ValueError("\n".join(problems)) from None
