"""Store port: integrations, encrypted credentials, audit log, org API keys, alerts and webhooks,
OAuth flows, SaaS toggles, external IDs.

The service sees only ``IntegrationStore``, the sum of one protocol per aggregate
(``shared.store.ports``). Adapters, each one module per aggregate over one base of
shared SQL helpers:

- ``shared.store.sqlite.SqliteStore`` — embedded default;
- ``shared.store.bigquery.BigQueryStore`` — production.

Records travel as rows through ``shared.store.rows``, the same for both.

Rules every adapter keeps (the contract suite in ``tests/contract`` checks them):

- every mutating call is atomic: integration, credential and the audit row
  passed with it are written together or not at all;
- at most one integration per (org_slug, provider), whatever the concurrency:
  ``create_integration`` returns False when one already exists;
- conditional writes (``expected_updated_at``, ``expected_credential_id``)
  return False instead of overwriting a row someone else changed or deleted;
  ``updated_at`` is the row version: every write of an integration sets it;
- ``counters["jobs"]`` counts round trips to the backing store (BigQuery
  jobs), so tests can assert the per-operation budget exactly;
  ``counters["appends"]`` counts audit rows streamed in by ``append_audit``.
- a pending API-key check (``pending_key_check``, set by the service for a
  signed key it has not confirmed against the store yet) rides on the first
  job run in its context: that job reads and writes only if the key is on
  file with that hash, organization and role and not revoked, and otherwise
  changes nothing, returns nothing and raises ``Unauthenticated``. So a
  request pays no round trip for authentication alone
  (docs/design/api-key-auth.md).
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from shared.store.key_check import KeyCheck, key_check_to_carry, pending_key_check
from shared.store.ports import (
    AlertStore,
    ApiKeyStore,
    AuditStore,
    ExternalIdStore,
    FleetStore,
    IntegrationsStore,
    OAuthStore,
    SubscriptionStore,
)

__all__ = ["IntegrationStore", "KeyCheck", "key_check_to_carry", "pending_key_check"]


class IntegrationStore(
    IntegrationsStore,
    FleetStore,
    AuditStore,
    ApiKeyStore,
    AlertStore,
    OAuthStore,
    SubscriptionStore,
    ExternalIdStore,
    Protocol,
):
    """The whole store, as the service sees it: every aggregate's operations, and the job counters."""

    counters: Counter[str]
