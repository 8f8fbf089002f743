"""The SLO service's settings: one pydantic-settings class, read from the environment
(`INFERWATCH_SLO_*`) and overridden by `inferwatch slo serve`'s flags.

    INFERWATCH_SLO_PROMETHEUS_URL=http://prometheus:9090
    INFERWATCH_SLO_CONFIG='["slos.yaml"]'
    INFERWATCH_SLO_TOKEN=...            # when set, the API and the page need this bearer token

Built where the app is built (never at import time), so tests pass their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inferwatch.alerts import promql
from inferwatch.slo.service import DEFAULT_TIMEOUT, DEFAULT_WINDOW

TOKEN_ENV = "INFERWATCH_SLO_TOKEN"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERWATCH_SLO_", extra="forbid")

    prometheus_url: str = Field(description="Prometheus (or a compatible API) base URL.")
    config: list[Path] = Field(
        default_factory=list, description="SLO spec files or directories of them."
    )
    window: str = Field(DEFAULT_WINDOW, description="The advisor's window, e.g. 6h.")
    timeout: float = Field(
        DEFAULT_TIMEOUT, gt=0, le=60, description="Seconds a request may wait for Prometheus."
    )
    token: SecretStr | None = Field(None, description="Bearer token the API requires.")
    kubernetes: Literal["auto", "off"] = Field(
        "auto", description="Read Deployments for current flags: in-cluster or kubeconfig."
    )
    kubeconfig: str | None = None
    keda_prometheus_url: str | None = Field(
        None, description="Prometheus URL for KEDA ScaledObjects (default: prometheus_url)."
    )
    prometheus_bearer_token: SecretStr | None = Field(
        None, description="Bearer token sent to Prometheus."
    )
    recording_rules: bool = Field(
        True,
        description="Read inferwatch's recorded series where Prometheus has them; false: raw "
        "series only.",
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        promql.validate_duration(value)
        seconds = promql.seconds(value)
        if not 60 <= seconds <= 31 * 86400:
            raise ValueError("the window must be between 1m and 31d")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # an empty variable means no token, not an empty one
        return value
