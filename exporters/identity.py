"""Where the sidecar runs: its pod (Downward API) and the GPUs it was given."""

from __future__ import annotations

import os
from collections.abc import Mapping

from inferwatch.exporters.normalize import Context

# NVIDIA_VISIBLE_DEVICES values that name no particular GPU.
_NO_LIST = frozenset(("", "all", "none", "void"))


def gpu_uuids(env: Mapping[str, str]) -> frozenset[str] | None:
    """GPU UUIDs from INFERWATCH_GPU_UUIDS, else NVIDIA_VISIBLE_DEVICES; None when unknown.

    Device indices (`0,1`) name no GPU across nodes, so only UUIDs count.
    """
    raw = env.get("INFERWATCH_GPU_UUIDS") or env.get("NVIDIA_VISIBLE_DEVICES", "")
    if raw.strip().lower() in _NO_LIST:
        return None
    uuids = {part.strip() for part in raw.split(",") if part.strip()}
    uuids = {u for u in uuids if u.startswith(("GPU-", "MIG-"))}
    return frozenset(uuids) or None


def context_from_env(env: Mapping[str, str] | None = None, *, model: str | None = None) -> Context:
    env = os.environ if env is None else env
    return Context(
        model=model,
        pod=env.get("POD_NAME") or None,
        namespace=env.get("POD_NAMESPACE") or None,
        gpu_uuids=gpu_uuids(env),
    )
