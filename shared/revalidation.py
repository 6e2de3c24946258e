"""Scheduled revalidation of every integration, with expiry and status alerts.

One run:

1. reads every non-disabled integration not checked within the minimum
   interval, with its credential, in one store call;
2. marks those past ``expires_at`` as ``expired`` without calling anyone;
3. validates the rest on a bounded worker pool that never has more than
   ``per_provider`` requests in flight to one provider, so one org's many
   keys cannot trip a provider's rate limit, and stops starting new checks
   when the time box is spent (the rest stay due for the next run);
4. folds each result into the lifecycle: a ``config`` failure flips to
   ``error`` at once, a transient one only after N consecutive runs;
5. writes all rows, audit records and alerts in one store call (alerts are
   deduplicated there, so each fires once), then delivers the new alerts to
   the orgs' webhooks and records the outcome (one call each).

So a run costs a constant number of store jobs whatever the number of
integrations, and one decrypt per integration checked.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.alerts import deliver_alerts, status_alert
from shared.errors import EncryptionFailed
from shared.models import Alert, AuditEvent, Integration, Status, StoredCredential, iso, utc_now
from shared.service import apply_validation, expired_result
from shared.validators import Failure, FailureClass, ValidationResult, validate_credential

if TYPE_CHECKING:
    from shared.service import Caller, IntegrationService

logger = logging.getLogger("integrations.revalidation")

Pair = tuple[Integration, StoredCredential]


@dataclass
class RevalidationSummary:
    checked: int = 0
    active: int = 0
    error: int = 0
    expired: int = 0
    # Of the checks sent to a provider: how many failed for a passing reason (429, 5xx, network;
    # the status holds until REVALIDATION_FAILURES_BEFORE_ERROR runs in a row), and how many of
    # those got no answer at all. A summary must not look green when nothing was reached.
    provider_checks: int = 0
    transient_failures: int = 0
    unreachable: int = 0
    sent_to: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    written: int = 0
    alerts: int = 0
    alerts_delivered: int = 0
    more: bool = False
    duration_seconds: float = 0.0
    store_jobs: int = 0
    # Where the time went (wall seconds per phase; decrypt/provider are summed over workers),
    # so a slow run says whether the store, our CPU, KMS or the providers were the cause.
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "phase_seconds": dict(self.phase_seconds)}


def run_bounded(
    pairs: list[Pair],
    work: Callable[[Pair], ValidationResult],
    *,
    concurrency: int,
    per_provider: int,
    deadline: float,
) -> tuple[list[tuple[Pair, ValidationResult]], int]:
    """Run ``work`` over ``pairs`` with both caps; returns (results, how many were not started)."""
    queues: dict[str, deque[Pair]] = defaultdict(deque)
    for queued in pairs:
        queues[queued[0].provider].append(queued)
    in_flight: Counter[str] = Counter()
    condition = threading.Condition()
    results: list[tuple[Pair, ValidationResult]] = []
    providers = itertools.cycle(sorted(queues))

    def finished(provider: str, pair: Pair, future: Future[ValidationResult]) -> None:
        with condition:
            in_flight[provider] -= 1
            error = future.exception()
            if error is None:
                results.append((pair, future.result()))
            else:
                # One integration's surprise must not end the run; it stays due for the next one.
                logger.error("revalidation check failed", extra={"error": error.__class__.__name__})
            condition.notify_all()

    def next_pair() -> Pair | None:
        """A pair whose provider has room (round robin), or None if none has room now."""
        for _ in range(len(queues)):
            provider = next(providers)
            if queues[provider] and in_flight[provider] < per_provider:
                in_flight[provider] += 1
                return queues[provider].popleft()
        return None

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="revalidate") as pool:
        while any(queues.values()) and time.monotonic() < deadline:
            with condition:
                pair: Pair | None = None
                while pair is None and time.monotonic() < deadline:
                    if sum(in_flight.values()) < concurrency:
                        pair = next_pair()
                    if pair is None:
                        condition.wait(timeout=0.05)
            if pair is None:
                break
            future = pool.submit(work, pair)
            future.add_done_callback(functools.partial(finished, pair[0].provider, pair))
    not_started = sum(len(queue) for queue in queues.values())
    return results, not_started


def _expiry_alert(integration: Integration, display_name: str, now: datetime, windows: tuple[int, ...]) -> Alert | None:
    """One alert per window (e.g. 30, 7, 1 days) as expiry approaches; each fires once."""
    if integration.expires_at is None or integration.status == Status.EXPIRED:
        return None
    remaining = integration.expires_at - now
    reached = [days for days in windows if remaining <= timedelta(days=days)]
    if not reached:
        return None
    window = min(reached)
    if integration.expiry_alert_window is not None and integration.expiry_alert_window <= window:
        return None
    integration.expiry_alert_window = window
    return Alert(
        dedupe_key=f"{integration.integration_id}:expiring:{window}d:{iso(integration.expires_at)}",
        org_slug=integration.org_slug,
        provider=integration.provider,
        integration_id=integration.integration_id,
        kind="expiring",
        message=(
            f"{display_name} credential expires at {iso(integration.expires_at)} "
            f"(within {window} day{'s' if window != 1 else ''}); rotate it before then"
        ),
        created_at=now,
    )


def revalidate_all(service: IntegrationService, caller: Caller, *, max_seconds: float | None = None) -> dict[str, Any]:
    settings = service.adapters.settings
    store = service.adapters.store
    started = time.monotonic()
    jobs_before = store.counters["jobs"]
    budget = (
        settings.revalidation_max_seconds
        if max_seconds is None
        else min(max_seconds, settings.revalidation_max_seconds)
    )
    deadline = started + budget
    run_at = utc_now()
    summary = RevalidationSummary()

    phases: defaultdict[str, float] = defaultdict(float)
    phases_lock = threading.Lock()
    due = store.list_integrations_for_revalidation(
        checked_before=run_at - timedelta(seconds=settings.revalidation_min_interval_seconds),
        limit=settings.revalidation_batch_limit,
    )
    past_expiry = [pair for pair in due if pair[0].expires_at is not None and pair[0].expires_at <= run_at]
    expired_ids = {pair[0].integration_id for pair in past_expiry}
    # A provider dropped from the registry cannot be checked; its rows wait, counted as skipped.
    retired = [pair for pair in due if service.registry.get(pair[0].provider) is None]
    retired_ids = {pair[0].integration_id for pair in retired}
    past_expiry = [pair for pair in past_expiry if pair[0].integration_id not in retired_ids]
    skipped_ids = expired_ids | retired_ids
    to_check = [pair for pair in due if pair[0].integration_id not in skipped_ids]
    phases["read"] = time.monotonic() - started

    def check(pair: Pair) -> ValidationResult:
        integration, credential = pair
        spec = service.provider(integration.provider)
        if spec.credential_type == "oauth":
            from shared.oauth.refresh import oauth_validation

            # Refreshes first (once, whatever else is refreshing it), then checks the new access token.
            return oauth_validation(service, integration, credential)
        decrypt_started = time.perf_counter()
        try:
            secret = service.decrypt_credential(integration, credential)
        except EncryptionFailed:
            # Our KMS, not the provider: keep the last answer, try again next run.
            return ValidationResult(
                ok=False,
                details={"connection": False, "permissions": False, "message": "Credential encryption failed"},
                message="Credential encryption failed",
                failure=Failure.UNREACHABLE,
                failure_class=FailureClass.TRANSIENT,
            )
        provider_started = time.perf_counter()
        result = validate_credential(spec, secret, integration.config, service.adapters.validation_context(spec))
        finished = time.perf_counter()
        with phases_lock:
            phases["decrypt_total"] += provider_started - decrypt_started
            phases["provider_total"] += finished - provider_started
        return result

    check_started = time.monotonic()
    checked, not_started = run_bounded(
        to_check,
        check,
        concurrency=settings.revalidation_concurrency,
        per_provider=settings.revalidation_per_provider,
        deadline=deadline,
    )
    phases["check"] = time.monotonic() - check_started
    fold_started = time.monotonic()
    outcomes = [
        (pair, expired_result(service.provider(pair[0].provider), pair[0].expires_at or run_at)) for pair in past_expiry
    ]
    outcomes += checked
    for _, result in checked:
        summary.provider_checks += 1
        summary.transient_failures += not result.ok and result.failure_class != FailureClass.CONFIG
        summary.unreachable += not result.ok and result.failure == Failure.UNREACHABLE
    summary.sent_to = {
        provider: service.adapters.validation_context(service.provider(provider)).base_url
        for provider in sorted({integration.provider for (integration, _), _ in checked})
    }

    now = utc_now()
    results: list[tuple[Integration, AuditEvent, datetime]] = []
    alerts: list[Alert] = []
    for (integration, credential), result in outcomes:
        spec = service.provider(integration.provider)
        before, read_version = integration.status, integration.updated_at
        apply_validation(integration, result, now, transient_tolerance=settings.revalidation_failures_before_error - 1)
        for alert in (
            status_alert(before, integration, spec.display_name, now),
            _expiry_alert(integration, spec.display_name, now, settings.expiry_alert_days),
        ):
            if alert is not None:
                alerts.append(alert)
        audit = caller.audit(
            integration.org_slug,
            integration.provider,
            "revalidate",
            "success" if result.ok else "failure",
            fingerprint=credential.fingerprint,
            detail=result.message,
        )
        results.append((integration, audit, read_version))
        summary.checked += 1
        if integration.status in (Status.ACTIVE, Status.ERROR, Status.EXPIRED):
            setattr(summary, str(integration.status), getattr(summary, str(integration.status)) + 1)

    write_started = time.monotonic()
    phases["fold"] = write_started - fold_started
    written, inserted = store.save_revalidation_results(results, alerts)
    phases["write"] = time.monotonic() - write_started
    summary.written = written
    summary.skipped = len(to_check) - len(checked) + len(retired) + (len(results) - written)
    inserted_ids = set(inserted)
    new_alerts = [alert for alert in alerts if alert.alert_id in inserted_ids]
    summary.alerts = len(new_alerts)
    if new_alerts:
        deliver_alerts(service.adapters, new_alerts)
        phases["deliver"] = time.monotonic() - write_started - phases["write"]
        summary.alerts_delivered = sum(alert.delivery_status == "delivered" for alert in new_alerts)
    summary.more = not_started > 0 or len(due) >= settings.revalidation_batch_limit
    summary.duration_seconds = round(time.monotonic() - started, 3)
    summary.phase_seconds = {name: round(seconds, 3) for name, seconds in phases.items()}
    summary.store_jobs = store.counters["jobs"] - jobs_before
    logger.info("revalidation run", extra=summary.as_dict())
    return summary.as_dict()
