"""SQLite adapter of the store port: the embedded default.

``SqliteStore`` is the sum of one mixin per aggregate of the port
(``integrations``, ``fleet``, ``audit``, ``api_keys``, ``alerts``, ``oauth``,
``subscriptions``, ``external_ids``) over ``base.SqliteBase``: the connection
pool, the transactions, the schema and the SQL helpers, in one place (its
docstring says how concurrent writers are served).
"""

from __future__ import annotations

from shared.store.sqlite.alerts import SqliteAlerts
from shared.store.sqlite.api_keys import SqliteApiKeys
from shared.store.sqlite.audit import SqliteAudit
from shared.store.sqlite.external_ids import SqliteExternalIds
from shared.store.sqlite.fleet import SqliteFleet
from shared.store.sqlite.integrations import SqliteIntegrations
from shared.store.sqlite.oauth import SqliteOAuth
from shared.store.sqlite.subscriptions import SqliteSubscriptions


class SqliteStore(
    SqliteIntegrations,
    SqliteFleet,
    SqliteAudit,
    SqliteApiKeys,
    SqliteAlerts,
    SqliteOAuth,
    SqliteSubscriptions,
    SqliteExternalIds,
):
    """The store port on one SQLite file (``path``; ``:memory:`` for a throwaway one)."""
