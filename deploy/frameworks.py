"""The reference deployment of each framework, as data: image, flags, ports, probes, warm-up.

Versions are pinned (never `latest`); the engine flags carry the seed's recommended values
where the engine has them (GPU memory 0.85-0.95 of the card, 256 concurrent sequences, 8192
batched tokens, block size 16); the model comes from the `model-storage` PVC; and every pod
turns Ready only after its model is loaded and one warm-up request has been answered: the
start-up probe *is* that request, and readiness/liveness only start once it has succeeded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MODEL_PVC = "model-storage"
MODEL_MOUNT = "/models"
SERVED_MODEL = "llama-3.1-8b-instruct"
OLLAMA_PARALLEL = 4


@dataclass(frozen=True)
class Framework:
    name: str  # also the workload's name and the sidecar's engine
    engine: str
    summary: str
    image: str
    port: int  # the API port (the Service's)
    args: tuple[str, ...]
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    extra_ports: tuple[tuple[str, int], ...] = ()  # (name, port) besides "http"
    # Probes: an HTTP path on the API port, or an exec command (Ollama listens on loopback).
    health_path: str | None = "/health"
    health_exec: tuple[str, ...] = ()
    warmup: tuple[str, ...] = ()  # the start-up probe's command: one real request
    shm: str = "16Gi"
    memory_request: str = "24Gi"
    memory_limit: str = "32Gi"
    cpu_request: str = "4"
    models_read_only: bool = True
    flags_note: str = ""
    overlays: tuple[str, ...] = field(default=("keda", "ack-gpu-share"))
    # What the HPA scales on, per pod: the normalized queue length, which every engine but
    # Ollama reports. Any sustained queue means the running batch is full; 5 waiting requests
    # per pod is where production-stack's KEDA example scales too.
    scale_metric: str = "llm_requests_waiting"
    scale_target: int = 5


def _python_post(url: str, body: dict[str, object]) -> tuple[str, ...]:
    """A start-up probe that POSTs one request with the image's own Python, no curl needed."""
    script = (
        "import sys, urllib.request as u; "
        "u.urlopen(u.Request(sys.argv[1], data=sys.argv[2].encode(), "
        'headers={"Content-Type": "application/json"}), timeout=50).read()'
    )
    return ("python3", "-c", script, url, json.dumps(body, separators=(",", ":")))


def _completion(model: str | None = SERVED_MODEL) -> dict[str, object]:
    body: dict[str, object] = {"prompt": "Hello", "max_tokens": 1}
    if model:
        body = {"model": model, **body}
    return body


# Triton's HTTP, gRPC and metrics ports, its GPU metrics and the first-response (TTFT)
# histogram, and readiness only once every model in the repository is loaded.
TRITON_ARGS = (
    "--http-port=8000",
    "--grpc-port=8001",
    "--metrics-port=8002",
    "--allow-metrics=true",
    "--allow-gpu-metrics=true",
    "--metrics-config=histogram_latencies=true",
    "--strict-readiness=true",
)

FRAMEWORKS: dict[str, Framework] = {
    f.name: f
    for f in (
        Framework(
            name="vllm",
            engine="vllm",
            summary="vLLM OpenAI-compatible server (PagedAttention, continuous batching)",
            image="vllm/vllm-openai:v0.32.0",
            port=8000,
            command=("vllm", "serve"),
            args=(
                f"{MODEL_MOUNT}/Llama-3.1-8B-Instruct",
                "--served-model-name",
                SERVED_MODEL,
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
                "--tensor-parallel-size",
                "1",
                "--gpu-memory-utilization",
                "0.9",
                "--max-num-seqs",
                "256",
                "--max-num-batched-tokens",
                "8192",
                "--block-size",
                "16",
                "--max-model-len",
                "8192",
            ),
            env=(("HF_HUB_OFFLINE", "1"), ("VLLM_NO_USAGE_STATS", "1")),
            warmup=_python_post("http://127.0.0.1:8000/v1/completions", _completion()),
            flags_note="No --swap-space: the V1 engine never swaps, and vLLM 0.18 removed it.",
            overlays=("keda", "ack-gpu-share", "kserve"),
        ),
        Framework(
            name="tgi",
            engine="tgi",
            summary="Hugging Face Text Generation Inference",
            image="ghcr.io/huggingface/text-generation-inference:3.3.7",
            port=8080,
            args=(
                "--model-id",
                f"{MODEL_MOUNT}/Mistral-7B-Instruct-v0.2",
                "--port",
                "8080",
                "--num-shard",
                "1",
                "--max-input-tokens",
                "4096",
                "--max-total-tokens",
                "8192",
                "--max-batch-prefill-tokens",
                "8192",
                "--max-concurrent-requests",
                "256",
            ),
            env=(("HF_HUB_OFFLINE", "1"),),
            warmup=_python_post(
                "http://127.0.0.1:8080/generate",
                {"inputs": "Hello", "parameters": {"max_new_tokens": 1}},
            ),
            flags_note="No QUANTIZE: the seed's gptq setting only fits GPTQ checkpoints.",
        ),
        Framework(
            name="sglang",
            engine="sglang",
            summary="SGLang server (RadixAttention prefix cache, structured generation)",
            image="lmsysorg/sglang:v0.5.23",
            port=30000,
            command=("python3", "-m", "sglang.launch_server"),
            args=(
                "--model-path",
                f"{MODEL_MOUNT}/Llama-3.1-8B-Instruct",
                "--served-model-name",
                SERVED_MODEL,
                "--host",
                "0.0.0.0",
                "--port",
                "30000",
                "--tp-size",
                "1",
                "--mem-fraction-static",
                "0.85",
                "--max-running-requests",
                "256",
                "--chunked-prefill-size",
                "8192",
                "--page-size",
                "16",
                "--enable-metrics",
            ),
            env=(("HF_HUB_OFFLINE", "1"),),
            warmup=_python_post("http://127.0.0.1:30000/v1/completions", _completion()),
        ),
        Framework(
            name="trtllm",
            engine="trtllm",
            summary="TensorRT-LLM engines on Triton Inference Server (inflight batching)",
            image="nvcr.io/nvidia/tritonserver:25.08-trtllm-python-py3",
            port=8000,
            command=("tritonserver",),
            args=(
                f"--model-repository={MODEL_MOUNT}/trtllm/llama-3.1-8b-instruct",
                *TRITON_ARGS,
            ),
            extra_ports=(("grpc", 8001), ("metrics", 8002)),
            health_path="/v2/health/ready",
            warmup=_python_post(
                "http://127.0.0.1:8000/v2/models/ensemble/generate",
                {"text_input": "Hello", "max_tokens": 1},
            ),
            flags_note=(
                "Batch size, KV-cache fraction (0.9) and scheduler policy live in the "
                "engine's config.pbtxt (tensorrt_llm model), not in flags."
            ),
        ),
        Framework(
            name="triton",
            engine="triton",
            summary="Triton Inference Server serving several models (vLLM backend)",
            image="nvcr.io/nvidia/tritonserver:25.08-vllm-python-py3",
            port=8000,
            command=("tritonserver",),
            args=(
                f"--model-repository={MODEL_MOUNT}/triton",
                *TRITON_ARGS,
            ),
            extra_ports=(("grpc", 8001), ("metrics", 8002)),
            health_path="/v2/health/ready",
            warmup=_python_post(
                f"http://127.0.0.1:8000/v2/models/{SERVED_MODEL}/generate",
                {"text_input": "Hello", "parameters": {"max_tokens": 1}},
            ),
            flags_note=(
                "Each model's model.json sets gpu_memory_utilization (share the 0.9 "
                "between the models on one GPU) and max_num_seqs."
            ),
        ),
        Framework(
            name="llamacpp",
            engine="llamacpp",
            summary="llama.cpp llama-server (GGUF, CUDA build)",
            image="ghcr.io/ggml-org/llama.cpp:server-cuda-b6550",
            port=8080,
            args=(
                "--model",
                f"{MODEL_MOUNT}/gguf/Llama-3.1-8B-Instruct-Q4_K_M.gguf",
                "--alias",
                SERVED_MODEL,
                "--host",
                "0.0.0.0",
                "--port",
                "8080",
                "--n-gpu-layers",
                "999",
                "--ctx-size",
                "32768",
                "--parallel",
                "8",
                "--metrics",
            ),
            # The image has curl (its own HEALTHCHECK uses it) but no Python.
            warmup=(
                "curl",
                "-sf",
                "--max-time",
                "50",
                "-H",
                "Content-Type: application/json",
                "-d",
                json.dumps(_completion(None), separators=(",", ":")),
                "http://127.0.0.1:8080/v1/completions",
            ),
            shm="1Gi",
            memory_request="8Gi",
            memory_limit="16Gi",
            cpu_request="2",
            flags_note="--parallel 8 slots share the 32k context: 4096 tokens per request.",
        ),
        Framework(
            name="ollama",
            engine="ollama",
            summary="Ollama (no /metrics: the sidecar proxies its API and measures the traffic)",
            image="ollama/ollama:0.12.6",
            port=11434,
            args=("serve",),
            env=(
                # Loopback only: every request reaches Ollama through the sidecar's proxy.
                ("OLLAMA_HOST", "127.0.0.1:11434"),
                ("OLLAMA_MODELS", f"{MODEL_MOUNT}/ollama"),
                ("OLLAMA_KEEP_ALIVE", "-1"),
                ("OLLAMA_NUM_PARALLEL", str(OLLAMA_PARALLEL)),
            ),
            health_path=None,
            health_exec=("ollama", "list"),
            warmup=("ollama", "run", "llama3.1:8b", "Reply with one word."),
            shm="1Gi",
            memory_request="8Gi",
            memory_limit="16Gi",
            cpu_request="2",
            models_read_only=False,
            # Ollama reports no queue (its requests wait inside it, unseen): in-flight requests
            # beyond OLLAMA_NUM_PARALLEL are the queue, so scale on those.
            scale_metric="llm_requests_running",
            scale_target=OLLAMA_PARALLEL,
        ),
    )
}


def get(name: str) -> Framework:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise ValueError(f"unknown framework {name!r}; known: {', '.join(FRAMEWORKS)}") from None
