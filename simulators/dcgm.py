"""NVIDIA dcgm-exporter `/metrics`, for GPUs that carry the load of simulated engines.

The families, label names and their order are those of the real capture
`tests/fixtures/upstream/dcgm-exporter-gpu-operator-v25.10.0.prom` (GPU Operator v25.10, with
the Kubernetes pod mapping on), printed the way dcgm-exporter prints them: integers for integer
fields, `%f` for the power draw and the profiling ratios. Sample:

    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5f0c...",pci_bus_id="00000000:01:00.0",
        device="nvidia0",modelName="NVIDIA L4",Hostname="sim-node-0",
        DCGM_FI_DRIVER_VERSION="580.95.05",container="vllm",namespace="demo",pod="chat-0",
        pod_uid=""} 87

(one line on the page).

A GPU follows the engine it is given: utilization is the engine's busy fraction (the engine
keeps a one-second moving average, as DCGM's own sampling does), power rises from idle to the
board limit with it, temperature follows power with a lag, energy integrates power, and memory
is what the engine claims at start (`gpu_memory_utilization` of the framebuffer: vLLM and TGI
allocate their KV cache up front, so used memory does not move with load). Tensor-core and DRAM
activity split the busy time by what the engine was doing: prompts keep the tensor cores busy,
decoding keeps the memory bus busy. A GPU given no engine idles with an empty framebuffer and
empty pod labels, as dcgm-exporter shows unassigned GPUs.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from inferwatch.simulators.model import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DRIVER_VERSION = "580.95.05"
TEMPERATURE_TAU = 20.0  # seconds for the die temperature to follow the power draw


@dataclass(frozen=True)
class GpuSpec:
    model_name: str
    memory_mib: int
    reserved_mib: int  # what the driver keeps for itself (DCGM_FI_DEV_FB_RESERVED)
    power_idle: float
    power_max: float
    sm_clock_idle: int
    sm_clock_max: int
    mem_clock: int
    temp_idle: float = 33.0
    temp_max: float = 74.0
    memory_temperature: bool = True  # GDDR boards report 0 for DCGM_FI_DEV_MEMORY_TEMP


GPU_SPECS: dict[str, GpuSpec] = {
    "l4": GpuSpec("NVIDIA L4", 23034, 466, 16.0, 72.0, 210, 2040, 6251, memory_temperature=False),
    "a10g": GpuSpec(
        "NVIDIA A10G", 23028, 482, 22.0, 300.0, 210, 1710, 6251, memory_temperature=False
    ),
    "a100-80g": GpuSpec("NVIDIA A100-SXM4-80GB", 81920, 555, 62.0, 400.0, 210, 1410, 1593),
    "h100-80g": GpuSpec("NVIDIA H100 80GB HBM3", 81559, 532, 72.0, 700.0, 345, 1980, 2619),
    "rtx-4000-ada": GpuSpec(
        "NVIDIA RTX 4000 Ada Generation",
        20475,
        457,
        12.0,
        130.0,
        210,
        2310,
        9001,
        memory_temperature=False,
    ),
}

# A few XID codes from NVIDIA's catalogue, for the `err_msg` label of DCGM_FI_DEV_XID_ERRORS.
XID_MESSAGES = {
    0: "No Error",
    13: "Graphics Engine Exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    48: "Double Bit ECC Error",
    63: "ECC page retirement or row remapping recording event",
    74: "NVLINK Error",
    79: "GPU has fallen off the bus",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
}


def gpu_spec(name: str) -> GpuSpec:
    try:
        return GPU_SPECS[name]
    except KeyError:
        known = ", ".join(GPU_SPECS)
        raise ValueError(f"unknown GPU model {name!r}; known: {known}") from None


@dataclass(eq=False)
class Gpu:
    """One GPU: where it sits, what it runs, and the state DCGM samples."""

    index: int
    spec: GpuSpec
    uuid: str
    engine: Engine | None = None
    pod: str = ""
    namespace: str = ""
    container: str = ""
    xid: int = 0  # last XID error code (0 = none)
    energy_mj: float = 0.0
    temperature: float = 0.0
    sampled_at: float | None = None
    rng: random.Random = field(default_factory=random.Random)

    def utilization(self) -> float:
        return 0.0 if self.engine is None else min(1.0, self.engine.utilization())

    def tensor_active(self) -> float:
        if self.engine is None:
            return 0.0
        return self.utilization() * (0.15 + 0.55 * self.engine.prefill_share())

    def dram_active(self) -> float:
        if self.engine is None:
            return 0.0
        return self.utilization() * (0.7 - 0.45 * self.engine.prefill_share())

    def power(self) -> float:
        s = self.spec
        draw = s.power_idle + (s.power_max - s.power_idle) * self.utilization() ** 0.8
        return draw * (1.0 + self.rng.uniform(-0.015, 0.015))

    def sample(self, now: float) -> float:
        """Advance energy and temperature to `now`; the power drawn meanwhile."""
        s = self.spec
        power = self.power()
        if self.sampled_at is None:
            # Up for a few hours already: dcgm-exporter counts energy since boot.
            self.energy_mj = s.power_idle * 3 * 3600 * 1000.0
            self.temperature = s.temp_idle
        elif now > self.sampled_at:
            dt = now - self.sampled_at
            self.energy_mj += power * dt * 1000.0
            load = (power - s.power_idle) / (s.power_max - s.power_idle)
            target = s.temp_idle + (s.temp_max - s.temp_idle) * max(0.0, load)
            self.temperature += (target - self.temperature) * (1 - math.exp(-dt / TEMPERATURE_TAU))
        self.sampled_at = now
        return power

    def used_mib(self) -> int:
        if self.engine is None:
            return 1
        usable = self.spec.memory_mib - self.spec.reserved_mib
        claim = self.engine.config.gpu_memory_utilization * self.spec.memory_mib
        return int(min(usable, claim))


def make_gpus(count: int, spec: GpuSpec, hostname: str, seed: int = 0) -> list[Gpu]:
    """`count` GPUs of one model on one node, with stable UUIDs."""
    return [
        Gpu(
            i,
            spec,
            f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{hostname}.gpu{i}.{seed}')}",
            rng=random.Random(f"{hostname}/{i}/{seed}"),
        )
        for i in range(count)
    ]


def _int(value: float) -> str:
    return str(round(value))


def _float(value: float) -> str:
    return f"{value:f}"


# (field, type, help, value): the families of the capture, in its order.
_FIELDS: tuple[tuple[str, str, str, Callable[[Gpu, float], str]], ...] = (
    (
        "DCGM_FI_DEV_SM_CLOCK",
        "gauge",
        "SM clock frequency (in MHz).",
        lambda g, p: _int(g.spec.sm_clock_max if g.utilization() > 0.01 else g.spec.sm_clock_idle),
    ),
    (
        "DCGM_FI_DEV_MEM_CLOCK",
        "gauge",
        "Memory clock frequency (in MHz).",
        lambda g, p: _int(g.spec.mem_clock),
    ),
    (
        "DCGM_FI_DEV_MEMORY_TEMP",
        "gauge",
        "Memory temperature (in C).",
        lambda g, p: _int(g.temperature + 6 if g.spec.memory_temperature else 0),
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", lambda g, p: _int(g.temperature)),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", lambda g, p: _float(p)),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        lambda g, p: str(int(g.energy_mj)),
    ),
    (
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "counter",
        "Total number of PCIe retries.",
        lambda g, p: "0",
    ),
    (
        "DCGM_FI_DEV_GPU_UTIL",
        "gauge",
        "GPU utilization (in %).",
        lambda g, p: _int(100 * g.utilization()),
    ),
    (
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "gauge",
        "Memory utilization (in %).",
        lambda g, p: _int(100 * g.dram_active()),
    ),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", lambda g, p: "0"),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", lambda g, p: "0"),
    (
        "DCGM_FI_DEV_XID_ERRORS",
        "gauge",
        "Value of the last XID error encountered.",
        lambda g, p: str(g.xid),
    ),
    (
        "DCGM_FI_DEV_FB_FREE",
        "gauge",
        "Framebuffer memory free (in MiB).",
        lambda g, p: str(g.spec.memory_mib - g.spec.reserved_mib - g.used_mib()),
    ),
    (
        "DCGM_FI_DEV_FB_USED",
        "gauge",
        "Framebuffer memory used (in MiB).",
        lambda g, p: str(g.used_mib()),
    ),
    (
        "DCGM_FI_DEV_FB_RESERVED",
        "gauge",
        "Framebuffer memory reserved (in MiB).",
        lambda g, p: str(g.spec.reserved_mib),
    ),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Number of remapped rows for uncorrectable errors",
        lambda g, p: "0",
    ),
    (
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Number of remapped rows for correctable errors",
        lambda g, p: "0",
    ),
    (
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "gauge",
        "Whether remapping of rows has failed",
        lambda g, p: "0",
    ),
    (
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "counter",
        "Total number of NVLink bandwidth counters for all lanes.",
        lambda g, p: "0",
    ),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "vGPU License status", lambda g, p: "0"),
    (
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "gauge",
        "Ratio of time the graphics engine is active.",
        lambda g, p: _float(g.utilization()),
    ),
    (
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "gauge",
        "Ratio of cycles the tensor (HMMA) pipe is active.",
        lambda g, p: _float(g.tensor_active()),
    ),
    (
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "gauge",
        "Ratio of cycles the device memory interface is active sending or receiving data.",
        lambda g, p: _float(g.dram_active()),
    ),
    (
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "gauge",
        "The rate of data transmitted over the PCIe bus - including both protocol headers and "
        "data payloads - in bytes per second.",
        lambda g, p: _int(2.0e6 + 6.0e7 * g.utilization()),
    ),
    (
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        "gauge",
        "The rate of data received over the PCIe bus - including both protocol headers and data "
        "payloads - in bytes per second.",
        lambda g, p: _int(1.0e6 + 4.0e7 * g.utilization()),
    ),
)


class DcgmWriter:
    """Renders a node's GPUs as dcgm-exporter's `/metrics` page."""

    version = "4.4.1-4.6.0"
    content_type = CONTENT_TYPE

    def __init__(self, gpus: list[Gpu], clock: Callable[[], float], hostname: str = "sim-node-0"):
        if not gpus:
            raise ValueError("dcgm-exporter needs at least one GPU")
        self.gpus = gpus
        self.clock = clock
        self.hostname = hostname

    def _labels(self, g: Gpu, xid: bool) -> str:
        head = (
            f'gpu="{g.index}",UUID="{g.uuid}",pci_bus_id="00000000:{g.index + 1:02X}:00.0",'
            f'device="nvidia{g.index}",modelName="{g.spec.model_name}",'
            f'Hostname="{self.hostname}",DCGM_FI_DRIVER_VERSION="{DRIVER_VERSION}",'
            f'container="{g.container}"'
        )
        if xid:
            message = XID_MESSAGES.get(g.xid, "Unknown Error")
            head += f',err_code="{g.xid}",err_msg="{message}"'
        return head + f',namespace="{g.namespace}",pod="{g.pod}",pod_uid=""'

    def render(self) -> bytes:
        now = self.clock()
        power = {g.index: g.sample(now) for g in self.gpus}
        lines: list[str] = []
        for name, kind, doc, value in _FIELDS:
            lines.append(f"# HELP {name} {doc}")
            lines.append(f"# TYPE {name} {kind}")
            xid = name == "DCGM_FI_DEV_XID_ERRORS"
            for g in self.gpus:
                lines.append(f"{name}{{{self._labels(g, xid)}}} {value(g, power[g.index])}")
        return ("\n".join(lines) + "\n").encode()
