"""Admin command line: org API keys, the local keyring, the store bootstrap.

    python -m shared.cli create-key --org acme [--admin] [--label NAME]
    python -m shared.cli list-keys [--org acme]
    python -m shared.cli revoke-key KEY_ID
    python -m shared.cli set-webhook --org acme --url https://hooks.example/alerts
    python -m shared.cli remove-webhook --org acme
    python -m shared.cli list-alerts --org acme
    python -m shared.cli revalidate [--max-seconds N]
    python -m shared.cli rotate-keyring          (local mode: new primary key version)
    python -m shared.cli bootstrap               (create dataset/tables; idempotent)

Uses the same settings as the service (INTEGRATIONS_BACKEND, INTEGRATIONS_DATA_DIR,
...). Prints JSON; the API key is printed once, at creation, and never stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.config import Settings
from shared.errors import ConfigurationError, ServiceError
from shared.models import ApiKeyRecord, iso, new_id
from shared.revalidation import revalidate_all
from shared.service import Caller
from shared.wiring import build_service


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
    create.add_argument("--admin", action="store_true", help="may call revalidate (service-wide)")
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
    commands.add_parser("rotate-keyring", help="local mode: add a key version and make it primary")
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
    if arguments.command == "rotate-keyring":
        if settings.backend != "local":
            raise ConfigurationError("rotate-keyring is for the local keyring; Cloud KMS rotates on its schedule")
        from shared.crypto.local_keyring import LocalKeyring

        keyring = service.adapters.cipher
        assert isinstance(keyring, LocalKeyring)
        return {"primary_version": keyring.rotate()}
    if arguments.command == "bootstrap":
        bootstrap = getattr(store, "bootstrap", None)
        return {"bootstrapped": bootstrap() if bootstrap else "sqlite tables are created on open"}
    raise AssertionError(arguments.command)


def main(argv: list[str] | None = None) -> int:
    try:
        print(json.dumps(run(sys.argv[1:] if argv is None else argv), indent=2))
    except (ConfigurationError, ServiceError) as error:
        print(json.dumps({"error": str(error)}), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
