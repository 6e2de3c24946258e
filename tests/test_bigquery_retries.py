"""BigQuery transaction conflicts are retried with backoff.

The emulator never races (docs/emulators.md), so the errors BigQuery raises under
concurrent DML are raised at the client boundary, in front of the store's real
REST runner talking to the emulator: a ``GoogleApiError`` is what the runner
raises for BigQuery's error answer (status, reason, message).
"""

from __future__ import annotations

import uuid
from typing import cast

import pytest

from shared.domain.errors import StoreUnavailable
from shared.egress.google_rest import GoogleApiError
from shared.store.bigquery import BigQueryStore
from shared.store.bigquery.jobs import BigQueryJobs
from tests.contract.test_store_contract import audit, make


class ConflictingJobs:
    """The real runner, but the first ``conflicts`` jobs fail like a lost transaction race."""

    def __init__(self, jobs, conflicts: int, error: Exception) -> None:
        self._jobs = jobs
        self.project = jobs.project
        self.remaining = conflicts
        self.error = error

    def query(self, *args, **kwargs):
        if self.remaining > 0:
            self.remaining -= 1
            raise self.error
        return self._jobs.query(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._jobs, name)


# BigQuery's answers to a lost race, as its REST API words them.
ABORTED = GoogleApiError(
    400,
    "invalidQuery",
    "Transaction is aborted due to concurrent update against table integrations-test:organizations.org_integrations",
)
SERIALIZE = GoogleApiError(
    400, "invalidQuery", "Could not serialize access to table org_integrations due to concurrent update"
)


def _store(gcp_stack, conflicts, error, max_attempts=6):
    dataset = f"retry_{uuid.uuid4().hex[:10]}"
    BigQueryStore(gcp_stack.bigquery.jobs(), dataset).bootstrap()  # tables first, without injected faults
    jobs = ConflictingJobs(gcp_stack.bigquery.jobs(), conflicts, error)
    # The real runner behind a stand-in that fails first: it answers every call BigQueryJobs does.
    return BigQueryStore(cast("BigQueryJobs", jobs), dataset, max_attempts=max_attempts, backoff_base_seconds=0.01)


@pytest.mark.parametrize("error", [ABORTED, SERIALIZE, GoogleApiError(503, "backendError", "Backend error")])
def test_conflicts_are_retried_until_the_job_succeeds(gcp_stack, error):
    store = _store(gcp_stack, conflicts=2, error=error)
    integration, credential = make()
    assert store.create_integration(integration, credential, audit()) is True
    assert store.counters["jobs"] == 3
    assert store.get_integration("acme", "openai") == integration


def test_persistent_conflict_becomes_store_unavailable(gcp_stack):
    store = _store(gcp_stack, conflicts=10, error=ABORTED, max_attempts=3)
    integration, credential = make()
    with pytest.raises(StoreUnavailable):
        store.create_integration(integration, credential, audit())
    assert store.counters["jobs"] == 3


def test_other_errors_are_not_retried(gcp_stack):
    syntax_error = GoogleApiError(400, "invalidQuery", "Syntax error: Unexpected keyword")
    store = _store(gcp_stack, conflicts=1, error=syntax_error)
    with pytest.raises(StoreUnavailable):
        store.list_integrations("acme")
    assert store.counters["jobs"] == 1
