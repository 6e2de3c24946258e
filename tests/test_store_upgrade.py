"""A store created by the first schema (``tests/fixtures/schema_v1``) upgrades in
place to the spec's tables, on SQLite and on BigQuery, and loses nothing: every
credential still decrypts with its row's associated data."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.crypto import credential_aad
from shared.domain.caller import Caller
from shared.store.sqlite import SqliteStore
from tests.conftest import GEMINI_KEY, OPENAI_KEY, make_service

V1_SCHEMAS = Path(__file__).parent / "fixtures" / "schema_v1"
# The tables the first schema had; tables added since (SaaS toggles, external IDs) are created by the upgrade.
V1_TABLES = sorted(path.stem for path in V1_SCHEMAS.glob("*.json"))
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EXPIRES = datetime(2027, 6, 1, tzinfo=UTC)


@pytest.fixture(params=["local", "gcp"])
def backend(request):
    return request.param


def v1_schema(table: str) -> list[dict]:
    return json.loads((V1_SCHEMAS / f"{table}.json").read_text())


@dataclass
class OldRow:
    provider: str
    secret: str
    credential_type: str
    config: dict
    details: dict | None
    expires_at: datetime | None
    integration_id: str = ""
    credential_id: str = ""


OLD_ROWS = [
    OldRow("openai", OPENAI_KEY, "api_key", {"default_model": "gpt-4o"}, {"connection": True}, EXPIRES),
    OldRow("gemini", GEMINI_KEY, "api_key", {}, None, None),
    OldRow("gcp", '{"type": "service_account"}', "service_account_json", {"project_id": "acme-prod"}, None, None),
]


def old_rows(cipher) -> list[tuple[dict, dict, dict]]:
    """(integration, credential, audit) rows shaped as the first schema stored them."""
    made = []
    for row in OLD_ROWS:
        row.integration_id, row.credential_id = str(uuid.uuid4()), str(uuid.uuid4())
        sealed = cipher.encrypt(row.secret.encode(), credential_aad("acme", row.provider, row.credential_id))
        integration = {
            "integration_id": row.integration_id,
            "org_slug": "acme",
            "provider": row.provider,
            "status": "error",
            "credential_id": row.credential_id,
            "config": json.dumps(row.config),
            # v1 moved validated_at on failed validations too; last_success_at never did.
            "validated_at": CREATED + timedelta(days=2),
            "error_message": "OpenAI API key is invalid or expired",
            "validation_details": None if row.details is None else json.dumps(row.details),
            "expires_at": row.expires_at,
            "consecutive_failures": 1,
            "last_checked_at": CREATED + timedelta(days=2),
            "last_success_at": CREATED + timedelta(days=1),
            "expiry_alert_window": None,
            "created_at": CREATED,
            "updated_at": CREATED + timedelta(days=2),
        }
        credential = {
            "credential_id": row.credential_id,
            "org_slug": "acme",
            "provider": row.provider,
            "credential_type": row.credential_type,
            "encrypted_credential": sealed.ciphertext,
            "key_version": sealed.key_version,
            "fingerprint": "abcd1234",
            "created_at": CREATED,
        }
        audit = {
            "audit_id": str(uuid.uuid4()),
            "org_slug": "acme",
            "provider": row.provider,
            "action": "setup",
            "outcome": "success",
            "actor_key_id": "key-of-alice",
            "request_id": "req",
            "credential_fingerprint": "abcd1234",
            "detail": None,
            "created_at": CREATED,
        }
        made.append((integration, credential, audit))
    return made


def write_v1_sqlite(path: Path, rows: list[tuple[dict, dict, dict]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    types = {"STRING": "TEXT", "BYTES": "BLOB", "TIMESTAMP": "TEXT", "INT64": "INTEGER", "BOOL": "INTEGER"}
    connection = sqlite3.connect(path)
    for table in V1_TABLES:
        columns = ", ".join(
            f"{c['name']} {types[c['type']]}{' NOT NULL' if c.get('mode') == 'REQUIRED' else ''}"
            for c in v1_schema(table)
        )
        connection.execute(f"CREATE TABLE {table} ({columns})")
    for row_set in rows:
        for table, row in zip(("org_integrations", "org_credentials", "integration_audit_log"), row_set, strict=True):
            values = {k: v.isoformat(timespec="microseconds") if isinstance(v, datetime) else v for k, v in row.items()}
            names = ", ".join(values)
            connection.execute(
                f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in values)})",
                values,
            )
    connection.commit()
    connection.close()


def write_v1_bigquery(client, dataset: str, rows: list[tuple[dict, dict, dict]]) -> None:
    from google.cloud import bigquery

    client.create_dataset(f"{client.project}.{dataset}", exists_ok=True)
    for table in V1_TABLES:
        schema = [bigquery.SchemaField.from_api_repr(field) for field in v1_schema(table)]
        client.create_table(bigquery.Table(f"{client.project}.{dataset}.{table}", schema=schema))
    for row_set in rows:
        for table, row in zip(("org_integrations", "org_credentials", "integration_audit_log"), row_set, strict=True):
            kinds = {c["name"]: c["type"] for c in v1_schema(table)}
            parameters, values = [], []
            for name, value in row.items():
                if kinds[name] == "BYTES":
                    parameters.append(bigquery.ScalarQueryParameter(name, "STRING", base64.b64encode(value).decode()))
                    values.append(f"FROM_BASE64(@{name})")
                else:
                    parameters.append(bigquery.ScalarQueryParameter(name, kinds[name], value))
                    values.append(f"@{name}")
            client.query_and_wait(
                f"INSERT INTO `{client.project}.{dataset}.{table}` ({', '.join(row)}) VALUES ({', '.join(values)})",
                job_config=bigquery.QueryJobConfig(query_parameters=parameters),
            )


def upgraded_service(backend, settings, gcp_stack_getter):
    """A v1 store written beside the service's settings, then opened (local) or bootstrapped (gcp)."""
    service = make_service(settings)
    rows = old_rows(service.adapters.cipher)
    if backend == "local":
        write_v1_sqlite(settings.data_dir / "integrations.sqlite3", rows)
        return service, lambda: SqliteStore(settings.data_dir / "integrations.sqlite3").counters["schema_changes"]
    from shared.store.bigquery import BigQueryStore

    emulator = gcp_stack_getter().bigquery
    write_v1_bigquery(emulator.client(), settings.bigquery_dataset, rows)
    store = BigQueryStore(emulator.jobs(), settings.bigquery_dataset)
    return service, lambda: len(store.bootstrap()["schema_changes"])


@pytest.fixture
def v1_settings(settings, backend):
    if backend == "local":
        return settings
    from dataclasses import replace

    return replace(settings, bigquery_dataset=f"upgrade_{uuid.uuid4().hex[:10]}")


def test_v1_store_upgrades_in_place_and_every_credential_decrypts(backend, v1_settings, request):
    service, upgrade = upgraded_service(backend, v1_settings, lambda: request.getfixturevalue("gcp_stack"))
    assert upgrade() > 0  # renamed, converted and added columns
    assert upgrade() == 0  # and a second run changes nothing

    store = service.adapters.store
    for row in OLD_ROWS:
        integration, credential = store.get_integration_with_credential("acme", row.provider)
        aad = credential_aad("acme", row.provider, credential.credential_id)
        assert service.adapters.cipher.decrypt(credential.encrypted_value, aad).decode() == row.secret
        assert integration.config == row.config and integration.details == row.details
        assert integration.created_by == "key-of-alice" and credential.created_by == "key-of-alice"
        assert credential.expires_at == row.expires_at == integration.expires_at
        assert credential.updated_at == CREATED
        assert integration.validated_at == CREATED + timedelta(days=1)  # the last success, not the failure
        expected_type = "service_account" if row.provider == "gcp" else "api_key"
        assert credential.credential_type == expected_type
    assert {audit.actor for audit in store.list_audit("acme")} == {"key-of-alice"}
    # A table the first schema did not have (SaaS toggles) exists and is empty.
    assert store.list_subscription_toggles("acme") == ([], {"openai": "error", "gemini": "error", "gcp": "error"})


def test_upgraded_store_serves_the_spec_shapes(backend, v1_settings, request):
    service, upgrade = upgraded_service(backend, v1_settings, lambda: request.getfixturevalue("gcp_stack"))
    upgrade()
    caller = Caller(key_id="key-of-bob", org_slug="acme", is_admin=False, request_id="r", user_id="bob@acme.test")
    outcome = service.validate(caller, "openai")
    assert outcome.integration.status == "active" and outcome.result.details["permissions"] is True
    updated = service.update(caller, "openai", _change(config={"default_model": "gpt-4.1"}))
    assert updated.config == {"default_model": "gpt-4.1"}
    assert service.get(caller, "openai").config == {"default_model": "gpt-4.1"}
    assert service.adapters.store.list_audit("acme", "openai")[0].actor == "bob@acme.test"
    # A table the first schema lacked was created by the upgrade.
    assert service.adapters.store.external_id("acme", "aws", "pi-after-upgrade") == "pi-after-upgrade"


def _change(**fields):
    from shared.domain.models import SettingsChange

    return SettingsChange(**fields)
