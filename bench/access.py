"""Benchmark: credential access (POST .../{provider}/access) against its floor, in both modes.

    .venv/bin/python -m bench.access [--orgs 20] [--requests 200] [--json F]

Seeds ``orgs`` organizations, each with an active OpenAI integration (an API
key: no token call, so what is measured is the service's own cost), in local
mode (SQLite + keyring) and in gcp mode (BigQuery emulator + KMS fake). Then,
in the same run and in turn, per mode:

- **baseline**: the bare floor of an access, one store read of the
  integration and its credential plus one decrypt
  (``store.get_integration_with_credential`` + ``service.decrypt_credential``);
- **access**: the whole route through the real WSGI app with an admin key:
  auth (cached), body, the registry and pipeline checks, the read, the
  decrypt, the audit append (a streamed row in gcp mode) and the answer.

It prints accesses per second, p50 and p99 per mode and the ratio of each to
the baseline (the overhead of the route over its floor), plus the exact
counters per access. Times are wall clock on a noisy shared machine: read the
ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import OPENAI_KEY, PROJECT, mode_settings, running_stack
from shared.domain.models import Status

PIPELINE = "cost/usage_cost"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    total = sum(samples)
    return {
        "per_second": len(samples) / total if total else float("nan"),
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }


def seed(client: Any, service: Any, orgs: list[str]) -> None:
    """One active OpenAI integration per org (validated against the simulator, like a real one)."""
    for org in orgs:
        key = service.create_api_key(org)[1]
        created = client.post(
            f"/api/v1/integrations/{org}/openai/setup",
            json={"credentials": {"api_key": OPENAI_KEY}},
            headers={"X-API-Key": key},
        )
        validated = client.post(f"/api/v1/integrations/{org}/openai/validate", headers={"X-API-Key": key})
        if created.status_code != 201 or validated.get_json().get("status") != Status.ACTIVE:
            raise RuntimeError(f"seeding {org} failed: {created.status_code} {validated.get_data(as_text=True)}")


def measure(mode: str, settings: Any, orgs: int, requests: int) -> dict[str, Any]:
    from shared.app.wiring import build_service
    from shared.commands.local_server import create_app
    from shared.inbound import http

    service = build_service(settings)
    http.use_service(service)
    try:
        client = create_app().test_client()
        logging.getLogger("integrations").setLevel(logging.WARNING)
        names = [f"bench-{index:03d}" for index in range(orgs)]
        seed(client, service, names)
        admin = {"X-API-Key": service.create_api_key("bench-ops", is_admin=True)[1]}
        store, cipher = service.adapters.store, service.adapters.cipher

        def baseline(org: str) -> None:
            pair = store.get_integration_with_credential(org, "openai")
            assert pair is not None
            service.decrypt_credential(*pair)

        def route(org: str) -> None:
            response = client.post(
                f"/api/v1/integrations/{org}/openai/access", json={"pipeline": PIPELINE}, headers=admin
            )
            if response.status_code != 200:
                raise RuntimeError(f"access answered {response.status_code}: {response.get_data(as_text=True)}")

        for org in names[:3]:  # warm: imports, the auth cache, pooled connections
            baseline(org)
            route(org)
        samples: dict[str, list[float]] = {"baseline": [], "access": []}
        counters: dict[str, dict[str, int]] = {}
        # Interleaved in blocks, so a burst of noise on the shared machine hits both alike.
        for block in range(0, requests, 20):
            for kind, call in (("baseline", baseline), ("access", route)):
                store.counters.clear()
                cipher.counters.clear()
                count = min(20, requests - block)
                for index in range(count):
                    started = time.perf_counter()
                    call(names[(block + index) % len(names)])
                    samples[kind].append(time.perf_counter() - started)
                counters[kind] = {
                    name: value // count for name, value in (store.counters + cipher.counters).items() if value
                }
        result: dict[str, Any] = {"mode": mode, "requests": requests, "orgs": orgs}
        for kind in ("baseline", "access"):
            result[kind] = {**summary(samples[kind]), "per_access": counters[kind]}
        result["ratio_p50"] = result["access"]["p50_ms"] / result["baseline"]["p50_ms"]
        result["ratio_per_second"] = result["baseline"]["per_second"] / result["access"]["per_second"]
        return result
    finally:
        http.use_service(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200, help="measured calls per kind and mode")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args(argv)
    results = []
    with running_stack() as (simulator, gcp), tempfile.TemporaryDirectory() as tmp:
        for mode in ("local", "gcp"):
            print(
                f"[bench] {mode}: seeding {arguments.orgs} orgs, {arguments.requests} calls per kind", file=sys.stderr
            )
            settings = mode_settings(mode, simulator, gcp, Path(tmp) / mode)
            results.append(measure(mode, settings, arguments.orgs, arguments.requests))
    print(f"credential access vs its floor (store read + decrypt), {PROJECT} stand-ins on loopback")
    print(f"{'mode':6} {'kind':9} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}  per access")
    for result in results:
        for kind in ("baseline", "access"):
            row = result[kind]
            print(
                f"{result['mode']:6} {kind:9} {row['per_second']:8.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f}"
                f"  {json.dumps(row['per_access'])}"
            )
        print(
            f"{result['mode']:6} ratio     access/baseline: p50 {result['ratio_p50']:.2f}x,"
            f" throughput {result['ratio_per_second']:.2f}x"
        )
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
