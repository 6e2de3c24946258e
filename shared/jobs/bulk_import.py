"""Bulk import: an organization connects up to 100 providers in one call.

Every item is checked exactly like a setup, through the service's own checks
(a provider that can be connected, the credential format, config, expiry), so
an import refuses what setup refuses (a toggle-only SaaS tool, say). No error
quotes what the caller sent: results say which item (``index``) and what is
wrong in the service's words. The answer has one result per item, in order:

- ``created`` (with ``integration_id``; after ``validate`` also ``status``);
- ``exists``: the org already has this provider (or got it meanwhile);
- ``invalid``: the item is wrong (``error`` and ``code`` say why), including
  a provider named twice in one file;
- ``failed``: our side failed for this item (the credential could not be
  encrypted); nothing of it was written;
- ``would_create``: a ``dry_run`` item that a real run would create.

With ``validate``, each new item is checked as ``validate`` checks it (a past
``expires_at`` is ``expired`` without a provider call), and each one that
turns ``error`` or ``expired`` raises its alert, stored with the results.

Items are independent: a bad one does not sink the rest, and each item is
written whole (integration, credential, audit row) or not at all.

Cost, whatever the number of items: one store read (the org's integrations),
one store write (``IntegrationStore.import_integrations``: a single MERGE
script on BigQuery), plus one write of the validation results when
``validate`` is set; one encrypt per new item. Validation runs on the
revalidation pool (``shared.jobs.revalidation.run_bounded``) with its total and
per-provider caps. ``dry_run`` checks everything, reads and writes nothing
(not even an AWS item's external ID, which it only looks up) and encrypts
nothing: there is nothing to store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.crypto import credential_aad
from shared.domain.errors import BadRequest, DuplicateInImport, EncryptionFailed, InvalidCredentialFormat, ServiceError
from shared.domain.inputs import parse_timestamp
from shared.domain.lifecycle import apply_validation, expired_result
from shared.domain.models import (
    AuditEvent,
    Integration,
    Status,
    StoredCredential,
    credential_fingerprint,
    new_id,
    utc_now,
)
from shared.domain.providers import ProviderSpec
from shared.domain.validation import ValidationResult
from shared.jobs.revalidation import run_bounded
from shared.usecases.alerts import deliver_alerts, status_alert
from shared.validators import validate_credential

if TYPE_CHECKING:
    from shared.domain.caller import Caller
    from shared.usecases.integrations import IntegrationService

logger = logging.getLogger("integrations.import")

MAX_IMPORT_ITEMS = 100
ITEM_FIELDS = ("provider", "credentials", "config", "expires_at")
_ITEM_SHAPE = "provider, credentials, config?, expires_at?"

# (stage, done, total): "checked", "encrypted", "validated"
Progress = Callable[[str, int, int], None]


@dataclass
class ItemResult:
    index: int
    provider: str | None
    result: str
    integration_id: str | None = None
    status: str | None = None
    error: str | None = None
    code: str | None = None
    details: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"index": self.index, "provider": self.provider, "result": self.result}
        for name in ("integration_id", "status", "error", "code", "details"):
            value = getattr(self, name)
            if value is not None:
                answer[name] = value
        return answer


@dataclass
class _Candidate:
    """An item that passed every check: what a setup would store, secret still in memory."""

    result: ItemResult
    spec: ProviderSpec
    secret: str
    integration: Integration
    credential: StoredCredential | None = None
    audit: AuditEvent | None = None


@dataclass
class _Batch:
    results: list[ItemResult] = field(default_factory=list)
    candidates: list[_Candidate] = field(default_factory=list)
    refused: list[AuditEvent] = field(default_factory=list)


def check_items(items: Any) -> list[Any]:
    if not isinstance(items, list):
        raise BadRequest("Field 'items' must be a list of {provider, credentials, config?, expires_at?}")
    if not items:
        raise BadRequest("Field 'items' is empty: nothing to import")
    if len(items) > MAX_IMPORT_ITEMS:
        raise BadRequest(f"At most {MAX_IMPORT_ITEMS} items per import, got {len(items)}; split the file")
    return items


def import_integrations(
    service: IntegrationService,
    caller: Caller,
    items: Any,
    *,
    validate: bool = False,
    dry_run: bool = False,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    items = check_items(items)
    store = service.adapters.store
    progress = on_progress or (lambda stage, done, total: None)
    existing = {integration.provider: integration for integration in store.list_integrations(caller.org_slug)}
    batch = _check(service, caller, items, existing, dry_run=dry_run)
    progress("checked", len(items), len(items))

    if dry_run:
        for candidate in batch.candidates:
            candidate.result.result = "would_create"
        created = batch.candidates
    else:
        _encrypt_all(service, caller, batch, progress)
        entries = [
            (c.integration, c.credential, c.audit)
            for c in batch.candidates
            if c.credential is not None and c.audit is not None
        ]
        created_ids = store.import_integrations(entries, batch.refused)
        created = []
        for candidate in batch.candidates:
            if candidate.result.result == "failed":
                continue
            if candidate.integration.integration_id in created_ids:
                candidate.result.result = "created"
                candidate.result.integration_id = candidate.integration.integration_id
                candidate.result.status = str(candidate.integration.status)
                created.append(candidate)
            else:  # a concurrent setup won the org+provider between our read and write
                candidate.result.result = "exists"
                candidate.result.code = "integration_exists"
                candidate.result.error = f"Integration already exists for {candidate.spec.display_name}"
    if validate and created:
        _validate_all(service, caller, created, write=not dry_run, progress=progress)
    for candidate in batch.candidates:
        candidate.secret = ""  # drop the plaintext as soon as the batch is done with it

    summary = Counter(result.result for result in batch.results)
    # LogRecord has its own "created": the counts go under one key.
    logger.info("import", extra={"org": caller.org_slug, "items": len(items), "results": dict(summary)})
    return {
        "results": [result.as_dict() for result in batch.results],
        "summary": {name: summary.get(name, 0) for name in _SUMMARY_KEYS},
        "dry_run": dry_run,
        "validated": validate,
    }


_SUMMARY_KEYS = ("created", "exists", "invalid", "failed", "would_create")


def _check(
    service: IntegrationService, caller: Caller, items: list[Any], existing: dict[str, Integration], *, dry_run: bool
) -> _Batch:
    """Each item through setup's own checks, in order (``service.connectable_provider``, ``check_credentials``,
    ``check_config``): an import refuses what setup refuses.

    No message quotes what the caller sent (a provider name, a field name, a
    value: a secret pasted into the wrong place must not come back); the
    result's ``index`` says which item, and ``provider`` is set only once it
    names a provider of the registry.
    """
    batch = _Batch()
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        result = ItemResult(index=index, provider=None, result="invalid")
        batch.results.append(result)
        spec: ProviderSpec | None = None
        try:
            if not isinstance(item, dict):
                raise BadRequest(f"Item {index} must be an object with {_ITEM_SHAPE}")
            unknown = set(item) - set(ITEM_FIELDS)
            if unknown:
                raise BadRequest(
                    f"Item {index} has {len(unknown)} field(s) an import item does not take; allowed: {_ITEM_SHAPE}"
                )
            provider = item.get("provider")
            if not isinstance(provider, str) or not provider:
                raise BadRequest(f"Item {index}: field 'provider' is required and must be a string")
            if item.get("credentials") is None:
                raise BadRequest(f"Item {index}: missing required field(s): credentials")
            result.provider = service.provider(provider).provider_id  # a registry name, never the caller's text
            spec = service.connectable_provider(caller.org_slug, provider)
            secret = service.check_credentials(spec, item["credentials"])
            config = service.check_config(spec, item.get("config"))
            expires_at = parse_timestamp(item.get("expires_at"), "expires_at")
            if spec.provider_id in first_index:
                raise DuplicateInImport(
                    f"{spec.display_name} appears more than once in this import (first at item "
                    f"{first_index[spec.provider_id]}); an organization has one integration per provider"
                )
            # A cross-account role is stored with the org's external ID, as setup does (one store job, only
            # for such a role: at most one per import). A dry run only reads it: it writes nothing.
            secret = service.bind_external_id(caller, spec, secret, create=not dry_run)
        except ServiceError as error:
            result.error, result.code = error.message, error.code
            if spec is not None and isinstance(error, InvalidCredentialFormat):
                batch.refused.append(
                    caller.audit(caller.org_slug, spec.provider_id, "import", "rejected", detail=error.message)
                )
            continue
        first_index[spec.provider_id] = index
        if spec.provider_id in existing:
            result.result, result.code = "exists", "integration_exists"
            result.integration_id = existing[spec.provider_id].integration_id
            result.error = f"Integration already exists for {spec.display_name}"
            continue
        batch.candidates.append(
            _Candidate(
                result=result, spec=spec, secret=secret, integration=_new_integration(caller, spec, config, expires_at)
            )
        )
    return batch


def _new_integration(
    caller: Caller, spec: ProviderSpec, config: dict[str, str], expires_at: datetime | None
) -> Integration:
    now = utc_now()
    return Integration(
        integration_id=new_id(),
        org_slug=caller.org_slug,
        provider=spec.provider_id,
        status=Status.PENDING,
        credential_id=new_id(),
        config=config,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
        created_by=caller.actor,
    )


def _encrypt_all(service: IntegrationService, caller: Caller, batch: _Batch, progress: Progress) -> None:
    """One encrypt per candidate, on a pool (KMS calls are network round trips)."""
    cipher = service.adapters.cipher
    lock = threading.Lock()
    done = 0

    def encrypt(candidate: _Candidate) -> None:
        nonlocal done
        integration = candidate.integration
        fingerprint = credential_fingerprint(candidate.secret)
        try:
            sealed = cipher.encrypt(
                candidate.secret.encode(),
                credential_aad(integration.org_slug, integration.provider, integration.credential_id),
            )
        except EncryptionFailed as error:
            candidate.result.result, candidate.result.code, candidate.result.error = "failed", error.code, error.message
            audit = caller.audit(
                caller.org_slug,
                candidate.spec.provider_id,
                "import",
                "failure",
                fingerprint=fingerprint,
                detail=error.message,
            )
            with lock:
                batch.refused.append(audit)
        else:
            candidate.credential = StoredCredential(
                credential_id=integration.credential_id,
                org_slug=integration.org_slug,
                provider=integration.provider,
                credential_type=candidate.spec.credential_type,
                encrypted_value=sealed.ciphertext,
                key_version=sealed.key_version,
                fingerprint=fingerprint,
                expires_at=integration.expires_at,
                created_at=integration.created_at,
                updated_at=integration.created_at,
                created_by=caller.actor,
            )
            candidate.audit = caller.audit(
                caller.org_slug, candidate.spec.provider_id, "import", "success", fingerprint=fingerprint
            )
        with lock:
            done += 1
            progress("encrypted", done, len(batch.candidates))

    workers = max(1, min(service.adapters.settings.revalidation_concurrency, len(batch.candidates)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="import-encrypt") as pool:
        list(pool.map(encrypt, batch.candidates))


def _validate_all(
    service: IntegrationService, caller: Caller, created: list[_Candidate], *, write: bool, progress: Progress
) -> None:
    """Validate the new integrations on the revalidation pool; store every result in one write."""
    settings = service.adapters.settings
    by_id = {candidate.integration.integration_id: candidate for candidate in created}
    lock = threading.Lock()
    done = 0

    def check(pair: tuple[Integration, StoredCredential]) -> ValidationResult:
        nonlocal done
        candidate = by_id[pair[0].integration_id]
        spec = candidate.spec
        expires_at = candidate.integration.expires_at
        if expires_at is not None and expires_at <= utc_now():
            result = expired_result(spec, expires_at)  # as validate answers it, without sending it anywhere
        else:
            result = validate_credential(
                spec, candidate.secret, candidate.integration.config, service.adapters.validation_context(spec)
            )
        with lock:
            done += 1
            progress("validated", done, len(created))
        return result

    pairs = [(c.integration, c.credential or _placeholder(c.integration)) for c in created]
    deadline = time.monotonic() + settings.revalidation_max_seconds
    outcomes, _ = run_bounded(
        pairs,
        check,
        concurrency=settings.revalidation_concurrency,
        per_provider=settings.revalidation_per_provider,
        deadline=deadline,
    )
    now = utc_now()
    writes = []
    alerts = []
    for (integration, credential), result in outcomes:
        candidate = by_id[integration.integration_id]
        read_version, before = integration.updated_at, integration.status
        apply_validation(integration, result, now, transient_tolerance=0)
        # Every change to error or expired alerts the org, as an explicit validate's does.
        alert = status_alert(before, integration, candidate.spec.display_name, integration.updated_at)
        if alert is not None:
            alerts.append(alert)
        candidate.result.status = str(integration.status)
        candidate.result.details = result.details
        if not result.ok and result.message:
            candidate.result.error = result.message
        audit = caller.audit(
            caller.org_slug,
            candidate.spec.provider_id,
            "validate",
            "success" if result.ok else "failure",
            fingerprint=credential.fingerprint,
            detail=result.message,
        )
        writes.append((integration, audit, read_version))
    if write and writes:
        try:
            _, inserted = service.adapters.store.save_revalidation_results(writes, alerts)
        except ServiceError as error:
            # The integrations are stored (pending); only their first check's result is lost.
            logger.warning("import validation results not stored", extra={"error": error.code})
            for integration, _, _ in writes:
                item = by_id[integration.integration_id].result
                item.status, item.details, item.code = str(Status.PENDING), None, error.code
                item.error = "Created, but the validation result could not be stored; validate it again"
            return
        new_alerts = [alert for alert in alerts if alert.alert_id in inserted]
        if new_alerts:
            deliver_alerts(service.adapters, new_alerts)


def _placeholder(integration: Integration) -> StoredCredential:
    """A dry run stores nothing: the pool only needs the pair's shape."""
    return StoredCredential(
        credential_id=integration.credential_id,
        org_slug=integration.org_slug,
        provider=integration.provider,
        credential_type="",
        encrypted_value=b"",
        key_version="",
        fingerprint="",
    )
