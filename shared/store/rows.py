"""Mapping between records and table rows, shared by every store adapter.

Rows are plain dicts keyed by the column names of ``configs/schemas``; JSON
columns travel as text, timestamps as aware ``datetime`` objects. Each adapter
converts only what its backend cannot hold natively (SQLite: timestamps).
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from shared.domain.models import (
    Alert,
    ApiKeyRecord,
    AuditEvent,
    Integration,
    OAuthState,
    StoredCredential,
    SubscriptionToggle,
    Webhook,
)

JSON_COLUMNS = ("config", "details")


def _fields(record: Any) -> dict[str, Any]:
    """A record's fields, shallow (``asdict`` deep-copies nested dicts, which
    dominated writing a large revalidation batch)."""
    return {item.name: getattr(record, item.name) for item in fields(record)}


def integration_to_row(integration: Integration) -> dict[str, Any]:
    row = _fields(integration)
    for column in JSON_COLUMNS:
        row[column] = None if row[column] is None else json.dumps(row[column], sort_keys=True)
    return row


def integration_from_row(row: dict[str, Any]) -> Integration:
    values = dict(row)
    values["config"] = _json_value(values.get("config")) or {}
    values["details"] = _json_value(values.get("details"))
    values["consecutive_failures"] = int(values.get("consecutive_failures") or 0)
    if values.get("expiry_alert_window") is not None:
        values["expiry_alert_window"] = int(values["expiry_alert_window"])
    return Integration(**_aware_timestamps(values))


def credential_to_row(credential: StoredCredential) -> dict[str, Any]:
    return _fields(credential)


def credential_from_row(row: dict[str, Any]) -> StoredCredential:
    values = dict(row)
    values["encrypted_value"] = bytes(values["encrypted_value"])
    return StoredCredential(**_aware_timestamps(values))


def audit_to_row(audit: AuditEvent) -> dict[str, Any]:
    return _fields(audit)


def audit_from_row(row: dict[str, Any]) -> AuditEvent:
    return AuditEvent(**_aware_timestamps(dict(row)))


def api_key_to_row(record: ApiKeyRecord) -> dict[str, Any]:
    return _fields(record)


def api_key_from_row(row: dict[str, Any]) -> ApiKeyRecord:
    values = dict(row)
    values["is_admin"] = bool(values["is_admin"])
    return ApiKeyRecord(**_aware_timestamps(values))


def alert_to_row(alert: Alert) -> dict[str, Any]:
    return _fields(alert)


def alert_from_row(row: dict[str, Any]) -> Alert:
    values = dict(row)
    values["delivery_attempts"] = int(values.get("delivery_attempts") or 0)
    return Alert(**_aware_timestamps(values))


def webhook_to_row(webhook: Webhook) -> dict[str, Any]:
    return _fields(webhook)


def webhook_from_row(row: dict[str, Any]) -> Webhook:
    return Webhook(**_aware_timestamps(dict(row)))


def oauth_state_to_row(state: OAuthState) -> dict[str, Any]:
    row = _fields(state)
    row["config"] = json.dumps(state.config or {}, sort_keys=True)
    return row


def oauth_state_from_row(row: dict[str, Any]) -> OAuthState:
    values = dict(row)
    values["config"] = _json_value(values.get("config")) or {}
    for name in ("encrypted_verifier", "encrypted_tokens"):
        if values.get(name) is not None:
            values[name] = bytes(values[name])
    return OAuthState(**_aware_timestamps(values))


def toggle_to_row(toggle: SubscriptionToggle) -> dict[str, Any]:
    return _fields(toggle)


def toggle_from_row(row: dict[str, Any]) -> SubscriptionToggle:
    values = dict(row)
    values["enabled"] = bool(values["enabled"])
    return SubscriptionToggle(**_aware_timestamps(values))


def _json_value(value: Any) -> Any:
    """A JSON column's value: text from SQLite and TO_JSON_STRING, or already parsed."""
    if value is None or value == "":
        return None
    return json.loads(value) if isinstance(value, str | bytes) else value


def _aware_timestamps(values: dict[str, Any]) -> dict[str, Any]:
    for key, value in values.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            values[key] = value.replace(tzinfo=UTC)
    return values
