"""Benchmark: revalidate many integrations against provider simulators.

    .venv/bin/python -m bench.revalidation [--count 1000 | --counts 1000,5000,20000,50000]
                                           [--latency-ms 50] [--concurrency 16] [--runs 5] [--json F]

Seeds each row's integrations (``--counts``; or ``--count N``: N and a tenth
as many, the "small" row) spread over OpenAI, Anthropic and Gemini, in local
mode (SQLite + keyring in a temp dir), from a child process, so this process
holds none of the seeding's memory. The provider simulator runs in its own
process and answers every request after ``latency-ms``. After one untimed
warm-up revalidation (imports, thread pool, HTTP connections), each row is
revalidated ``runs`` times; every run checks every integration again
(``REVALIDATION_MIN_INTERVAL_MINUTES=0``), in pages of
``REVALIDATION_PAGE_SIZE`` within a time box (``--max-seconds``) long enough
for all of them. It prints medians (and min..max) over the runs:

- **checked**: the integrations the run actually checked, and a warning on
  any row that checked fewer than it seeded (a time box too short, or a cap):
  a row's figures are only about what it checked;
- wall time and its ratio to the ideal: what a perfectly packed pool would
  take for the provider calls the simulator actually served in that run,
  ``max(calls x latency / concurrency, max over providers of calls_p x
  latency / per_provider)``. OpenAI and Anthropic validations make two calls
  each (every check runs), Gemini one;
- where the time went: the run's ``phase_seconds`` (read, fold, write summed
  over pages; check is the check loop's wall time), the summed decrypt and
  provider-call time of the workers, and this process's CPU seconds during
  the run (client overhead: the simulator has its own process);
- memory over the timed run: peak RSS during the run (the kernel's high-water
  mark, reset just before it) and its growth over the RSS before the run; the
  peak Python allocation comes from one extra untimed run under tracemalloc
  (rows up to ``--tracemalloc-max``: it slows Python several times over);
- store jobs and pages of a run (2 jobs per page without alerts);
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
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.app.wiring import Adapters
from shared.common.config import Settings
from shared.domain.caller import Caller
from shared.domain.providers import default_registry
from shared.jobs.revalidation import revalidate_all
from shared.usecases.integrations import IntegrationService

REPO = Path(__file__).resolve().parent.parent
KEYS = {
    "openai": "sk-admin-BenchKeyAbcdefghijklmnop0123456789",
    "anthropic": "sk-ant-admin01-BenchKeyAbcdefghijklmnop0123456789",
    "gemini": "AIzaSyBenchKey0123456789abcdefghijklmno",
}
SCHEDULER = Caller(key_id="bench", org_slug="*", is_admin=True, request_id="bench")
# Seeding writes this many integrations per store job (bulk import's one-transaction path).
SEED_BATCH = 500

# Run in a child interpreter: argv = data dir, count. Encrypts one credential per integration with
# the data dir's keyring and writes them in batches, as shared.jobs.bulk_import does.
SEED_SCRIPT = """
import sys
from pathlib import Path
from shared.common.config import Settings
from shared.domain.models import Integration, Status, new_id
from shared.domain.providers import default_registry
from shared.domain.caller import Caller
from shared.usecases.integrations import IntegrationService
from shared.app.wiring import Adapters
from bench.revalidation import KEYS, SEED_BATCH
data_dir, count = Path(sys.argv[1]), int(sys.argv[2])
service = IntegrationService(Adapters(Settings(data_dir=data_dir)), default_registry())
providers = list(KEYS)
entries = []
for index in range(count):
    provider = providers[index % len(providers)]
    caller = Caller(key_id="bench", org_slug=f"org{index // len(providers):05d}", is_admin=False, request_id="b")
    spec = service.provider(provider)
    credential = service.encrypt_credential(caller, spec, KEYS[provider], "setup", None)
    integration = Integration(
        integration_id=new_id(), org_slug=caller.org_slug, provider=provider, status=Status.PENDING,
        credential_id=credential.credential_id, created_by="bench",
    )
    entries.append((integration, credential, caller.audit(caller.org_slug, provider, "setup")))
    if len(entries) == SEED_BATCH or index == count - 1:
        assert len(service.adapters.store.import_integrations(entries)) == len(entries)
        entries = []
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator(latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
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


def spread(values: list[float]) -> dict[str, float]:
    """min, median and max of one figure over the runs."""
    return {"min": min(values), "median": median(values), "max": max(values)}


def build(
    count: int, data_dir: Path, simulator_url: str, concurrency: int, max_seconds: float
) -> tuple[IntegrationService, float]:
    """A service holding ``count`` integrations (seeded by a child process); and how long seeding took."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", SEED_SCRIPT, str(data_dir), str(count)], cwd=REPO, check=True)
    seed_seconds = time.perf_counter() - started
    settings = Settings(
        data_dir=data_dir,
        provider_base_urls={p: f"{simulator_url}/{p}" for p in KEYS},
        revalidation_concurrency=concurrency,
        revalidation_min_interval_seconds=0,
        revalidation_max_seconds=max_seconds,
    )
    return IntegrationService(Adapters(settings), default_registry()), seed_seconds


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
        "pages": summary["pages"],
        "decrypts": service.adapters.cipher.counters["decrypt"] - decrypts_before,
        "checked": summary["checked"],
        "more": summary["more"],
        "active": summary["active"],
        "written": summary["written"],
        "provider_requests": requests,
        "peak_concurrent_per_provider": stats["max_concurrent"],
        "rss_before_mb": round(rss_before_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1) if peak_is_run_only else None,
        "rss_growth_mb": round((peak_kb - rss_before_kb) / 1024, 1) if peak_is_run_only else None,
    }


def measure(count: int, arguments: argparse.Namespace, simulator_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-revalidation-") as data_dir:
        service, seed_seconds = build(
            count, Path(data_dir), simulator_url, arguments.concurrency, arguments.max_seconds
        )
        if arguments.page_size:
            service.adapters.settings = replace(service.adapters.settings, revalidation_page_size=arguments.page_size)
        samples = [timed_run(service, simulator_url, arguments.latency_ms) for _ in range(arguments.runs)]
        peak_python = None
        if count <= arguments.tracemalloc_max:
            # Python's own allocations in one more run: tracemalloc slows Python down too much to time it.
            tracemalloc.start()
            revalidate_all(service, SCHEDULER)
            peak_python = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
            tracemalloc.stop()
    phases = sorted({name for sample in samples for name in sample["phase_seconds"]})
    jobs = [sample["store_jobs"] for sample in samples]
    checked = min(s["checked"] for s in samples)
    ratios = [s["ratio_to_ideal"] for s in samples if s["ratio_to_ideal"] is not None]
    rss = [s["peak_rss_mb"] for s in samples if s["peak_rss_mb"] is not None]
    return {
        "count": count,
        "runs": arguments.runs,
        "page_size": service.adapters.settings.revalidation_page_size,
        "seed_seconds": round(seed_seconds, 2),
        # What the runs actually did: every figure below is about these integrations.
        "checked": checked,
        "checked_every_run": [s["checked"] for s in samples],
        "checked_all": checked == count,
        "wall_seconds": median([s["wall_seconds"] for s in samples]),
        "wall_spread": spread([s["wall_seconds"] for s in samples]),
        "ideal_seconds": median([s["ideal_seconds"] for s in samples]),
        # None when no provider was called (nothing checked): no ideal to compare with.
        "ratio_to_ideal": median(ratios) if ratios else None,
        "ratio_min": min(ratios, default=None),
        "ratio_max": max(ratios, default=None),
        "cpu_seconds": median([s["cpu_seconds"] for s in samples]),
        "phase_seconds": {name: median([s["phase_seconds"].get(name, 0.0) for s in samples]) for name in phases},
        "store_jobs": max(jobs),
        "store_jobs_same_every_run": len(set(jobs)) == 1,
        "pages": max(s["pages"] for s in samples),
        "decrypts": max(s["decrypts"] for s in samples),
        "provider_requests": samples[-1]["provider_requests"],
        "peak_concurrent_per_provider": samples[-1]["peak_concurrent_per_provider"],
        "peak_rss_mb": max(rss, default=None),
        "peak_rss_spread": spread(rss) if rss else None,
        "rss_growth_mb": max((s["rss_growth_mb"] for s in samples if s["rss_growth_mb"] is not None), default=None),
        "peak_python_mb": peak_python,
        "samples": samples,
    }


def warm_up(arguments: argparse.Namespace, simulator_url: str) -> None:
    """One small untimed revalidation: imports, thread pool, connections and code paths warm."""
    with tempfile.TemporaryDirectory(prefix="bench-revalidation-warm-") as data_dir:
        service, _ = build(30, Path(data_dir), simulator_url, arguments.concurrency, arguments.max_seconds)
        revalidate_all(service, SCHEDULER)


def print_rows(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'N':>6} {'checked':>7} {'wall s':>7} {'ideal s':>7} {'x ideal':>7} {'min..max':>11} {'jobs':>4} "
        f"{'pages':>5} {'decrypts':>8} {'cpu s':>6} {'read':>6} {'check':>6} {'fold':>6} {'write':>6} "
        f"{'decr.Σ':>7} {'prov.Σ':>7} {'RSS MB':>7} {'min..max':>13} {'+MB':>5} {'py MB':>6}"
    )
    print(header + "  peak in flight per provider")
    for row in rows:
        phase = row["phase_seconds"]
        rss = row["peak_rss_spread"]
        rss_range = f"{rss['min']:.0f}..{rss['max']:.0f}" if rss else "-"
        ratio = "-" if row["ratio_to_ideal"] is None else f"{row['ratio_to_ideal']:.2f}"
        ratios = "-" if row["ratio_min"] is None else f"{row['ratio_min']:.2f}..{row['ratio_max']:.2f}"
        print(
            f"{row['count']:>6} {row['checked']:>7} {row['wall_seconds']:>7.2f} {row['ideal_seconds']:>7.2f} "
            f"{ratio:>7} {ratios:>11} {row['store_jobs']:>4} "
            f"{row['pages']:>5} {row['decrypts']:>8} {row['cpu_seconds']:>6.2f} {phase.get('read', 0):>6.2f} "
            f"{phase.get('check', 0):>6.2f} {phase.get('fold', 0):>6.2f} {phase.get('write', 0):>6.2f} "
            f"{phase.get('decrypt_total', 0):>7.2f} {phase.get('provider_total', 0):>7.2f} "
            f"{row['peak_rss_mb'] or '-':>7} {rss_range:>13} {row['rss_growth_mb'] or '-':>5} "
            f"{row['peak_python_mb'] or '-':>6}  {row['peak_concurrent_per_provider']}"
        )
    for row in rows:
        if not row["checked_all"]:
            print(
                f"WARNING: the N={row['count']} row checked {row['checked']} of {row['count']} integrations in its"
                f" worst run ({row['checked_every_run']}): its figures are about those {row['checked']} only"
                " (raise --max-seconds, or check REVALIDATION_BATCH_LIMIT)."
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="one row of N and one of N/10 (default 1000)")
    parser.add_argument("--counts", help="comma-separated row sizes instead of --count, e.g. 1000,5000,20000,50000")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=Settings().revalidation_concurrency)
    parser.add_argument("--runs", type=int, default=5, help="timed revalidations per row (default 5; medians)")
    parser.add_argument("--page-size", type=int, help="REVALIDATION_PAGE_SIZE for the runs (default the setting's)")
    parser.add_argument(
        "--max-seconds", type=float, default=1800, help="time box of each run (default 1800: every row finishes)"
    )
    parser.add_argument(
        "--tracemalloc-max", type=int, default=5000, help="largest row that gets the extra tracemalloc run"
    )
    parser.add_argument("--json", help="also write the results here")
    arguments = parser.parse_args(argv)
    counts = (
        sorted(int(value) for value in arguments.counts.split(","))
        if arguments.counts
        else [max(arguments.count // 10, 3), arguments.count]
    )
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import logging

    logging.getLogger("integrations").setLevel(logging.WARNING)
    process, url = start_simulator(arguments.latency_ms)
    try:
        warm_up(arguments, url)
        rows = []
        for count in counts:
            print(f"[bench] N={count}: seeding, then {arguments.runs} runs", file=sys.stderr, flush=True)
            rows.append(measure(count, arguments, url))
    finally:
        process.terminate()
        process.wait(timeout=10)
    settings = Settings()
    print(
        f"revalidation bench (SQLite + keyring): latency {arguments.latency_ms:g} ms, "
        f"concurrency {arguments.concurrency}, per-provider cap {settings.revalidation_per_provider}, "
        f"pages of {rows[0]['page_size']}, medians of {arguments.runs} runs after a warm-up, "
        f"{os.cpu_count()}-core machine (wall times are noisy; read the ratios)"
    )
    print_rows(rows)
    print(
        "checked = integrations the worst run checked; read/check/fold/write = the run's phases (read/fold/write"
        " summed over pages, check = the check loop's wall s); decr.Σ / prov.Σ = decrypt / provider-call seconds"
        " summed over workers; cpu s = this process's CPU during the run; RSS MB = peak RSS during the run (max,"
        " then min..max over runs), +MB = its growth over the RSS before it; py MB = peak Python allocation"
        " (tracemalloc, one extra run)."
    )
    small, large = rows[0], rows[-1]
    if len(rows) > 1 and small["peak_rss_mb"] and large["peak_rss_mb"]:
        print(
            f"peak RSS at N={large['count']} is {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}x the one at"
            f" N={small['count']}; store jobs {large['store_jobs']} for {large['pages']} pages at N={large['count']},"
            f" {small['store_jobs']} for {small['pages']} at N={small['count']}"
        )
    if arguments.json:
        report = {
            "settings": {**vars(arguments), "per_provider": settings.revalidation_per_provider},
            "rows": rows,
            # The smallest and the largest row, under the names earlier versions wrote.
            "small": small,
            "large": large,
        }
        Path(arguments.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
