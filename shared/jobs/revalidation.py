"""Scheduled revalidation of every integration, with expiry and status alerts.

One run works through the due integrations page by page, in constant memory:

1. a reader thread reads the non-disabled integrations not checked within the
   minimum interval, with their credentials, ``REVALIDATION_PAGE_SIZE`` at a
   time (keyset pages: never checked first, then oldest check first), one
   store job per page, at most one page ahead of the checks;
2. integrations past ``expires_at`` become ``expired`` without calling anyone;
3. the rest are checked on a bounded worker pool that never has more than
   ``per_provider`` requests in flight to one provider, fed from one page
   while the next is read, so page boundaries leave no gap; it stops starting
   checks when the time box is spent (the rest stay due for the next run);
4. each result is folded into the lifecycle: a ``config`` failure flips to
   ``error`` at once, a transient one only after N consecutive runs;
5. a writer thread writes each page once all its checks are done: rows, audit
   records and alerts in one store job (alerts deduplicated there, so each
   fires once), then delivers that page's new alerts to the orgs' webhooks and
   records the outcome (one job each).

So a run costs about two store jobs per page (N / page size reads and
writes, plus two per page with new alerts), one decrypt per integration
checked, and holds a few pages in memory whatever N. Writes go one page at a
time from one thread: one mutating statement per table at once, inside
BigQuery's 2 running + 20 queued. ``REVALIDATION_BATCH_LIMIT`` (unset by
default) caps how many integrations one run reads.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.errors import EncryptionFailed
from shared.domain.lifecycle import apply_validation, expired_result
from shared.domain.models import Alert, AuditEvent, Integration, Status, StoredCredential, iso, utc_now
from shared.domain.validation import Failure, FailureClass, ValidationResult
from shared.usecases.alerts import deliver_alerts, status_alert
from shared.validators import validate_credential

if TYPE_CHECKING:
    from shared.domain.caller import Caller
    from shared.usecases.integrations import IntegrationService

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
    # Integrations read (due ones), in how many pages of how many at most.
    read: int = 0
    pages: int = 0
    page_size: int = 0
    # True when due integrations are left for the next run (time box spent, or the batch limit reached).
    more: bool = False
    duration_seconds: float = 0.0
    store_jobs: int = 0
    # Where the time went: seconds per phase, summed over its pages (read, fold, write, deliver) or
    # workers (decrypt, provider); check is the wall time of the check loop. Phases overlap: the next
    # page is read and the last one written while checks run.
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "phase_seconds": dict(self.phase_seconds)}


def run_streaming(
    next_batch: Callable[[], list[Pair] | None],
    work: Callable[[Pair], ValidationResult],
    settled: Callable[[Pair, ValidationResult | None], None],
    *,
    concurrency: int,
    per_provider: int,
    deadline: float,
    low_water: int,
) -> list[Pair]:
    """Run ``work`` over the pairs ``next_batch`` hands out (None: no more), with both caps.

    A new batch is pulled whenever fewer than ``low_water`` pairs wait, so the
    pool stays busy across batches. ``settled(pair, result)`` is called as each
    check ends (``result`` None when ``work`` raised: one integration's
    surprise must not end the run). No check starts after ``deadline``; returns
    the pairs never started.
    """
    queues: dict[str, deque[Pair]] = defaultdict(deque)
    providers: list[str] = []  # round robin over the providers seen so far
    position = 0
    in_flight: Counter[str] = Counter()
    condition = threading.Condition()
    waiting = 0
    exhausted = False

    def finished(provider: str, pair: Pair, future: Future[ValidationResult]) -> None:
        error = future.exception()
        if error is not None:
            logger.error("revalidation check failed", extra={"error": error.__class__.__name__})
        settled(pair, None if error is not None else future.result())
        with condition:
            in_flight[provider] -= 1
            condition.notify_all()

    def next_pair() -> Pair | None:
        """A pair whose provider has room (round robin), or None if none has room now."""
        nonlocal position, waiting
        for _ in range(len(providers)):
            provider = providers[position % len(providers)]
            position += 1
            if queues[provider] and in_flight[provider] < per_provider:
                in_flight[provider] += 1
                waiting -= 1
                return queues[provider].popleft()
        return None

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="revalidate") as pool:
        while time.monotonic() < deadline:
            if not exhausted and waiting < low_water:
                batch = next_batch()  # may wait for the store; in-flight checks go on meanwhile
                with condition:
                    if batch is None:
                        exhausted = True
                    for queued in batch or ():
                        if queued[0].provider not in queues:
                            providers.append(queued[0].provider)
                        queues[queued[0].provider].append(queued)
                        waiting += 1
                continue
            with condition:
                pair: Pair | None = None
                while pair is None and time.monotonic() < deadline:
                    if sum(in_flight.values()) < concurrency:
                        pair = next_pair()
                    if pair is None:
                        if waiting < low_water and not exhausted:
                            break  # pull the next batch first
                        if waiting == 0:
                            break  # nothing left to start
                        condition.wait(timeout=0.05)
            if pair is None:
                if waiting == 0 and exhausted:
                    break
                continue
            future = pool.submit(work, pair)
            future.add_done_callback(functools.partial(finished, pair[0].provider, pair))
    return [queued for provider in providers for queued in queues[provider]]


def run_bounded(
    pairs: list[Pair],
    work: Callable[[Pair], ValidationResult],
    *,
    concurrency: int,
    per_provider: int,
    deadline: float,
) -> tuple[list[tuple[Pair, ValidationResult]], int]:
    """Run ``work`` over ``pairs`` with both caps; returns (results, how many were not started)."""
    results: list[tuple[Pair, ValidationResult]] = []
    lock = threading.Lock()
    batches = iter([pairs])

    def settled(pair: Pair, result: ValidationResult | None) -> None:
        if result is not None:
            with lock:
                results.append((pair, result))

    not_started = run_streaming(
        lambda: next(batches, None),
        work,
        settled,
        concurrency=concurrency,
        per_provider=per_provider,
        deadline=deadline,
        low_water=1,
    )
    return results, len(not_started)


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


@dataclass
class _Page:
    """One page of due integrations on its way from the store, through the checks, back to the store."""

    pairs: list[Pair]
    to_check: list[Pair] = field(default_factory=list)  # handed to the pool (then emptied)
    # (pair, result, whether a provider was asked): the checked ones and those past their expiry.
    outcomes: list[tuple[Pair, ValidationResult, bool]] = field(default_factory=list)
    skipped: int = 0  # retired provider, a check that raised, or not started before the deadline
    unsettled: int = 0  # checks handed to the pool and not finished (or given up) yet


class _Run:
    """One revalidation run: the page reader, the check pool's bookkeeping and the page writer."""

    def __init__(self, service: IntegrationService, caller: Caller, deadline: float) -> None:
        settings = service.adapters.settings
        self.service, self.caller, self.deadline = service, caller, deadline
        self.store = service.adapters.store
        self.settings = settings
        self.summary = RevalidationSummary(page_size=settings.revalidation_page_size)
        self.phases: defaultdict[str, float] = defaultdict(float)
        self.lock = threading.Lock()
        self.run_at = utc_now()
        self.checked_before = self.run_at - timedelta(seconds=settings.revalidation_min_interval_seconds)
        # One page read ahead, two finished pages waiting to be written: memory stays a few pages.
        self.read_pages: queue.Queue[_Page | None] = queue.Queue(maxsize=1)
        self.written_pages: queue.Queue[_Page | None] = queue.Queue(maxsize=2)
        self.page_of: dict[str, _Page] = {}  # integration_id -> its page, while its check runs
        self.stop = threading.Event()  # a store failure: read no further, start no more checks
        self.failure: BaseException | None = None
        self.all_read = False  # the reader saw the last due page
        self.unchecked_pages = False  # pages read ahead that the checks never reached

    # --- reading -----------------------------------------------------------------------------

    def read(self) -> None:
        """Reader thread: page after page until none is due, the batch limit or the deadline."""
        try:
            cursor: tuple[datetime | None, str] | None = None
            limit = self.settings.revalidation_batch_limit or None
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                size = self.summary.page_size
                if limit is not None:
                    size = min(size, limit - self.summary.read)
                started = time.monotonic()
                # One row past the page says whether another page is due, so a full last page is not
                # followed by a read that finds nothing (that row is read again as the next page's first).
                pairs = self.store.list_integrations_for_revalidation(
                    checked_before=self.checked_before, limit=size + 1, after=cursor
                )
                more_due = len(pairs) > size
                del pairs[size:]
                with self.lock:
                    self.phases["read"] += time.monotonic() - started
                    self.summary.read += len(pairs)
                    self.summary.pages += bool(pairs)
                if pairs:
                    last = pairs[-1][0]
                    cursor = (last.last_checked_at, last.integration_id)
                    self._put(self.read_pages, self._intake(pairs))
                if not more_due:
                    self.all_read = True  # nothing more is due
                    break
                if limit is not None and self.summary.read >= limit:
                    break
        except BaseException as error:  # noqa: BLE001 - handed to the run's thread, which raises it
            self._failed(error)
        finally:
            self._put(self.read_pages, None)

    def _intake(self, pairs: list[Pair]) -> _Page:
        """A page as read: past-expiry ones get their result now, retired providers are skipped."""
        page = _Page(pairs)
        for pair in pairs:
            integration = pair[0]
            spec = self.service.registry.get(integration.provider)
            if spec is None:
                page.skipped += 1  # a provider dropped from the registry cannot be checked; its rows wait
            elif integration.expires_at is not None and integration.expires_at <= self.run_at:
                page.outcomes.append((pair, expired_result(spec, integration.expires_at), False))
            else:
                page.to_check.append(pair)
        with self.lock:
            for pair in page.to_check:
                self.page_of[pair[0].integration_id] = page
            page.unsettled = len(page.to_check)
        return page

    def next_batch(self) -> list[Pair] | None:
        """The next page's pairs to check (None when no page will come); completes pages with nothing to check."""
        while True:
            try:
                page = self.read_pages.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() >= self.deadline or self.stop.is_set():
                    return None
                continue
            if page is None:
                return None
            to_check, page.to_check = page.to_check, []
            if not to_check:
                self._put(self.written_pages, page)  # nothing to check: expired or retired only
                continue
            return to_check

    # --- checking ----------------------------------------------------------------------------

    def check(self, pair: Pair) -> ValidationResult:
        integration, credential = pair
        service = self.service
        spec = service.provider(integration.provider)
        if spec.credential_type == "oauth":
            from shared.usecases.oauth_refresh import oauth_validation

            # Refreshes first (once, whatever else is refreshing it), then checks the new access token.
            return oauth_validation(service.adapters, spec, integration, credential)
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
        with self.lock:
            self.phases["decrypt_total"] += provider_started - decrypt_started
            self.phases["provider_total"] += finished - provider_started
        return result

    def settled(self, pair: Pair, result: ValidationResult | None) -> None:
        """A check ended (None: it raised, or never started): once a page has no check left, write it."""
        with self.lock:
            page = self.page_of.pop(pair[0].integration_id)
            if result is None:
                page.skipped += 1
            else:
                page.outcomes.append((pair, result, True))
            page.unsettled -= 1
            complete = page.unsettled == 0
        if complete:
            self._put(self.written_pages, page)

    # --- writing -----------------------------------------------------------------------------

    def write(self) -> None:
        """Writer thread: each finished page folded and written (one job), its new alerts delivered."""
        failed = False
        while (page := self.written_pages.get()) is not None:
            if failed:
                continue  # drain: after a failed write nothing more is written (the rows stay due)
            try:
                self._write(page)
            except BaseException as error:  # noqa: BLE001 - handed to the run's thread, which raises it
                failed = True
                self._failed(error)

    def _write(self, page: _Page) -> None:
        fold_started = time.monotonic()
        summary, settings = self.summary, self.settings
        now = utc_now()
        results: list[tuple[Integration, AuditEvent, datetime]] = []
        alerts: list[Alert] = []
        counts: Counter[str] = Counter()
        sent_to: set[str] = set()
        for (integration, credential), result, asked in page.outcomes:
            if asked:
                counts["provider_checks"] += 1
                counts["transient_failures"] += not result.ok and result.failure_class != FailureClass.CONFIG
                counts["unreachable"] += not result.ok and result.failure == Failure.UNREACHABLE
                sent_to.add(integration.provider)
            spec = self.service.provider(integration.provider)
            before, read_version = integration.status, integration.updated_at
            apply_validation(
                integration, result, now, transient_tolerance=settings.revalidation_failures_before_error - 1
            )
            for alert in (
                status_alert(before, integration, spec.display_name, now),
                _expiry_alert(integration, spec.display_name, now, settings.expiry_alert_days),
            ):
                if alert is not None:
                    alerts.append(alert)
            audit = self.caller.audit(
                integration.org_slug,
                integration.provider,
                "revalidate",
                "success" if result.ok else "failure",
                fingerprint=credential.fingerprint,
                detail=result.message,
            )
            results.append((integration, audit, read_version))
            counts["checked"] += 1
            if integration.status in (Status.ACTIVE, Status.ERROR, Status.EXPIRED):
                counts[str(integration.status)] += 1
        write_started = time.monotonic()
        written, inserted = self.store.save_revalidation_results(results, alerts) if results else (0, [])
        write_done = time.monotonic()
        inserted_ids = set(inserted)
        new_alerts = [alert for alert in alerts if alert.alert_id in inserted_ids]
        if new_alerts:
            deliver_alerts(self.service.adapters, new_alerts)
        with self.lock:
            self.phases["fold"] += write_started - fold_started
            self.phases["write"] += write_done - write_started
            if new_alerts:
                self.phases["deliver"] += time.monotonic() - write_done
            for name, count in counts.items():
                setattr(summary, name, getattr(summary, name) + count)
            summary.sent_to.update(
                {
                    provider: self.service.adapters.validation_context(self.service.provider(provider)).base_url
                    for provider in sent_to - set(summary.sent_to)
                }
            )
            summary.written += written
            summary.skipped += page.skipped + len(results) - written
            summary.alerts += len(new_alerts)
            summary.alerts_delivered += sum(alert.delivery_status == "delivered" for alert in new_alerts)

    # --- plumbing ----------------------------------------------------------------------------

    def _put(self, pages: queue.Queue[_Page | None], page: _Page | None) -> None:
        """Hand a page on; a full queue waits (that is the memory bound), unless the run failed."""
        while True:
            try:
                pages.put(page, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set() and pages is self.read_pages:
                    return

    def _failed(self, error: BaseException) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = error
        self.stop.set()


def revalidate_all(service: IntegrationService, caller: Caller, *, max_seconds: float | None = None) -> dict[str, Any]:
    """Revalidate every due integration, page by page, within the time box (see the module docstring)."""
    settings = service.adapters.settings
    store = service.adapters.store
    started = time.monotonic()
    jobs_before = store.counters["jobs"]
    budget = (
        settings.revalidation_max_seconds
        if max_seconds is None
        else min(max_seconds, settings.revalidation_max_seconds)
    )
    run = _Run(service, caller, started + budget)
    reader = threading.Thread(target=run.read, name="revalidate-read", daemon=True)
    writer = threading.Thread(target=run.write, name="revalidate-write", daemon=True)
    reader.start()
    writer.start()
    check_started = time.monotonic()
    try:
        not_started = run_streaming(
            run.next_batch,
            run.check,
            run.settled,
            concurrency=settings.revalidation_concurrency,
            per_provider=settings.revalidation_per_provider,
            deadline=run.deadline,
            # The next page joins the queues while this one still has work for every worker.
            low_water=4 * settings.revalidation_concurrency,
        )
        run.phases["check"] = time.monotonic() - check_started
        for pair in not_started:
            run.settled(pair, None)  # stays due for the next run
    finally:
        run.stop.set()  # read no further; a page read ahead and never checked stays due
        reader.join()
        # Pages the reader handed over but the checks never reached: nothing of theirs is written.
        while True:
            try:
                leftover = run.read_pages.get_nowait()
            except queue.Empty:
                break
            run.unchecked_pages |= leftover is not None
        run._put(run.written_pages, None)
        writer.join()
    if run.failure is not None:
        raise run.failure
    summary = run.summary
    summary.more = not run.all_read or run.unchecked_pages or bool(not_started)
    summary.duration_seconds = round(time.monotonic() - started, 3)
    summary.phase_seconds = {name: round(seconds, 3) for name, seconds in run.phases.items()}
    summary.store_jobs = store.counters["jobs"] - jobs_before
    logger.info("revalidation run", extra=summary.as_dict())
    return summary.as_dict()
