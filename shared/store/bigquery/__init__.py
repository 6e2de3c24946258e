"""BigQuery adapter of the store port: production.

``BigQueryStore`` is the sum of one mixin per aggregate of the port
(``integrations``, ``fleet``, ``audit``, ``api_keys``, ``alerts``, ``oauth``,
``subscriptions``, ``external_ids``) and ``schema`` (bootstrap and upgrade),
over ``base.BigQueryBase``: one job per call, its retries, the API-key check
that rides on it and the SQL helpers, in one place (its docstring says how).
``jobs`` speaks BigQuery's REST API.
"""

from __future__ import annotations

from shared.store.bigquery.alerts import BigQueryAlerts
from shared.store.bigquery.api_keys import BigQueryApiKeys
from shared.store.bigquery.audit import BigQueryAudit
from shared.store.bigquery.external_ids import BigQueryExternalIds
from shared.store.bigquery.fleet import BigQueryFleet
from shared.store.bigquery.integrations import BigQueryIntegrations
from shared.store.bigquery.oauth import BigQueryOAuth
from shared.store.bigquery.schema import BigQuerySchema
from shared.store.bigquery.subscriptions import BigQuerySubscriptions


class BigQueryStore(
    BigQueryIntegrations,
    BigQueryFleet,
    BigQueryAudit,
    BigQueryApiKeys,
    BigQueryAlerts,
    BigQueryOAuth,
    BigQuerySubscriptions,
    BigQueryExternalIds,
    BigQuerySchema,
):
    """The store port on one BigQuery dataset (``BigQueryStore.from_settings``, or a ``BigQueryJobs`` and a dataset)."""
