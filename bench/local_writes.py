"""Benchmark: the local server's writes under concurrent clients.

    .venv/bin/python -m bench.local_writes [--clients 32] [--rounds 10] [--json F]

Starts ``python -m shared.local_server`` (what ``make run`` runs: werkzeug,
one thread per connection, SQLite + keyring) on a free loopback port with a
temporary data dir, and the provider simulator in its own process (rotate
validates the new key with it; no added latency). Each of ``clients`` threads
has its own organization, API key and keep-alive HTTP connection, and all of
them write at once:

- phase 1, ``rounds`` times per client: setup (POST .../openai/setup), then
  delete (DELETE .../openai);
- phase 2, after one setup per client: ``rounds`` times update (PUT
  ``{"enabled": true}``), then rotate (POST .../rotate with a new key).

Round 0 of each phase is a warm-up and is not recorded. It prints, per
operation, requests, errors (any status other than the expected one, or no
answer), p50 / p95 / p99 / max latency seen by the client, and the phase's
write throughput (write transactions per second, all clients together): the
local mode's write ceiling on this machine. Wall times are noisy on a shared
machine; the error count is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

from bench.revalidation import free_port, start_simulator, wait_until_answering

REPO = Path(__file__).resolve().parent.parent
OPENAI_KEY = "sk-admin-BenchKeyAbcdefghijklmnop0123456789"
# Store jobs of each operation (the budget in docs/architecture.md): writes per request, for the throughput.
WRITE_JOBS = {"setup": 1, "delete": 1, "update": 1, "rotate": 1}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 320 samples is the 317th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def start_server(data_dir: Path, simulator_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ},
        "PORT": str(port),
        "INTEGRATIONS_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        **{f"PROVIDER_{p.upper()}_BASE_URL": f"{simulator_url}/{p}" for p in ("openai", "anthropic", "gemini")},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.local_server"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(process, url + "/healthz", "local server", attempts=300)
    return process, url


def create_keys(data_dir: Path, clients: int) -> list[tuple[str, str]]:
    """(org, API key) per client, written before the server starts (same SQLite file and pepper)."""
    from shared.app.wiring import build_service
    from shared.common.config import Settings

    service = build_service(Settings(data_dir=data_dir))
    return [(f"org{index:03d}", service.create_api_key(f"org{index:03d}")[1]) for index in range(clients)]


class Client(threading.Thread):
    def __init__(self, base: str, org: str, key: str, steps: list[Step]) -> None:
        super().__init__(daemon=True)
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = key
        self.base, self.org, self.steps = base, org, steps
        self.start_line: threading.Barrier | None = None
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)

    def call(self, method: str, path: str, body: Any, expected: int) -> tuple[float, str | None]:
        started = time.perf_counter()
        try:
            response = self.session.request(method, self.base + path.format(org=self.org), json=body, timeout=60)
        except requests.RequestException as exc:
            return time.perf_counter() - started, exc.__class__.__name__
        elapsed = time.perf_counter() - started
        return elapsed, None if response.status_code == expected else f"{response.status_code} {response.text[:120]}"

    def run(self) -> None:
        assert self.start_line is not None
        self.start_line.wait()
        for round_number, (operation, method, path, body, expected) in self.steps:
            elapsed, error = self.call(method, path, body, expected)
            if round_number == 0:
                continue  # warm-up round
            self.samples[operation].append(elapsed)
            if error:
                self.errors[operation].append(error)


def run_phase(base: str, keys: list[tuple[str, str]], steps_of: Any) -> tuple[list[Client], float]:
    clients = [Client(base, org, key, steps_of(index)) for index, (org, key) in enumerate(keys)]
    start_line = threading.Barrier(len(clients) + 1)
    for client in clients:
        client.start_line = start_line
        client.start()
    start_line.wait()
    started = time.perf_counter()
    for client in clients:
        client.join()
    return clients, time.perf_counter() - started


def summarize(clients: list[Client], phase_seconds: float) -> list[dict[str, Any]]:
    operations = sorted({op for client in clients for op in client.samples}, key=list(WRITE_JOBS).index)
    writes = sum(len(c.samples[op]) * WRITE_JOBS[op] for c in clients for op in c.samples)
    rows = []
    for operation in operations:
        samples = [s for client in clients for s in client.samples[operation]]
        errors = [e for client in clients for e in client.errors[operation]]
        rows.append(
            {
                "operation": operation,
                "requests": len(samples),
                "errors": len(errors),
                "error_examples": sorted(set(errors))[:3],
                "p50_ms": round(statistics.median(samples) * 1000, 1),
                "p95_ms": round(percentile(samples, 0.95) * 1000, 1),
                "p99_ms": round(percentile(samples, 0.99) * 1000, 1),
                "max_ms": round(max(samples) * 1000, 1),
                "phase_writes_per_second": round(writes / phase_seconds, 1),
            }
        )
    return rows


INTEGRATION = "/api/v1/integrations/{org}/openai"
SETUP = ("POST", INTEGRATION + "/setup", {"credentials": {"api_key": OPENAI_KEY}}, 201)
Step = tuple[int, tuple[str, str, str, Any, int]]  # (round, (operation, method, path, body, expected status))


def setup_then_delete(rounds: range) -> list[Step]:
    return [
        step for r in rounds for step in ((r, ("setup", *SETUP)), (r, ("delete", "DELETE", INTEGRATION, None, 200)))
    ]


def update_then_rotate(rounds: range, client: int) -> list[Step]:
    steps: list[Step] = []
    for r in rounds:
        new_key = f"sk-admin-Rotated{client:03d}x{r:03d}Abcdefghijklmnop"
        steps.append((r, ("update", "PUT", INTEGRATION, {"enabled": True}, 200)))
        steps.append((r, ("rotate", "POST", INTEGRATION + "/rotate", {"new_credentials": {"api_key": new_key}}, 200)))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds per client and phase (default 10)")
    parser.add_argument("--json", help="also write the results here")
    arguments = parser.parse_args()
    rounds = range(arguments.rounds + 1)  # + the warm-up round 0
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-local-writes-") as temp:
        data_dir = Path(temp)
        keys = create_keys(data_dir, arguments.clients)
        simulator, simulator_url = start_simulator(0)
        server, base = start_server(data_dir, simulator_url)
        try:
            clients, seconds = run_phase(base, keys, lambda _: setup_then_delete(rounds))
            rows += summarize(clients, seconds)
            for client in clients:  # phase 2 needs an integration per org (not timed)
                client.call(*SETUP)
            clients, seconds = run_phase(base, keys, lambda index: update_then_rotate(rounds, index))
            rows += summarize(clients, seconds)
        finally:
            server.terminate()
            server.wait(timeout=10)
            simulator.terminate()
            simulator.wait(timeout=10)
    print(
        f"local writes: {arguments.clients} concurrent clients (own org, key and keep-alive connection each), "
        f"{arguments.rounds} measured rounds after a warm-up; shared.local_server + SQLite; {os.cpu_count()} CPUs"
    )
    header = ["operation", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "phase writes/s"]
    print("  ".join(f"{h:>14}" for h in header))
    for row in rows:
        values = [row[k] for k in ("operation", "requests", "errors", "p50_ms", "p95_ms", "p99_ms", "max_ms")]
        print("  ".join(f"{v!s:>14}" for v in [*values, row["phase_writes_per_second"]]))
        for example in row["error_examples"]:
            print(f"    error: {example}")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"settings": vars(arguments), "operations": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
