"""Live Azure service-principal validation: three free, read-only steps.

1. ``authenticate``: a client-credentials token from Entra ID for ARM, with
   ``msal`` (Microsoft's token library). msal rather than azure-identity:
   msal hands back Entra's error response as a dict, so the ``error_codes``
   array is read as data (Microsoft says not to match on text), while
   azure-identity folds it into an exception message; msal also takes our
   HTTP client, so the token call gets the same transport, retries, deadline,
   proxy and CA bundle as every other check, and it does not pull in azure-core.
2. ``list_exports``: ``GET {scope}/providers/Microsoft.CostManagement/exports
   ?$expand=runHistory`` on ARM: the role is granted at the scope.
3. ``read_cost_export``: the named export (or any) exists, its last finished
   run succeeded, and that run is recent.

Then, best effort and never failing the verdict: when the principal may read
its own application in Microsoft Graph, the end date of the secret in use
(``passwordCredentials``, matched by ``secret_id`` or by hint) becomes
``expires_at``; a certificate's own ``notAfter`` does the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.providers import ProviderSpec
from shared.domain.validation import CheckResult, Failure, FailureClass, ValidationResult
from shared.egress.http_client import HttpStatusError, TransportError
from shared.validators.context import MintedToken, ValidationContext
from shared.validators.retry import Answer, Attempted, request_with_retries
from shared.validators.summary import summarize

ARM_SCOPE = "https://management.azure.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXPORTS_API_VERSION = "2025-03-01"
SUCCEEDED_RUN = "Completed"
UNFINISHED_RUNS = frozenset({"InProgress", "Queued"})

# Entra ID token errors by code (the ``error_codes`` array), with the fix.
ENTRA_ERRORS: dict[int, str] = {
    7000215: "the client secret is wrong (AADSTS7000215): paste the secret's Value, not its Secret ID,"
    " or create a new secret under Certificates & secrets",
    7000222: "the client secret has expired (AADSTS7000222): create a new secret under Certificates & secrets"
    " and rotate it here",
    700016: "application {client_id} is not found in tenant {tenant_id} (AADSTS700016): check the Application"
    " (client) ID and that the app is registered in this tenant",
    90002: "tenant {tenant_id} is not found (AADSTS90002): check the Directory (tenant) ID",
    900023: "tenant {tenant_id} is not a valid tenant (AADSTS900023): check the Directory (tenant) ID",
    700027: "the certificate is not registered on the app (AADSTS700027): upload its public part under"
    " Certificates & secrets",
    7000112: "the application is disabled (AADSTS7000112): enable it in Enterprise applications",
}


def role_for_scope(scope: str) -> str:
    """The built-in role that reads Cost Management exports at ``scope``."""
    lowered = scope.lower()
    if "/providers/microsoft.billing/" not in lowered:
        return "Cost Management Reader"
    if "/invoicesections/" in lowered:
        return "Invoice section reader"
    if "/billingprofiles/" in lowered:
        return "Billing profile reader"
    if "/departments/" in lowered:
        return "Department reader"
    if "/enrollmentaccounts/" in lowered:
        return "Account owner (EA enrollment account)"
    account = lowered.rsplit("/", 1)[-1]
    return "Enrollment reader" if account.isdigit() else "Billing account reader"


@dataclass
class _Principal:
    tenant_id: str
    client_id: str
    client_secret: str | None
    client_certificate: str | None
    secret_id: str | None

    @classmethod
    def from_secret(cls, secret: str) -> _Principal:
        document = json.loads(secret)
        return cls(
            tenant_id=document["tenant_id"],
            client_id=document["client_id"],
            client_secret=document.get("client_secret"),
            client_certificate=document.get("client_certificate"),
            secret_id=document.get("secret_id"),
        )

    def msal_credential(self) -> str | dict[str, str]:
        if self.client_secret is not None:
            return self.client_secret
        pem = self.client_certificate or ""
        start = pem.index("-----BEGIN CERTIFICATE-----")
        end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
        # With public_certificate msal signs the assertion with the SHA-256 thumbprint (x5t#S256).
        return {"private_key": pem, "public_certificate": pem[start:end]}


class _BoundedHttp:
    """msal's HTTP client: our retries, deadline, timeout and CA bundle.

    Remembers the last response, because msal turns a failed tenant discovery
    into a bare ValueError and Entra's ``error_codes`` live in that response.
    """

    def __init__(self, context: ValidationContext, deadline: float) -> None:
        self.context = context
        self.deadline = deadline
        self.last: Answer | None = None
        self.requests = 0

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        attempted = _send(method, url, self.context, self.deadline, **kwargs)
        self.requests += attempted.attempts
        self.last = attempted.response
        if attempted.response is None:
            raise TransportError("Entra ID did not answer before the deadline")
        return attempted.response

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_: Any) -> Any:
        return self._send("POST", url, params=params, data=data, headers=headers)

    def get(self, url: str, params: Any = None, headers: Any = None, **_: Any) -> Any:
        return self._send("GET", url, params=params, headers=headers)

    def close(self) -> None:
        """Nothing to close: the pooled session is shared."""


def _send(
    method: str,
    url: str,
    context: ValidationContext,
    deadline: float,
    *,
    params: Any = None,
    data: Any = None,
    headers: Any = None,
) -> Attempted:
    return request_with_retries(
        method,
        url,
        headers=dict(headers or {}),
        params=params,
        data=data,
        context=context,
        deadline=deadline,
        verify=context.settings.azure_ca_bundle,
    )


def _error_codes(response: Answer | None) -> list[int]:
    if response is None:
        return []
    try:
        codes = response.json().get("error_codes")
    except (ValueError, AttributeError):
        return []
    return [code for code in codes if isinstance(code, int)] if isinstance(codes, list) else []


def _token_failure(capability: str, status: int | None, codes: list[int], principal: _Principal) -> CheckResult:
    """Classify a refused or failed token request: by ``error_codes`` first, then by status."""
    for code in codes:
        if code in ENTRA_ERRORS:
            reason = ENTRA_ERRORS[code].format(tenant_id=principal.tenant_id, client_id=principal.client_id)
            return CheckResult(capability, True, False, Failure.INVALID_KEY, FailureClass.CONFIG, reason, status)
    if status is None:
        return CheckResult(
            capability, True, False, Failure.UNREACHABLE, FailureClass.TRANSIENT, "Entra ID unreachable", None
        )
    if status == 429:
        return CheckResult(capability, True, False, Failure.RATE_LIMITED, FailureClass.TRANSIENT, "rate limited", 429)
    if status >= 500:
        return CheckResult(
            capability, True, False, Failure.UNREACHABLE, FailureClass.PROVIDER_OUTAGE, f"Entra ID {status}", status
        )
    listed = ", ".join(f"AADSTS{code}" for code in codes) or f"HTTP {status}"
    return CheckResult(
        capability,
        True,
        False,
        Failure.INVALID_KEY,
        FailureClass.CONFIG,
        f"Entra ID refused the token request ({listed})",
        status,
    )


def _msal_errors() -> tuple[type[Exception], ...]:
    """What a failed token exchange raises: our transport's errors (OSErrors, and the answer's
    ``raise_for_status``), msal's for an HTTP error it raised on."""
    from msal.exceptions import MsalError

    return (OSError, HttpStatusError, MsalError)


def _token(app: Any, http: _BoundedHttp, scope: str, principal: _Principal) -> tuple[str | None, CheckResult]:
    answer, check = _token_answer(app, http, [scope], principal)
    return (None if answer is None else str(answer["access_token"])), check


def _token_answer(
    app: Any, http: _BoundedHttp, scopes: Sequence[str], principal: _Principal
) -> tuple[dict[str, Any] | None, CheckResult]:
    """Entra's token answer (``access_token``, ``expires_in``) for ``scopes``, or None and why not."""
    try:
        answer = app.acquire_token_for_client(scopes=list(scopes))
    except _msal_errors():
        status = http.last.status_code if http.last is not None else None
        return None, _token_failure("authenticate", status, _error_codes(http.last), principal)
    if isinstance(answer, dict) and answer.get("access_token"):
        return answer, CheckResult("authenticate", True, True, http_status=200)
    status = http.last.status_code if http.last is not None else None
    codes = answer.get("error_codes") if isinstance(answer, dict) else None
    return None, _token_failure("authenticate", status, codes if isinstance(codes, list) else [], principal)


def mint_access_token(secret: str, scopes: Sequence[str], context: ValidationContext) -> MintedToken | CheckResult:
    """A client-credentials token of the stored service principal for ``scopes`` (ARM), never the secret itself.

    One token request (after msal's discovery of the tenant); a refusal comes
    back as the validator's ``authenticate`` check, with Entra's reason.
    """
    principal = _Principal.from_secret(secret)
    http = _BoundedHttp(context, time.monotonic() + context.settings.validation_deadline_seconds)
    app, failed = _client(principal, context, http)
    if app is None:
        return failed or CheckResult("authenticate", True, False, Failure.UNREACHABLE, FailureClass.TRANSIENT)
    answer, check = _token_answer(app, http, scopes, principal)
    if answer is None:
        return check
    expires_in = answer.get("expires_in")
    lifetime = timedelta(seconds=int(expires_in)) if isinstance(expires_in, int | float | str) else None
    return MintedToken(str(answer["access_token"]), datetime.now(UTC) + lifetime if lifetime else None)


def _client(principal: _Principal, context: ValidationContext, http: _BoundedHttp) -> tuple[Any, CheckResult | None]:
    """An msal client for the tenant; constructing it runs the tenant's OIDC discovery."""
    import msal

    try:
        app = msal.ConfidentialClientApplication(
            principal.client_id,
            client_credential=principal.msal_credential(),
            authority=f"{context.settings.azure_authority_host}/{principal.tenant_id}",
            # The authority host is ours to choose; never ask login.microsoftonline.com to vouch for it.
            instance_discovery=False,
            http_client=http,
            token_cache=msal.TokenCache(),  # per validation: a revoked secret must fail now, not after an hour
        )
    except _msal_errors():
        status = http.last.status_code if http.last is not None else None
        return None, _token_failure("authenticate", status, _error_codes(http.last), principal)
    except ValueError:
        # Tenant discovery answered 4xx (msal keeps only the text): the codes are in the response.
        status = http.last.status_code if http.last is not None else None
        return None, _token_failure("authenticate", status, _error_codes(http.last), principal)
    return app, None


def _arm_error_code(response: Answer) -> str:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
    return str(code)


def _arm_failure(attempted: Attempted, scope: str) -> CheckResult:
    response = attempted.response
    if response is None:
        return CheckResult(
            "list_exports", True, False, Failure.UNREACHABLE, FailureClass.TRANSIENT, "network error or timeout"
        )
    status, code = response.status_code, _arm_error_code(response)
    if status in (401, 403):
        reason = (
            f"ARM answered {status} {code}: grant the service principal the {role_for_scope(scope)} role on {scope}"
        )
        return CheckResult("list_exports", True, False, Failure.FORBIDDEN, FailureClass.CONFIG, reason, status)
    if status == 404:
        reason = f"scope {scope} not found ({code}): check the scope id"
        return CheckResult("list_exports", True, False, Failure.MISSING_CAPABILITY, FailureClass.CONFIG, reason, status)
    if status == 429:
        return CheckResult("list_exports", True, False, Failure.RATE_LIMITED, FailureClass.TRANSIENT, code, status)
    failure_class = FailureClass.PROVIDER_OUTAGE if status >= 500 else FailureClass.CONFIG
    return CheckResult(
        "list_exports", True, False, Failure.UNREACHABLE, failure_class, f"ARM answered {status} {code}", status
    )


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _finished_runs(export: dict[str, Any]) -> list[tuple[datetime, dict[str, Any]]]:
    """The export's finished runs, newest first, as (when, run properties)."""
    runs = ((export.get("properties") or {}).get("runHistory") or {}).get("value") or []
    finished = []
    for run in runs:
        properties = run.get("properties") or {}
        if properties.get("status") in UNFINISHED_RUNS:
            continue
        when = (
            _moment(properties.get("processingEndTime"))
            or _moment(properties.get("processingStartTime"))
            or _moment(properties.get("submittedTime"))
        )
        if when is not None:
            finished.append((when, properties))
    return sorted(finished, key=lambda pair: pair[0], reverse=True)


def _last_success(export: dict[str, Any]) -> datetime | None:
    return next((when for when, run in _finished_runs(export) if run.get("status") == SUCCEEDED_RUN), None)


def _export_check(exports: list[dict[str, Any]], scope: str, name: str | None, max_age_hours: float) -> CheckResult:
    """The named export (or the freshest one) ran last, successfully and recently."""
    names = sorted(str(export.get("name")) for export in exports)
    facts: dict[str, Any] = {"exports_found": len(exports)}
    if name:
        chosen = [export for export in exports if str(export.get("name", "")).lower() == name.lower()]
        if not chosen:
            found = f" (exports there: {', '.join(names[:10])})" if names else ""
            reason = f"no export named {name} at {scope}{found}"
            return CheckResult(
                "read_cost_export",
                True,
                False,
                Failure.MISSING_CAPABILITY,
                FailureClass.CONFIG,
                reason,
                200,
                facts=facts,
            )
        export = chosen[0]
    elif not exports:
        reason = f"no Cost Management export at {scope}"
        return CheckResult(
            "read_cost_export", True, False, Failure.MISSING_CAPABILITY, FailureClass.CONFIG, reason, 200, facts=facts
        )
    else:
        never = datetime.min.replace(tzinfo=UTC)
        export = max(exports, key=lambda item: (_last_success(item) or never, str(item.get("name"))))
    export_name = str(export.get("name"))
    facts["export_name"] = export_name
    schedule = ((export.get("properties") or {}).get("schedule") or {}).get("status")
    if schedule:
        facts["schedule_status"] = schedule
    runs = _finished_runs(export)
    if not runs:
        reason = f"export {export_name} has not finished a run yet"
        return CheckResult(
            "read_cost_export", True, False, Failure.MISSING_CAPABILITY, FailureClass.CONFIG, reason, 200, facts=facts
        )
    when, run = runs[0]
    status = str(run.get("status"))
    facts.update(last_run_status=status, last_run_at=when.isoformat())
    if status != SUCCEEDED_RUN:
        error_code = (run.get("error") or {}).get("code")
        detail = f", error {error_code}" if error_code else ""
        reason = f"the last run of export {export_name} at {when.isoformat()} ended {status}{detail}"
        return CheckResult(
            "read_cost_export", True, False, Failure.MISSING_CAPABILITY, FailureClass.CONFIG, reason, 200, facts=facts
        )
    age_hours = max((datetime.now(UTC) - when).total_seconds(), 0) / 3600
    facts["last_success_age_hours"] = round(age_hours, 1)
    if age_hours > max_age_hours:
        reason = (
            f"export {export_name} last succeeded {age_hours:.1f} h ago (limit {max_age_hours:g} h):"
            f" check its schedule (status {schedule or 'unknown'}) and the storage account it writes to"
        )
        return CheckResult(
            "read_cost_export", True, False, Failure.MISSING_CAPABILITY, FailureClass.CONFIG, reason, 200, facts=facts
        )
    return CheckResult("read_cost_export", True, True, http_status=200, facts=facts)


def _certificate_expiry(principal: _Principal) -> datetime:
    from cryptography import x509

    pem = principal.client_certificate or ""
    start = pem.index("-----BEGIN CERTIFICATE-----")
    certificate = x509.load_pem_x509_certificate(pem[start:].encode())
    return certificate.not_valid_after_utc


def _secret_expiry(
    app: Any, http: _BoundedHttp, principal: _Principal, context: ValidationContext, deadline: float
) -> tuple[datetime | None, dict[str, Any]]:
    """When the secret in use ends, from Microsoft Graph; (None, why) when Graph will not say."""
    keep = "expires_at stays as given"
    token, check = _token(app, http, GRAPH_SCOPE, principal)
    if token is None:
        return None, {"readable": False, "reason": f"no Microsoft Graph token ({check.reason}); {keep}"}
    url = f"{context.settings.azure_graph_base_url}/v1.0/applications(appId='{principal.client_id}')"
    attempted = _send(
        "GET",
        url,
        context,
        deadline,
        params={"$select": "appId,passwordCredentials"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    response = attempted.response
    if response is None:
        return None, {"readable": False, "reason": f"Microsoft Graph unreachable; {keep}"}
    if response.status_code in (401, 403):
        reason = (
            f"Microsoft Graph answered {response.status_code} {_arm_error_code(response)}: the service principal"
            " may not read its own app registration (grant it the Application.Read.All application permission"
            f" to have the expiry read); {keep}"
        )
        return None, {"readable": False, "reason": reason}
    if response.status_code != 200:
        return None, {"readable": False, "reason": f"Microsoft Graph answered {response.status_code}; {keep}"}
    credentials = response.json().get("passwordCredentials") or []
    secret = principal.client_secret or ""
    if principal.secret_id:
        matches = [c for c in credentials if str(c.get("keyId", "")).lower() == principal.secret_id]
        matched_by = "secret_id"
    else:
        # Graph keeps the first three characters of each secret as its hint.
        matches = [c for c in credentials if c.get("hint") and secret.startswith(str(c["hint"]))]
        matched_by = "hint"
    if len(matches) != 1:
        why = (
            "no secret of the app matches the one in use"
            if not matches
            else f"{len(matches)} secrets of the app share this secret's hint: set credentials.secret_id to pick one"
        )
        return None, {"readable": False, "reason": f"{why}; {keep}"}
    ends = _moment(matches[0].get("endDateTime"))
    if ends is None:
        return None, {"readable": False, "reason": f"the matching secret has no endDateTime; {keep}"}
    return ends, {
        "readable": True,
        "source": "microsoft_graph",
        "matched_by": matched_by,
        "key_id": matches[0].get("keyId"),
        "expires_at": ends.isoformat(),
    }


def _with_fix(result: ValidationResult, checks: list[CheckResult]) -> ValidationResult:
    """The spec's message, followed by what Entra or ARM said was wrong and how to fix it.

    ``summarize`` already names the refused capability and its reason for a
    permission problem; a refused token gets the Entra reason (which code, which
    fix) here.
    """
    if result.failure not in (Failure.INVALID_KEY, Failure.FORBIDDEN) or not result.message:
        return result
    check = next((c for c in checks if c.failure == result.failure and c.reason), None)
    if check is not None and check.reason and check.reason not in result.message:
        result.message = f"{result.message}: {check.reason}"
        result.details["message"] = result.message
    return result


def check_service_principal(
    spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext
) -> ValidationResult:
    principal = _Principal.from_secret(secret)
    deadline = time.monotonic() + context.settings.validation_deadline_seconds
    http = _BoundedHttp(context, deadline)
    app, failed = _client(principal, context, http)
    if app is None:
        checks = [failed] if failed else []
        return _with_fix(summarize(spec, checks), checks)
    token, authenticated = _token(app, http, ARM_SCOPE, principal)
    checks = [authenticated]
    if token is None:
        return _with_fix(summarize(spec, checks), checks)

    scope = str(config.get("scope", ""))
    attempted = _send(
        "GET",
        f"{context.base_url}{scope}/providers/Microsoft.CostManagement/exports",
        context,
        deadline,
        params={"api-version": EXPORTS_API_VERSION, "$expand": "runHistory"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    if attempted.response is None or attempted.response.status_code != 200:
        checks.append(_arm_failure(attempted, scope))
        return _with_fix(summarize(spec, checks), checks)
    checks.append(CheckResult("list_exports", True, True, http_status=200))
    exports = attempted.response.json().get("value") or []
    max_age_hours = context.settings.billing_export_max_age_hours
    checks.append(_export_check(exports, scope, config.get("export_name"), max_age_hours))

    if principal.client_certificate is not None:
        not_after = _certificate_expiry(principal)
        expires_at: datetime | None = not_after
        expiry: dict[str, Any] = {"readable": True, "source": "certificate", "expires_at": not_after.isoformat()}
    else:
        expires_at, expiry = _secret_expiry(app, http, principal, context, deadline)
    result = _with_fix(summarize(spec, checks), checks)
    result.details["secret_expiry"] = expiry
    if expires_at is not None:
        result.expires_at = expires_at
        result.details["key_expires_at"] = expires_at.isoformat()
    return result
