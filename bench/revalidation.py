"""Benchmark: revalidate many integrations against provider simulators.

    .venv/bin/python -m bench.revalidation [--count 1000] [--latency-ms 50] [--concurrency 16]
                                           [--runs 5] [--json F]

Seeds ``count`` integrations (and a tenth as many, the "small" row) spread
over OpenAI, Anthropic and Gemini, in local mode (SQLite + keyring in a temp
dir). The provider
simulator runs in its own process and answers every request after
``latency-ms``. After one untimed warm-up revalidation (imports, thread pool,
HTTP connections), each row is revalidated ``runs`` times; every run checks
every integration again. It prints medians over the runs:

- wall time and its ratio to the ideal: what a perfectly packed pool would
  take for the provider calls the simulator actually served in that run,
  ``max(calls x latency / concurrency, max over providers of calls_p x
  latency / per_provider)`` (target: within 1.3x). OpenAI and Anthropic
  validations make two calls each (every check runs), Gemini one;
- where the time went: the store read, the check phase, folding results, the
  batch write (the run's own ``phase_seconds``), the summed decrypt and
  provider-call time of the workers, and this process's CPU seconds during
  the run (client overhead: the simulator has its own process);
- memory over the timed run: peak RSS during the run (the kernel's high-water
  mark, reset just before it) and its growth over the RSS before the run; the
  peak Python allocation comes from one extra untimed run under tracemalloc;
- store jobs of a run, for both rows (constant in N: 2 without alerts);
- the simulator's peak concurrent requests per provider (the per-provider cap).

Times are wall clock on a noisy shared machine: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.providers import default_registry
from shared.revalidation import revalidate_all
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
    wait_until_answering(process, url + "/_sim/stats", "simulator", attempts=200)
    return process, url


def wait_until_answering(process: subprocess.Popen[bytes], url: str, what: str, *, attempts: int) -> None:
    """Poll ``url`` every 50 ms until it answers; kill ``process`` and stop the bench if it never does."""
    for _ in range(attempts):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{what} did not start")


def simulator_call(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"{}")


def _proc_status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) so it covers what follows only (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def build(count: int, data_dir: Path, simulator_url: str, concurrency: int) -> tuple[IntegrationService, float]:
    """A service holding ``count`` integrations; and how long seeding them took."""
    settings = Settings(
        data_dir=data_dir,
        provider_base_urls={p: f"{simulator_url}/{p}" for p in KEYS},
        revalidation_concurrency=concurrency,
        revalidation_min_interval_seconds=0,
        revalidation_max_seconds=600,
    )
    service = IntegrationService(Adapters(settings), default_registry())
    providers = list(KEYS)
    started = time.perf_counter()
    for index in range(count):
        provider = providers[index % len(providers)]
        caller = Caller(key_id="bench", org_slug=f"org{index // len(providers):05d}", is_admin=False, request_id="b")
        service.setup(caller, provider, {"api_key": KEYS[provider]}, None, None)
    return service, time.perf_counter() - started


def ideal_seconds(requests: dict[str, int], latency_ms: float, concurrency: int, per_provider: int) -> float:
    """The wall time of a perfectly packed pool for these provider calls under both caps."""
    latency = latency_ms / 1000
    overall = sum(requests.values()) * latency / concurrency
    busiest = max((calls * latency / per_provider for calls in requests.values()), default=0.0)
    return max(overall, busiest)


def timed_run(service: IntegrationService, simulator_url: str, latency_ms: float) -> dict[str, Any]:
    settings = service.adapters.settings
    simulator_call(simulator_url, "/_sim/reset", {})
    decrypts_before = service.adapters.cipher.counters["decrypt"]
    rss_before_kb = _proc_status_kb("VmRSS")
    peak_is_run_only = reset_peak_rss()
    cpu_before = time.process_time()
    started = time.perf_counter()
    summary = revalidate_all(service, SCHEDULER)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    peak_kb = _proc_status_kb("VmHWM")
    stats = simulator_call(simulator_url, "/_sim/stats")
    requests = {provider: calls for provider, calls in stats["requests"].items() if calls}
    ideal = ideal_seconds(requests, latency_ms, settings.revalidation_concurrency, settings.revalidation_per_provider)
    return {
        "wall_seconds": round(wall, 3),
        "ideal_seconds": round(ideal, 3),
        "ratio_to_ideal": round(wall / ideal, 3) if ideal else None,
        "cpu_seconds": round(cpu, 3),
        "phase_seconds": summary["phase_seconds"],
        "store_jobs": summary["store_jobs"],
        "decrypts": service.adapters.cipher.counters["decrypt"] - decrypts_before,
        "checked": summary["checked"],
        "active": summary["active"],
        "written": summary["written"],
        "provider_requests": requests,
        "peak_concurrent_per_provider": stats["max_concurrent"],
        "rss_before_mb": round(rss_before_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1) if peak_is_run_only else None,
        "rss_growth_mb": round((peak_kb - rss_before_kb) / 1024, 1) if peak_is_run_only else None,
    }


def measure(count: int, latency_ms: float, concurrency: int, runs: int, simulator_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-revalidation-") as data_dir:
        service, seed_seconds = build(count, Path(data_dir), simulator_url, concurrency)
        samples = [timed_run(service, simulator_url, latency_ms) for _ in range(runs)]
        # Python's own allocations in one more run: tracemalloc slows Python down too much to time it.
        tracemalloc.start()
        revalidate_all(service, SCHEDULER)
        _, peak_python = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    phases = sorted({name for sample in samples for name in sample["phase_seconds"]})
    jobs = {sample["store_jobs"] for sample in samples}
    return {
        "count": count,
        "runs": runs,
        "seed_seconds": round(seed_seconds, 2),
        "wall_seconds": median([s["wall_seconds"] for s in samples]),
        "ideal_seconds": median([s["ideal_seconds"] for s in samples]),
        "ratio_to_ideal": median([s["ratio_to_ideal"] for s in samples]),
        "ratio_min": min(s["ratio_to_ideal"] for s in samples),
        "ratio_max": max(s["ratio_to_ideal"] for s in samples),
        "cpu_seconds": median([s["cpu_seconds"] for s in samples]),
        "phase_seconds": {name: median([s["phase_seconds"].get(name, 0.0) for s in samples]) for name in phases},
        "store_jobs": max(jobs),
        "store_jobs_same_every_run": len(jobs) == 1,
        "decrypts": max(s["decrypts"] for s in samples),
        "checked": min(s["checked"] for s in samples),
        "provider_requests": samples[-1]["provider_requests"],
        "peak_concurrent_per_provider": samples[-1]["peak_concurrent_per_provider"],
        "peak_rss_mb": max((s["peak_rss_mb"] for s in samples if s["peak_rss_mb"] is not None), default=None),
        "rss_growth_mb": max((s["rss_growth_mb"] for s in samples if s["rss_growth_mb"] is not None), default=None),
        "peak_python_mb": round(peak_python / 2**20, 1),
        "samples": samples,
    }


def warm_up(latency_ms: float, concurrency: int, simulator_url: str) -> None:
    """One small untimed revalidation: imports, thread pool, connections and code paths warm."""
    with tempfile.TemporaryDirectory(prefix="bench-revalidation-warm-") as data_dir:
        service, _ = build(30, Path(data_dir), simulator_url, concurrency)
        revalidate_all(service, SCHEDULER)


def print_rows(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'N':>6} {'wall s':>7} {'ideal s':>7} {'x ideal':>7} {'min..max':>11} {'jobs':>4} {'decrypts':>8} "
        f"{'cpu s':>6} {'read':>6} {'check':>6} {'fold':>6} {'write':>6} {'decr.Σ':>7} {'prov.Σ':>7} "
        f"{'RSS MB':>7} {'+MB':>5} {'py MB':>6}"
    )
    print(header + "  peak in flight per provider")
    for row in rows:
        phase = row["phase_seconds"]
        print(
            f"{row['count']:>6} {row['wall_seconds']:>7.2f} {row['ideal_seconds']:>7.2f} {row['ratio_to_ideal']:>7.2f} "
            f"{row['ratio_min']:>5.2f}..{row['ratio_max']:<4.2f} {row['store_jobs']:>4} {row['decrypts']:>8} "
            f"{row['cpu_seconds']:>6.2f} {phase.get('read', 0):>6.2f} {phase.get('check', 0):>6.2f} "
            f"{phase.get('fold', 0):>6.2f} {phase.get('write', 0):>6.2f} {phase.get('decrypt_total', 0):>7.2f} "
            f"{phase.get('provider_total', 0):>7.2f} {row['peak_rss_mb'] or '-':>7} {row['rss_growth_mb'] or '-':>5} "
            f"{row['peak_python_mb']:>6}  {row['peak_concurrent_per_provider']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=Settings().revalidation_concurrency)
    parser.add_argument("--runs", type=int, default=5, help="timed revalidations per row (default 5; medians)")
    parser.add_argument("--json", help="also write the results here")
    arguments = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import logging

    logging.getLogger("integrations").setLevel(logging.WARNING)
    process, url = start_simulator(arguments.latency_ms)
    try:
        warm_up(arguments.latency_ms, arguments.concurrency, url)
        small = measure(max(arguments.count // 10, 3), arguments.latency_ms, arguments.concurrency, arguments.runs, url)
        large = measure(arguments.count, arguments.latency_ms, arguments.concurrency, arguments.runs, url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    settings = Settings()
    print(
        f"revalidation bench (SQLite + keyring): latency {arguments.latency_ms:g} ms, "
        f"concurrency {arguments.concurrency}, per-provider cap {settings.revalidation_per_provider}, "
        f"medians of {arguments.runs} runs after a warm-up, "
        f"{os.cpu_count()}-core machine (wall times are noisy; read the ratios)"
    )
    print_rows([small, large])
    print(
        "read/check/fold/write = the run's phases (wall s); decr.Σ / prov.Σ = decrypt / provider-call seconds summed"
        " over workers; cpu s = this process's CPU during the run; RSS MB = peak RSS during the run, +MB = its"
        " growth over the RSS before it; py MB = peak Python allocation (tracemalloc, one extra run)."
    )
    print(
        f"store jobs constant in N: {small['store_jobs'] == large['store_jobs']}"
        f" ({small['store_jobs']} at N={small['count']}, {large['store_jobs']} at N={large['count']})"
    )
    if arguments.json:
        report = {
            "settings": {**vars(arguments), "per_provider": settings.revalidation_per_provider},
            "small": small,
            "large": large,
        }
        Path(arguments.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
