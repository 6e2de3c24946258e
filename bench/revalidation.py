"""Benchmark: revalidate many integrations against provider simulators.

    .venv/bin/python -m bench.revalidation [--count 1000] [--latency-ms 50] [--concurrency 16]

Creates ``count`` integrations spread over OpenAI, Anthropic and Gemini (local
mode: SQLite + keyring in a temp dir), starts the provider simulator in its
own process answering every request after ``latency-ms``, runs one
revalidation and prints:

- wall time and its ratio to the ideal ``count x latency / concurrency``
  (what a perfectly packed pool would take; target: within 1.3x);
- peak Python memory during the run (tracemalloc) and the process's max RSS;
- store jobs of the run, for this count and for a tenth of it (constant in N);
- the simulator's peak concurrent requests per provider (the per-provider cap).

Times are wall clock on a noisy 2-core machine: read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

from shared.config import Settings
from shared.providers import default_registry
from shared.service import Caller, IntegrationService
from shared.wiring import Adapters

REPO = Path(__file__).resolve().parent.parent
KEYS = {
    "openai": "sk-admin-BenchKeyAbcdefghijklmnop0123456789",
    "anthropic": "sk-ant-admin01-BenchKeyAbcdefghijklmnop0123456789",
    "gemini": "AIzaSyBenchKey0123456789abcdefghijklmno",
}
SCHEDULER = Caller(key_id="bench", org_slug="*", is_admin=True, request_id="bench")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator(latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.simulators", "--port", str(port), "--latency-ms", str(latency_ms), "--quiet"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/_sim/stats", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("simulator did not start")


def simulator_call(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"{}")


def build(count: int, data_dir: Path, simulator_url: str, concurrency: int) -> IntegrationService:
    settings = Settings(
        data_dir=data_dir,
        provider_base_urls={p: f"{simulator_url}/{p}" for p in KEYS},
        revalidation_concurrency=concurrency,
        revalidation_min_interval_seconds=0,
        revalidation_max_seconds=600,
    )
    service = IntegrationService(Adapters(settings), default_registry())
    providers = list(KEYS)
    for index in range(count):
        provider = providers[index % len(providers)]
        caller = Caller(key_id="bench", org_slug=f"org{index // len(providers):05d}", is_admin=False, request_id="b")
        service.setup(caller, provider, {"api_key": KEYS[provider]}, None, None)
    return service


def measure(count: int, latency_ms: float, concurrency: int, simulator_url: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-revalidation-") as data_dir:
        service = build(count, Path(data_dir), simulator_url, concurrency)
        simulator_call(simulator_url, "/_sim/reset", {})
        started = time.perf_counter()
        summary = service.revalidate(SCHEDULER)
        wall = time.perf_counter() - started
        stats = simulator_call(simulator_url, "/_sim/stats")
        decrypts = service.adapters.cipher.counters["decrypt"]
        # Memory in a second run: tracemalloc slows Python down too much to time the same run.
        tracemalloc.start()
        service.revalidate(SCHEDULER)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ideal = count * latency_ms / 1000 / concurrency
        return {
            "count": count,
            "wall_seconds": round(wall, 3),
            "ideal_seconds": round(ideal, 3),
            "ratio_to_ideal": round(wall / ideal, 2),
            "peak_python_mb": round(peak / 2**20, 1),
            "store_jobs": summary["store_jobs"],
            "decrypts": decrypts,
            "checked": summary["checked"],
            "active": summary["active"],
            "provider_requests": stats["requests"],
            "peak_concurrent_per_provider": stats["max_concurrent"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=Settings().revalidation_concurrency)
    parser.add_argument("--json", help="also write the results here")
    arguments = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    process, url = start_simulator(arguments.latency_ms)
    try:
        small = measure(max(arguments.count // 10, 3), arguments.latency_ms, arguments.concurrency, url)
        large = measure(arguments.count, arguments.latency_ms, arguments.concurrency, url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    per_provider_cap = Settings().revalidation_per_provider
    print(
        f"revalidation bench: latency {arguments.latency_ms:g} ms, concurrency {arguments.concurrency}, "
        f"per-provider cap {per_provider_cap}, 2-core machine (wall times are noisy)"
    )
    header = f"{'N':>6} {'wall s':>8} {'ideal s':>8} {'x ideal':>8} {'peak MB':>8} {'jobs':>5} {'decrypts':>8}"
    print(header + "  peak in flight per provider")
    for row in (small, large):
        print(
            f"{row['count']:>6} {row['wall_seconds']:>8} {row['ideal_seconds']:>8} {row['ratio_to_ideal']:>8} "
            f"{row['peak_python_mb']:>8} {row['store_jobs']:>5} {row['decrypts']:>8}  "
            f"{row['peak_concurrent_per_provider']}"
        )
    print(f"max RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"store jobs constant in N: {small['store_jobs'] == large['store_jobs']}")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"small": small, "large": large}, indent=2))


if __name__ == "__main__":
    main()
