"""The admission webhook's latency: 1,000 AdmissionReviews against the running webhook.

The webhook (`inferwatch webhook serve`, its own process, TLS with a throwaway certificate) is
called on 127.0.0.1 over one kept-alive connection, as the API server does. In the same run,
interleaved with the reviews, the same client calls GET /healthz: the floor that TLS, HTTP and
the server add whatever the handler does, so `mutate / healthz` is the handler's own cost.
Also timed: `webhook.review()` in this process, with no HTTP at all.

Target: p99 of POST /mutate at most 5 ms.
Run: `.venv/bin/python bench/webhook.py [--requests N]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from inferwatch.deploy import webhook
from tests.harness import procs

ROOT = Path(__file__).resolve().parents[1]
REVIEW = json.loads((ROOT / "tests/fixtures/inject/admissionreview-pod.json").read_text())
TARGET_P99_MS = 5.0
WARMUP = 50


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """p50, p99, max in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    return statistics.median(ordered) * 1e3, p99 * 1e3, ordered[-1] * 1e3


def certificate(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        sys.exit("bench/webhook.py needs openssl (Debian package openssl)")
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=bench",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def start(folder: Path, cert: Path, key: Path) -> tuple[procs.Proc, str]:
    port = procs.free_port()
    proc = procs.start(
        [
            sys.executable,
            "-m",
            "inferwatch.cli",
            "webhook",
            "serve",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        name="webhook",
        workdir=folder,
    )
    base = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", verify=context, trust_env=False).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.stop()
    sys.exit(f"the webhook did not start:\n{proc.log_tail()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    n = parser.parse_args().requests

    in_process = []
    for _ in range(n):
        start_at = time.perf_counter()
        webhook.review(REVIEW).review()
        in_process.append(time.perf_counter() - start_at)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cert, key = certificate(folder)
        proc, base = start(folder, cert, key)
        body = json.dumps(REVIEW).encode()
        headers = {"Content-Type": "application/json"}
        mutate, health = [], []
        try:
            context = ssl.create_default_context(cafile=str(cert))
            with httpx.Client(base_url=base, verify=context, trust_env=False, timeout=10) as client:
                for _ in range(WARMUP):
                    client.post("/mutate", content=body, headers=headers)
                    client.get("/healthz")
                for _ in range(n):
                    start_at = time.perf_counter()
                    response = client.post("/mutate", content=body, headers=headers)
                    mutate.append(time.perf_counter() - start_at)
                    if response.status_code != 200 or "patch" not in response.json()["response"]:
                        sys.exit(f"unexpected answer: {response.status_code} {response.text}")
                    start_at = time.perf_counter()
                    client.get("/healthz")
                    health.append(time.perf_counter() - start_at)
        finally:
            proc.stop()

    rows = [
        ("POST /mutate (AdmissionReview -> JSON patch)", mutate),
        ("GET /healthz (same server, baseline)", health),
        ("webhook.review() in process, no HTTP", in_process),
    ]
    print(f"{n} requests each, one kept-alive TLS connection on 127.0.0.1")
    print(f"{'':48} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, samples in rows:
        p50, p99, worst = percentiles(samples)
        print(f"{label:48} {p50:8.3f} {p99:8.3f} {worst:8.3f}")
    m50, m99, _ = percentiles(mutate)
    h50, h99, _ = percentiles(health)
    print(f"mutate / healthz: p50 {m50 / h50:.2f}x, p99 {m99 / h99:.2f}x")
    verdict = "meets" if m99 <= TARGET_P99_MS else "MISSES"
    print(f"p99 {m99:.3f} ms {verdict} the target of {TARGET_P99_MS} ms")
    return 0 if m99 <= TARGET_P99_MS else 1


if __name__ == "__main__":
    sys.exit(main())
