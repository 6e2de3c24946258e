"""Table schemas: ``configs/schemas/*.json`` is the one source of truth.

The BigQuery bootstrap, the SQLite DDL and Terraform all read these files, so
a column added there reaches every store.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "configs" / "schemas"

INTEGRATIONS_TABLE = "org_integrations"
CREDENTIALS_TABLE = "org_credentials"
AUDIT_TABLE = "integration_audit_log"
API_KEYS_TABLE = "org_api_keys"
ALERTS_TABLE = "integration_alerts"
WEBHOOKS_TABLE = "org_webhooks"
EXTERNAL_IDS_TABLE = "org_external_ids"
OAUTH_STATES_TABLE = "oauth_states"
# The spec keeps SaaS toggles in Supabase; this service owns them in its own store.
SAAS_TOGGLES_TABLE = "saas_subscription_providers_meta"

TABLES = (
    INTEGRATIONS_TABLE,
    CREDENTIALS_TABLE,
    AUDIT_TABLE,
    API_KEYS_TABLE,
    ALERTS_TABLE,
    WEBHOOKS_TABLE,
    EXTERNAL_IDS_TABLE,
    OAUTH_STATES_TABLE,
    SAAS_TOGGLES_TABLE,
)


@cache
def table_schema(table: str) -> tuple[dict[str, Any], ...]:
    """The BigQuery JSON schema of ``table`` (list of {name, type, mode})."""
    return tuple(json.loads((SCHEMA_DIR / f"{table}.json").read_text()))


def column_names(table: str) -> list[str]:
    return [column["name"] for column in table_schema(table)]


def column_types(table: str) -> dict[str, str]:
    return {column["name"]: column["type"] for column in table_schema(table)}
