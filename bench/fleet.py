"""Benchmark: fleet operations against the same work done one request at a time.

    .venv/bin/python -m bench.fleet [--items 100] [--credentials 1000] [--latency-ms 30] [--modes local,gcp]

In each mode (local: SQLite + keyring; gcp: BigQuery emulator + KMS fake +
Secret Manager fake, all on loopback), in the same run:

1. **Import**: ``--items`` providers (YAML-only SaaS providers answered by a
   who-am-I stand-in after ``--latency-ms``) connected by one
   ``POST /{org}/import`` against ``--items`` ``POST /{org}/{provider}/setup``
   requests, through the real WSGI app; then the same with validation
   (``validate: true`` against setup + validate per item).
2. **Rewrap**: ``--credentials`` credentials (written through the store port
   over three key versions), a rotation, then ``rewrap_all`` one credential
   per batch (one read + one write each: the request-at-a-time equivalent);
   another rotation, then ``rewrap_all`` in batches of 500.

Prints wall times, the ratio (one at a time / batched), store jobs and KMS
calls (exact). Wall times are noisy on a shared 2-core machine; read the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bench.harness import mode_settings, running_stack
from shared.app.wiring import Adapters
from shared.common.config import Settings
from shared.crypto import credential_aad
from shared.domain.caller import Caller
from shared.domain.models import AuditEvent, Integration, Status, StoredCredential, new_id
from shared.domain.providers import load_registry
from shared.jobs.key_rotation import rewrap_all
from shared.usecases.integrations import IntegrationService
from tests.fakes.fleet_registry import write_fleet_registry

ORG = "bench-fleet"
OPERATOR = Caller(key_id="bench", org_slug="*", is_admin=True, request_id="bench-fleet")


class WhoAmI:
    """``GET /<provider>/me`` answered after ``latency`` seconds: 200 for any bearer token."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        Request(environ)
        time.sleep(self.latency)
        return Response('{"id": "me"}', 200)(environ, start_response)


@contextmanager
def who_am_i(latency_ms: float) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, WhoAmI(latency_ms / 1000), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def fleet_service(settings: Settings, providers: list[str], base: str, work_dir: Path) -> IntegrationService:
    path = write_fleet_registry(work_dir, providers)
    urls = {**settings.provider_base_urls, **{name: f"{base}/{name}" for name in providers}}
    return IntegrationService(Adapters(replace(settings, provider_base_urls=urls)), load_registry(path))


def timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def check(response: Any, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.path}: {response.status_code} {response.text[:300]}")
    return response.get_json()


def measure_import(service: IntegrationService, providers: list[str], validate: bool) -> dict[str, Any]:
    from shared.commands.local_server import create_app
    from shared.inbound import http

    http.use_service(service)
    try:
        client = create_app().test_client()
        logging.getLogger("integrations").setLevel(logging.WARNING)
        headers = {"X-API-Key": service.create_api_key(ORG)[1]}
        check(client.get(f"/api/v1/integrations/{ORG}", headers=headers), 200)  # key cached, as when warm
        items = [{"provider": name, "credentials": {"api_key": f"tok_bench{name}"}} for name in providers]
        store, cipher = service.adapters.store, service.adapters.cipher

        def one_at_a_time() -> None:
            for item in items:
                base = f"/api/v1/integrations/{ORG}/{item['provider']}"
                check(client.post(base + "/setup", json={"credentials": item["credentials"]}, headers=headers), 201)
                if validate:
                    check(client.post(base + "/validate", headers=headers), 200)

        store.counters.clear()
        cipher.counters.clear()
        single_seconds, _ = timed(one_at_a_time)
        single_jobs, single_kms = store.counters["jobs"], cipher.counters["encrypt"] + cipher.counters["decrypt"]
        for item in items:
            check(client.delete(f"/api/v1/integrations/{ORG}/{item['provider']}", headers=headers), 200)

        store.counters.clear()
        cipher.counters.clear()
        body = {"items": items, "validate": validate}
        batch_seconds, report = timed(
            lambda: check(client.post(f"/api/v1/integrations/{ORG}/import", json=body, headers=headers), 200)
        )
        if report["summary"]["created"] != len(items):
            raise RuntimeError(f"import created {report['summary']}")
        batch_jobs, batch_kms = store.counters["jobs"], cipher.counters["encrypt"] + cipher.counters["decrypt"]
        for item in items:
            check(client.delete(f"/api/v1/integrations/{ORG}/{item['provider']}", headers=headers), 200)
    finally:
        http.use_service(None)
    return {
        "work": f"import {len(items)}" + (" + validate" if validate else ""),
        "one_at_a_time_s": round(single_seconds, 3),
        "batched_s": round(batch_seconds, 3),
        "ratio": round(single_seconds / batch_seconds, 1),
        "store_jobs": f"{single_jobs} vs {batch_jobs}",
        "kms_calls": f"{single_kms} vs {batch_kms}",
    }


def seed(service: IntegrationService, count: int) -> None:
    """``count`` credentials over three key versions, written through the store port (set-up only)."""
    cipher = service.adapters.cipher
    per_version = -(-count // 3)

    def make(number: int) -> tuple[Integration, StoredCredential, AuditEvent]:
        provider, credential_id = f"p{number:05d}", new_id()
        sealed = cipher.encrypt(f"tok_seed{number:05d}".encode(), credential_aad(ORG, provider, credential_id))
        return (
            Integration(new_id(), ORG, provider, Status.ACTIVE, credential_id),
            StoredCredential(credential_id, ORG, provider, "api_key", sealed.ciphertext, sealed.key_version, "seed"),
            AuditEvent(ORG, provider, "setup", "success", "bench", "bench"),
        )

    entries: list[tuple[Integration, StoredCredential, AuditEvent]] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for version in range(3):
            if version:
                cipher.rotate_key()
            entries += pool.map(make, range(version * per_version, min(count, (version + 1) * per_version)))
    for start in range(0, len(entries), 500):
        service.adapters.store.import_integrations(entries[start : start + 500])


def measure_rewrap(service: IntegrationService, count: int) -> dict[str, Any]:
    seed(service, count)
    cipher = service.adapters.cipher
    cipher.rotate_key()
    single_seconds, single = timed(lambda: rewrap_all(service, OPERATOR, batch_size=1))
    cipher.rotate_key()
    batch_seconds, batched = timed(lambda: rewrap_all(service, OPERATOR, batch_size=500))
    if single["rewrapped"] != count or batched["rewrapped"] != count:
        raise RuntimeError(f"rewrap moved {single['rewrapped']} and {batched['rewrapped']} of {count}")
    return {
        "work": f"rewrap {count}",
        "one_at_a_time_s": round(single_seconds, 3),
        "batched_s": round(batch_seconds, 3),
        "ratio": round(single_seconds / batch_seconds, 1),
        "store_jobs": f"{single['store_jobs']} vs {batched['store_jobs']}",
        "kms_calls": f"{single['kms_calls']} vs {batched['kms_calls']}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100, help="import items (at most 100 per call)")
    parser.add_argument("--credentials", type=int, default=1000, help="credentials to re-encrypt")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="the who-am-I stand-in's answer time")
    parser.add_argument("--modes", default="local,gcp")
    parser.add_argument("--json", help="also write the results here")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the stand-in's access log
    providers = [f"saas{number:03d}" for number in range(arguments.items)]
    rows = []
    with running_stack() as (simulator, gcp), who_am_i(arguments.latency_ms) as base:
        for mode in arguments.modes.split(","):
            with tempfile.TemporaryDirectory(prefix="bench-fleet-") as work:
                work_dir = Path(work)
                settings = mode_settings(mode, simulator, gcp, work_dir / "data")
                if mode == "gcp":  # a key of its own: the rotations here stay here
                    key_name = f"{gcp.key_name.rsplit('/', 1)[0]}/bench-{uuid.uuid4().hex[:8]}"
                    gcp.kms.create_key(key_name)
                    settings = replace(settings, kms_key_name=key_name)
                for validate in (False, True):
                    service = fleet_service(settings, providers, base, work_dir)
                    rows.append({"mode": mode, **measure_import(service, providers, validate)})
                    print(json.dumps(rows[-1]), flush=True)
                rows.append(
                    {"mode": mode, **measure_rewrap(fleet_service(settings, [], base, work_dir), arguments.credentials)}
                )
                print(json.dumps(rows[-1]), flush=True)
    print(
        f"\nfleet bench: who-am-I latency {arguments.latency_ms:g} ms; loopback KMS fake and BigQuery emulator; "
        "2-core shared machine (read the ratios)"
    )
    header = f"{'mode':<6} {'work':<24} {'one at a time s':>15} {'batched s':>10} {'ratio':>7}  store jobs    kms calls"
    print(header)
    for row in rows:
        print(
            f"{row['mode']:<6} {row['work']:<24} {row['one_at_a_time_s']:>15} {row['batched_s']:>10} "
            f"{row['ratio']:>6}x  {row['store_jobs']:<13} {row['kms_calls']}"
        )
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
