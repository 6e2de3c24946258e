"""Live check of a Google Cloud service account against what the billing
pipeline needs.

1. token: google-auth signs a JWT with the uploaded key and exchanges it at
   Google's token endpoint (``GCP_TOKEN_URI``, set for tests only), never at
   the key's own ``token_uri``, and without following redirects: the signed
   JWT goes to a host the operator chose and nowhere else;
2. ``list_datasets`` of ``project_id`` (the key works, the project is visible);
3. ``read_billing_export``: ``billing_dataset_id`` in ``billing_project_id or
   project_id`` holds a ``gcp_billing_export_v1_*`` (standard) or
   ``gcp_billing_export_resource_v1_*`` (detailed) table; reports which and
   how old its newest data is;
4. ``run_queries``: a dry-run query that selects from the export table proves
   ``bigquery.jobs.create`` and read access to the table itself (free).

Plain REST calls through the service's HTTP client and retry policy
(``shared.validators.retry``), so the base URL can point at the BigQuery
emulator in tests; google-auth's token exchange goes through the same client
(``GoogleAuthTransport``), bounded by the validation's deadline.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shared.common.retries import attempt
from shared.domain.providers import ProviderSpec
from shared.domain.validation import CheckResult, Failure, FailureClass, ValidationResult
from shared.validators.context import MintedToken, ValidationContext
from shared.validators.retry import CHECKS, RETRYABLE_STATUS, Attempted, check_policy, request_with_retries
from shared.validators.summary import summarize

SCOPES = ("https://www.googleapis.com/auth/bigquery",)
EXPORT_TABLE = re.compile(r"^gcp_billing_export_(resource_)?v1_[A-Za-z0-9_]+$")


def mint_access_token(secret: str, scopes: Sequence[str], context: ValidationContext) -> MintedToken | CheckResult:
    """An access token of the stored service-account key, limited to ``scopes``: one JWT-bearer grant.

    The pipeline gets this, never the private key. The failure (a refused or
    unreachable token endpoint) comes back as the validator's own check result.
    """
    deadline = time.monotonic() + context.settings.validation_deadline_seconds
    credentials, failed = _token(json.loads(secret), context, deadline, scopes)
    if credentials is None:
        return failed or CheckResult("list_datasets", True, False, Failure.UNREACHABLE, FailureClass.TRANSIENT)
    # google-auth keeps the expiry as a naive UTC datetime.
    expiry = credentials.expiry.replace(tzinfo=UTC) if credentials.expiry else None
    return MintedToken(str(credentials.token), expiry)


def _token(
    info: dict[str, Any], context: ValidationContext, deadline: float, scopes: Sequence[str] = SCOPES
) -> tuple[Any, CheckResult | None]:
    """google-auth's refreshed credentials (``.token``, ``.expiry``), or the failed check; by ``deadline``."""
    from google.auth import exceptions as auth_exceptions
    from google.oauth2 import service_account

    from shared.egress.google_rest import GoogleAuthTransport

    try:
        credentials = service_account.Credentials.from_service_account_info(
            {**info, "token_uri": context.settings.gcp_token_uri}, scopes=list(scopes)
        )
    except (ValueError, KeyError):
        return None, CheckResult(
            "list_datasets", True, False, Failure.INVALID_KEY, FailureClass.CONFIG, reason="private key unusable"
        )
    # Never follows a redirect: one would carry the signed JWT to a host nobody checked. A 429/5xx comes
    # back as a TransportError with its status, so this policy retries it, not google-auth's own loop.
    transport = GoogleAuthTransport(
        CHECKS, timeout=context.settings.request_timeout_seconds, deadline=deadline, fault_statuses=RETRYABLE_STATUS
    )

    def refresh(_: int) -> None:
        if time.monotonic() >= deadline:
            raise auth_exceptions.TransportError("the validation's deadline passed")
        credentials.refresh(transport)

    tried = attempt(
        refresh,
        policy=check_policy(context),
        retryable=lambda _, error: isinstance(error, auth_exceptions.TransportError),
        deadline=deadline,
        retry_after=lambda _, error: getattr(error, "retry_after", None),
    )
    error = tried.error
    if isinstance(error, auth_exceptions.RefreshError):
        # google-auth puts the token endpoint's error code in the message;
        # we keep only the classification, never the text.
        if "invalid_grant" in str(error):
            return None, CheckResult(
                "list_datasets", True, False, Failure.INVALID_KEY, FailureClass.CONFIG, reason="invalid_grant"
            )
        return None, CheckResult(
            "list_datasets",
            True,
            False,
            Failure.UNREACHABLE,
            FailureClass.PROVIDER_OUTAGE,
            reason="token refresh failed",
        )
    if isinstance(error, auth_exceptions.TransportError):
        status = getattr(error, "status", None)
        if status == 429:
            return None, CheckResult(
                "list_datasets", True, False, Failure.RATE_LIMITED, FailureClass.TRANSIENT, "rate limited", 429
            )
        return None, CheckResult(
            "list_datasets",
            True,
            False,
            Failure.UNREACHABLE,
            FailureClass.PROVIDER_OUTAGE if status else FailureClass.TRANSIENT,
            reason="token refresh failed" if status else "token endpoint unreachable",
            http_status=status,
        )
    if error is not None:
        raise error
    return credentials, None


def _call(
    method: str, url: str, token: str, context: ValidationContext, deadline: float, body: Any = None
) -> Attempted:
    return request_with_retries(
        method,
        url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        data=None if body is None else json.dumps(body),
        context=context,
        deadline=deadline,
    )


def _failed(capability: str, attempted: Attempted, not_found_reason: str) -> CheckResult:
    response = attempted.response
    if response is None:
        return CheckResult(
            capability, True, False, Failure.UNREACHABLE, FailureClass.TRANSIENT, reason="network error or timeout"
        )
    status = response.status_code
    if status == 401:
        return CheckResult(capability, True, False, Failure.INVALID_KEY, FailureClass.CONFIG, "token rejected", status)
    if status == 403:
        return CheckResult(capability, True, False, Failure.FORBIDDEN, FailureClass.CONFIG, "access denied", status)
    if status == 404:
        return CheckResult(
            capability, True, False, Failure.MISSING_CAPABILITY, FailureClass.CONFIG, not_found_reason, status
        )
    if status == 429:
        return CheckResult(
            capability, True, False, Failure.RATE_LIMITED, FailureClass.TRANSIENT, "rate limited", status
        )
    failure_class = FailureClass.PROVIDER_OUTAGE if status >= 500 else FailureClass.CONFIG
    return CheckResult(
        capability, True, False, Failure.UNREACHABLE, failure_class, f"unexpected status {status}", status
    )


def _export_facts(
    base: str, project: str, dataset: str, table_ids: list[str], token: str, context: ValidationContext, deadline: float
) -> dict[str, Any]:
    detailed = [name for name in table_ids if name.startswith("gcp_billing_export_resource_v1_")]
    chosen = (detailed or table_ids)[0]
    facts: dict[str, Any] = {"export_table": chosen, "export_kind": "detailed" if detailed else "standard"}
    attempted = _call("GET", f"{base}/projects/{project}/datasets/{dataset}/tables/{chosen}", token, context, deadline)
    if attempted.response is not None and attempted.response.status_code == 200:
        modified = attempted.response.json().get("lastModifiedTime")
        if modified:
            age_hours = max(time.time() - int(modified) / 1000, 0) / 3600
            facts["_age_hours"] = age_hours
            facts["newest_data_age_hours"] = round(age_hours, 1)
            facts["newest_data_at"] = datetime.fromtimestamp(int(modified) / 1000, UTC).isoformat()
    return facts


def _billing_export_check(
    base: str, project: str, dataset: str, token: str, context: ValidationContext, deadline: float
) -> CheckResult:
    """The billing dataset holds a fresh standard or detailed export table."""
    url = f"{base}/projects/{project}/datasets/{dataset}/tables?maxResults=1000"
    tables = _call("GET", url, token, context, deadline)
    if tables.response is None or tables.response.status_code != 200:
        return _failed("read_billing_export", tables, f"billing dataset {project}.{dataset} not found")
    names = [t["tableReference"]["tableId"] for t in tables.response.json().get("tables", [])]
    exports = sorted(name for name in names if EXPORT_TABLE.match(name))
    facts: dict[str, Any] = {}
    if not exports:
        reason = f"dataset {project}.{dataset} holds no gcp_billing_export_v1_* table"
    else:
        facts = _export_facts(base, project, dataset, exports, token, context, deadline)
        age = facts.pop("_age_hours", None)
        if age is None or age <= context.settings.billing_export_max_age_hours:
            return CheckResult("read_billing_export", True, True, http_status=200, facts=facts)
        reason = (
            f"billing export {facts['export_table']} has no data newer than {age:.1f} h "
            f"(limit {context.settings.billing_export_max_age_hours:g} h): check the export is still enabled"
        )
    return CheckResult(
        "read_billing_export", True, False, Failure.MISSING_CAPABILITY, FailureClass.CONFIG, reason, 200, facts=facts
    )


NO_EXPIRY_YEAR = 9999


def _key_expiry(info: dict[str, Any], token: str, context: ValidationContext, deadline: float) -> datetime | None:
    """When the uploaded key stops working, if IAM says (user-managed keys can expire).

    Best effort: reading key metadata needs ``iam.serviceAccountKeys.get``,
    which a billing reader often lacks; then the expiry stays unknown and
    nothing fails.
    """
    # Quoted: the key's fields are user input and must stay one path segment each.
    email = quote(str(info.get("client_email", "")), safe="@")
    key_id = quote(str(info.get("private_key_id", "")), safe="")
    url = f"{context.settings.gcp_iam_base_url}/v1/projects/-/serviceAccounts/{email}/keys/{key_id}"
    attempted = _call("GET", url, token, context, deadline)
    if attempted.response is None or attempted.response.status_code != 200:
        return None
    try:
        valid_before = datetime.fromisoformat(attempted.response.json()["validBeforeTime"].replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None if valid_before.year >= NO_EXPIRY_YEAR else valid_before


def check_service_account(
    spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext
) -> ValidationResult:
    info = json.loads(secret)
    deadline = time.monotonic() + context.settings.validation_deadline_seconds
    credentials, failed = _token(info, context, deadline)
    if failed is not None or credentials is None:
        return summarize(spec, [failed] if failed else [])
    token = str(credentials.token)
    base = f"{context.base_url}/bigquery/v2"
    # Path segments from user input, quoted so they cannot leave their segment.
    project = quote(str(config.get("project_id") or info["project_id"]), safe="")
    billing_project = quote(str(config.get("billing_project_id") or ""), safe="") or project
    dataset = quote(str(config.get("billing_dataset_id", "")), safe="")
    checks: list[CheckResult] = []

    listed = _call("GET", f"{base}/projects/{project}/datasets?maxResults=1", token, context, deadline)
    if listed.response is not None and listed.response.status_code == 200:
        checks.append(CheckResult("list_datasets", True, True, http_status=200))
    else:
        checks.append(_failed("list_datasets", listed, f"project {project} not found"))
        return summarize(spec, checks)

    export_check = _billing_export_check(base, billing_project, dataset, token, context, deadline)
    checks.append(export_check)

    result_expiry = _key_expiry(info, token, context, deadline)

    # A dry run is free; selecting from the export table proves the account may
    # read it (bigquery.tables.getData) and run jobs, which is what the pipeline does.
    export_table = export_check.facts.get("export_table")
    # Identifiers only: project and dataset matched the registry's patterns, the table EXPORT_TABLE.
    table = f"`{billing_project}.{dataset}.{export_table}`"
    query = f"SELECT 1 FROM {table} LIMIT 1" if export_table else "SELECT 1"  # noqa: S608
    dry_run = {"configuration": {"dryRun": True, "query": {"query": query, "useLegacySql": False}}}
    job = _call("POST", f"{base}/projects/{project}/jobs", token, context, deadline, body=dry_run)
    if job.response is not None and job.response.status_code == 200:
        checks.append(CheckResult("run_queries", True, True, http_status=200))
    else:
        checks.append(_failed("run_queries", job, f"project {project} not found"))
    result = summarize(spec, checks)
    if result_expiry is not None:
        result.expires_at = result_expiry
        result.details["key_expires_at"] = result_expiry.isoformat()
    return result
