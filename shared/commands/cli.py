"""Admin command line: org API keys, the local keyring, the store bootstrap.

    python -m shared.cli create-key --org acme [--admin] [--label NAME]
    python -m shared.cli list-keys [--org acme]
    python -m shared.cli revoke-key KEY_ID
    python -m shared.cli set-webhook --org acme --url https://hooks.example/alerts
    python -m shared.cli remove-webhook --org acme
    python -m shared.cli list-alerts --org acme
    python -m shared.cli revalidate [--max-seconds N]
    python -m shared.cli import --org acme --file items.json|items.csv [--validate] [--dry-run]
    python -m shared.cli key-status              (primary key version, credentials per version)
    python -m shared.cli rotate-key              (new primary key version: Cloud KMS or the local keyring)
    python -m shared.cli rewrap [--batch-size N] [--max-seconds S]   (move credentials onto the primary)
    python -m shared.cli rotate-keyring          (same as rotate-key; kept for old scripts)
    python -m shared.cli bootstrap               (create dataset/tables; idempotent)

``import`` reads a JSON file (``{"items": [...]}`` or a bare list of
``{provider, credentials, config?, expires_at?}``) or a CSV file with columns
``provider``, ``credential`` (the secret), optional ``expires_at`` and
``config.<field>``; files of more than 100 items go in calls of 100. On a
terminal it draws a progress bar on stderr. ``--org`` is checked as
``create-key`` checks it, and a file that cannot be read, is over 64 MiB, is
not UTF-8 or is malformed (a CSV field over csv's limit, JSON nested too deep)
is a one-line error and exit code 2.

Uses the same settings as the service (INTEGRATIONS_BACKEND, INTEGRATIONS_DATA_DIR,
PROVIDER_*_BASE_URL, ...). Prints JSON; the API key is printed once, at creation,
and never stored.

Exit codes: 0 done; 1 revalidate reached no provider at all (every check failed
to connect: see ``sent_to`` in the summary); 2 bad arguments or settings, or the
store/keyring refused.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.app.wiring import build_service
from shared.common.config import Settings
from shared.common.jsonbody import loads_bounded
from shared.domain.caller import Caller
from shared.domain.errors import BadRequest, ConfigurationError, ServiceError
from shared.domain.inputs import check_org_slug
from shared.domain.models import ApiKeyRecord, iso, new_id
from shared.domain.providers import Registry
from shared.jobs.bulk_import import MAX_IMPORT_ITEMS, import_integrations
from shared.jobs.key_rotation import key_report, rewrap_all, rotate_key
from shared.jobs.revalidation import revalidate_all


def _key_summary(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "org_slug": record.org_slug,
        "is_admin": record.is_admin,
        "label": record.label,
        "created_at": iso(record.created_at),
        "revoked_at": iso(record.revoked_at),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description="Integrations service admin")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-key", help="create an API key for an organization")
    create.add_argument("--org", required=True, help="organization slug")
    create.add_argument(
        "--admin",
        action="store_true",
        help="service-wide: revalidation, key rotation and credential access for pipelines",
    )
    create.add_argument("--label", help="free text to recognise the key by")
    listing = commands.add_parser("list-keys", help="list API keys (never the keys themselves)")
    listing.add_argument("--org", help="only this organization")
    revoke = commands.add_parser("revoke-key", help="revoke an API key by id")
    revoke.add_argument("key_id")
    webhook = commands.add_parser("set-webhook", help="send an org's alerts to a URL (prints the signing secret once)")
    webhook.add_argument("--org", required=True)
    webhook.add_argument("--url", required=True)
    unhook = commands.add_parser("remove-webhook", help="stop sending an org's alerts")
    unhook.add_argument("--org", required=True)
    alerts = commands.add_parser("list-alerts", help="an org's recent alerts and their delivery")
    alerts.add_argument("--org", required=True)
    revalidate = commands.add_parser("revalidate", help="revalidate every integration now (what the scheduler runs)")
    revalidate.add_argument("--max-seconds", type=float, help="time box for this run")
    importing = commands.add_parser("import", help="connect many providers of an org from a JSON or CSV file")
    importing.add_argument("--org", required=True)
    importing.add_argument("--file", required=True, type=Path, help="items.json or items.csv")
    importing.add_argument("--validate", action="store_true", help="check each new credential with its provider")
    importing.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    commands.add_parser("key-status", help="primary key version and how many credentials sit on each version")
    commands.add_parser("rotate-key", help="create a new key version and make it primary")
    rewrap = commands.add_parser("rewrap", help="re-encrypt credentials onto the primary key version")
    rewrap.add_argument("--batch-size", type=int, help="credentials per batch (one read + one write each)")
    rewrap.add_argument("--max-seconds", type=float, help="time box for this run (run again to continue)")
    commands.add_parser("rotate-keyring", help="same as rotate-key")
    commands.add_parser("bootstrap", help="create the dataset and tables (idempotent)")
    return parser


def run(argv: list[str]) -> dict[str, Any]:
    arguments = _parser().parse_args(argv)
    settings = Settings.from_env()
    service = build_service(settings)
    store = service.adapters.store
    if arguments.command == "create-key":
        record, api_key = service.create_api_key(arguments.org, is_admin=arguments.admin, label=arguments.label)
        return {"org_slug": record.org_slug, "api_key": api_key, "key_id": record.key_id, "is_admin": record.is_admin}
    if arguments.command == "list-keys":
        return {"keys": [_key_summary(record) for record in store.list_api_keys(arguments.org)]}
    if arguments.command == "revoke-key":
        if not store.revoke_api_key(arguments.key_id):
            raise ConfigurationError(f"no active key with id {arguments.key_id}")
        return {"revoked": arguments.key_id}
    if arguments.command == "set-webhook":
        webhook, signing_secret = service.set_webhook(arguments.org, arguments.url)
        return {"org_slug": webhook.org_slug, "url": webhook.url, "signing_secret": signing_secret}
    if arguments.command == "remove-webhook":
        return {"removed": store.delete_webhook(arguments.org)}
    if arguments.command == "list-alerts":
        return {"alerts": [alert.to_info() for alert in store.list_alerts(arguments.org)]}
    if arguments.command == "revalidate":
        caller = Caller(key_id="cli", org_slug="*", is_admin=True, request_id=f"cli-{new_id()}")
        return revalidate_all(service, caller, max_seconds=arguments.max_seconds)
    operator = Caller(key_id="cli", org_slug="*", is_admin=True, request_id=f"cli-{new_id()}")
    if arguments.command == "import":
        check_org_slug(arguments.org)  # as create-key does, before the file is even read
        items = read_items(arguments.file, service.registry)
        caller = Caller(key_id="cli", org_slug=arguments.org, is_admin=True, request_id=f"cli-{new_id()}")
        return import_file(service, caller, items, validate=arguments.validate, dry_run=arguments.dry_run)
    if arguments.command == "key-status":
        return key_report(service)
    if arguments.command in ("rotate-key", "rotate-keyring"):
        return rotate_key(service, operator)
    if arguments.command == "rewrap":
        return {
            "summary": rewrap_all(
                service, operator, batch_size=arguments.batch_size, max_seconds=arguments.max_seconds
            ),
            "keys": key_report(service),
        }
    if arguments.command == "bootstrap":
        bootstrap = getattr(store, "bootstrap", None)
        return {"bootstrapped": bootstrap() if bootstrap else "sqlite tables are created on open"}
    raise AssertionError(arguments.command)


# Far above any real import (10,000 items of a few KiB each), far below what would hurt to read.
MAX_IMPORT_FILE_BYTES = 64 * 1024 * 1024


def read_items(path: Path, registry: Registry) -> list[Any]:
    """Import items from a JSON file or a CSV file (see the module docstring).

    A file that cannot be read, is too large, is not UTF-8 or is malformed is
    a ``ConfigurationError`` saying so in one line (exit code 2), never a
    traceback; like the service, it never quotes the file's content.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_IMPORT_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_IMPORT_FILE_BYTES:
        raise ConfigurationError(f"{path} is larger than {MAX_IMPORT_FILE_BYTES:,} bytes: split it")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    if path.suffix.lower() == ".csv":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"{path} is not valid UTF-8 (at byte {exc.start})") from None
        return _csv_items(path, text, registry)
    try:
        document = loads_bounded(raw, what=str(path))
    except BadRequest as error:
        raise ConfigurationError(f"{error.message}: expected JSON, or a file named .csv") from None
    found = document.get("items") if isinstance(document, dict) else document
    if not isinstance(found, list):
        raise ConfigurationError(f'{path} must hold a list of items or {{"items": [...]}}')
    return found


def _csv_items(path: Path, text: str, registry: Registry) -> list[Any]:
    items: list[Any] = []
    reader = csv.DictReader(text.splitlines())
    try:
        for row in reader:
            provider = (row.get("provider") or "").strip()
            spec = registry.get(provider)
            field = spec.credential_field if spec else "api_key"
            item: dict[str, Any] = {"provider": provider, "credentials": {field: (row.get("credential") or "")}}
            config = {k.removeprefix("config."): v for k, v in row.items() if k and k.startswith("config.") and v}
            if config:
                item["config"] = config
            if row.get("expires_at"):
                item["expires_at"] = row["expires_at"].strip()
            items.append(item)
    except csv.Error as exc:
        # csv's own words ("field larger than field limit (131072)", ...) quote no content.
        raise ConfigurationError(f"{path} is not a readable CSV file (line {reader.line_num}): {exc}") from None
    return items


class ProgressBar:
    """``stage [#####.....] done/total`` redrawn in place on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO, total: int, width: int = 30) -> None:
        self.stream, self.total, self.width = stream, total, width
        self.enabled = stream.isatty()
        self.offset = 0  # items of the calls before this one
        self.chunk = 0  # items of this call

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        # Each stage (checked, encrypted, validated) sweeps over this call's share of the file.
        overall = self.offset + done * self.chunk // max(total, 1)
        filled = self.width * min(overall, self.total) // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{stage:<10} [{bar}] {min(overall, self.total)}/{self.total}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def import_file(service: Any, caller: Caller, items: list[Any], *, validate: bool, dry_run: bool) -> dict[str, Any]:
    if not items:
        raise BadRequest("the file has no items")
    bar = ProgressBar(sys.stderr, len(items))
    results: list[dict[str, Any]] = []
    summary: dict[str, int] = {}
    try:
        for start in range(0, len(items), MAX_IMPORT_ITEMS):
            chunk = items[start : start + MAX_IMPORT_ITEMS]
            bar.offset, bar.chunk = start, len(chunk)
            report = import_integrations(
                service, caller, chunk, validate=validate, dry_run=dry_run, on_progress=bar.update
            )
            for result in report["results"]:
                results.append({**result, "index": result["index"] + start})
            for name, count in report["summary"].items():
                summary[name] = summary.get(name, 0) + count
    finally:
        bar.close()
    return {"results": results, "summary": summary, "dry_run": dry_run, "validated": validate}


EXIT_OK = 0
EXIT_NOTHING_REACHED = 1
EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `cmd | head` leaves behind for any Unix tool


def _nothing_reached(result: dict[str, Any]) -> str | None:
    """Why a revalidation summary must not pass for a success: every check failed to connect.

    (Only revalidate's summary has ``provider_checks``; other commands' output never matches.)
    """
    checks = result.get("provider_checks", 0)
    if not checks or result.get("unreachable") != checks:
        return None
    targets = ", ".join(f"{provider} at {url}" for provider, url in result.get("sent_to", {}).items())
    return (
        f"every check failed to connect ({checks} of {checks}); requests went to {targets}. "
        "Unreachable providers keep their status for now; to use the local simulator, "
        "set PROVIDER_<ID>_BASE_URL (`. .data/demo.env` while `make demo` runs)"
    )


def main(argv: list[str] | None = None) -> int:
    try:
        result = run(sys.argv[1:] if argv is None else argv)
        print(json.dumps(result, indent=2), flush=True)
    except (ConfigurationError, ServiceError) as error:
        print(json.dumps({"error": str(error)}), file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader (`| head`) has gone: stop quietly, and keep the interpreter's
        # final flush from raising the same error again on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    problem = _nothing_reached(result)
    if problem:
        print(json.dumps({"error": problem}), file=sys.stderr)
        return EXIT_NOTHING_REACHED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
