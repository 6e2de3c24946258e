"""Scheduled revalidation: tolerance for flapping providers, immediate config
failures, expiry windows that fire once, signed webhooks with retries, the
per-provider concurrency cap, the time box and the O(1) store budget."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.crypto import credential_aad
from shared.domain.caller import Caller
from shared.domain.models import AuditEvent, SettingsChange, StoredCredential, credential_fingerprint, new_id, utc_now
from shared.egress.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from shared.jobs.revalidation import revalidate_all
from tests.conftest import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, key_with

SCHEDULER = Caller(key_id="scheduler", org_slug="*", is_admin=True, request_id="run-1")


@pytest.fixture
def reval_settings(settings):
    return replace(
        settings,
        revalidation_min_interval_seconds=0,  # every run re-checks everything
        validation_max_attempts=1,  # one request per check: the simulator's flap pattern shows through
        webhook_insecure_hosts=("127.0.0.1",),
    )


@pytest.fixture
def service(reval_settings):
    from tests.conftest import make_service

    return make_service(reval_settings)


def caller_for(org):
    return Caller(key_id="k-" + org, org_slug=org, is_admin=False, request_id="req")


def connect(service, org, provider="openai", secret=OPENAI_KEY, validate=True, expires_at=None):
    service.setup(caller_for(org), provider, {"api_key": secret}, None, expires_at)
    if validate:
        return service.validate(caller_for(org), provider).integration
    return service.get(caller_for(org), provider)


def revalidate(service, **kwargs):
    return revalidate_all(service, SCHEDULER, **kwargs)


def point_openai_at(service, url):
    service.adapters.settings.provider_base_urls["openai"] = url


def test_healthy_integrations_stay_active_and_are_audited(service):
    connect(service, "acme")
    connect(service, "acme", "gemini", GEMINI_KEY)
    summary = revalidate(service)
    assert summary["checked"] == 2 and summary["active"] == 2 and summary["error"] == 0
    assert summary["alerts"] == 0
    assert service.adapters.store.list_audit("acme")[0].action == "revalidate"
    assert service.get(caller_for("acme"), "openai").last_checked_at is not None


def test_transient_failures_flip_to_error_only_after_n_consecutive_runs(service, simulator):
    connect(service, "acme")
    good_url = service.adapters.settings.provider_base_urls["openai"]
    point_openai_at(service, "http://127.0.0.1:9")  # refused: a network fault
    for run in (1, 2):
        revalidate(service)
        integration = service.get(caller_for("acme"), "openai")
        assert integration.status == "active" and integration.consecutive_failures == run
    revalidate(service)
    broken = service.get(caller_for("acme"), "openai")
    assert broken.status == "error" and broken.error_message == "Unable to connect to OpenAI"
    point_openai_at(service, good_url)
    revalidate(service)
    assert service.get(caller_for("acme"), "openai").status == "active"
    kinds = [alert.kind for alert in reversed(service.adapters.store.list_alerts("acme"))]
    assert kinds == ["error", "recovered"]


def test_flapping_provider_never_causes_a_false_error(service, simulator):
    # "flap" answers 503, 200, 503, 200...; Gemini needs one check, so with one
    # attempt per check every other run fails.
    connect(service, "acme", "gemini", secret=key_with("flap", GEMINI_KEY))  # 1st request: 503 -> error
    integration = service.validate(caller_for("acme"), "gemini").integration  # 2nd: 200 -> active
    assert integration.status == "active"
    # The explicit validations changed the status twice, and each change alerted.
    assert [alert.kind for alert in service.adapters.store.list_alerts("acme")] == ["recovered", "error"]
    for _ in range(8):
        revalidate(service)
        integration = service.get(caller_for("acme"), "gemini")
        assert integration.consecutive_failures <= 1
    assert integration.status == "active"
    assert len(service.adapters.store.list_alerts("acme")) == 2  # revalidation's flaps alerted nobody


def test_config_failure_flips_at_once(service):
    connect(service, "acme")
    # The key gets revoked at the provider: store a rejected key the way setup would.
    integration, old = service.adapters.store.get_integration_with_credential("acme", "openai")
    read_version = integration.updated_at
    revoked = key_with("bad")
    credential_id = new_id()
    sealed = service.adapters.cipher.encrypt(revoked.encode(), credential_aad("acme", "openai", credential_id))
    fingerprint = credential_fingerprint(revoked)
    credential = StoredCredential(
        credential_id, "acme", "openai", "api_key", sealed.ciphertext, sealed.key_version, fingerprint
    )
    integration.credential_id = credential_id
    audit = AuditEvent("acme", "openai", "rotate", "success", "test", "req")
    assert service.adapters.store.replace_credential(
        integration, credential, audit, expected_credential_id=old.credential_id, expected_updated_at=read_version
    )
    summary = revalidate(service)
    assert summary["error"] == 1
    broken = service.get(caller_for("acme"), "openai")
    assert broken.status == "error" and broken.error_message == "OpenAI API key is invalid or expired"
    assert [alert.kind for alert in service.adapters.store.list_alerts("acme")] == ["error"]


def test_disabled_integrations_are_skipped(service, simulator):
    connect(service, "acme")
    service.update(caller_for("acme"), "openai", SettingsChange(enabled=False))
    simulator.reset()
    assert revalidate(service)["checked"] == 0
    assert simulator.stats()["requests"].get("openai", 0) == 0


def test_expiry_windows_fire_once_across_runs(service, simulator):
    connect(service, "acme", expires_at=utc_now() + timedelta(days=6))
    first = revalidate(service)
    assert first["alerts"] == 1
    for _ in range(2):
        assert revalidate(service)["alerts"] == 0
    alerts = service.adapters.store.list_alerts("acme")
    assert [(a.kind, "within 7 days" in a.message) for a in alerts] == [("expiring", True)]

    # A new expiry date (rotation or update) gets its warnings anew.
    service.update(caller_for("acme"), "openai", SettingsChange(expires_at=utc_now() + timedelta(hours=12)))
    service.validate(caller_for("acme"), "openai")
    assert revalidate(service)["alerts"] == 1
    assert revalidate(service)["alerts"] == 0
    assert "within 1 day" in service.adapters.store.list_alerts("acme")[0].message

    # Past the expiry: expired without asking the provider, alerted once.
    service.update(caller_for("acme"), "openai", SettingsChange(expires_at=utc_now() - timedelta(seconds=1)))
    simulator.reset()
    summary = revalidate(service)
    assert summary["expired"] == 1 and summary["alerts"] == 1
    assert simulator.stats()["requests"].get("openai", 0) == 0
    assert service.get(caller_for("acme"), "openai").status == "expired"
    assert revalidate(service)["alerts"] == 0
    assert [a.kind for a in service.adapters.store.list_alerts("acme")][:1] == ["expired"]


class Receiver:
    """A local webhook endpoint that fails the first ``failures`` deliveries with 503."""

    def __init__(self, failures=0):
        self.failures = failures
        self.received = []
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def app(self, environ, start_response):
        request = Request(environ)
        self.received.append((dict(request.headers), request.get_data()))
        if self.failures > 0:
            self.failures -= 1
            return Response("busy", status=503)(environ, start_response)
        return Response("ok")(environ, start_response)

    def stop(self):
        self.server.shutdown()


def test_webhook_deliveries_are_signed_and_retried(service):
    receiver = Receiver(failures=2)
    try:
        _, secret = service.set_webhook("acme", receiver.url)
        connect(service, "acme", expires_at=utc_now() + timedelta(days=20))
        summary = revalidate(service)
    finally:
        receiver.stop()
    assert summary["alerts"] == 1 and summary["alerts_delivered"] == 1
    assert len(receiver.received) == 3  # 503, 503, 200
    headers, body = receiver.received[-1]
    assert verify_signature(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify_signature(secret, headers[TIMESTAMP_HEADER], body + b" ", headers[SIGNATURE_HEADER])
    assert not verify_signature("whsec_other", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    replayed_later = int(headers[TIMESTAMP_HEADER]) + 3600
    assert not verify_signature(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=replayed_later)
    payload = json.loads(body)
    assert payload["type"] == "integration.expiring" and payload["alert_id"] == headers[DELIVERY_HEADER]
    alert = service.adapters.store.list_alerts("acme")[0]
    assert (alert.delivery_status, alert.delivery_attempts) == ("delivered", 3)


def test_failing_webhook_never_fails_the_run(service):
    receiver = Receiver(failures=100)
    try:
        service.set_webhook("acme", receiver.url)
        connect(service, "acme", expires_at=utc_now() + timedelta(days=2))
        summary = revalidate(service)
    finally:
        receiver.stop()
    assert summary["checked"] == 1 and summary["alerts"] == 1 and summary["alerts_delivered"] == 0
    assert service.adapters.store.list_alerts("acme")[0].delivery_status == "failed"
    assert len(receiver.received) == service.adapters.settings.webhook_max_attempts


def test_an_explicit_validation_alerts_on_every_status_change(service, simulator):
    """Not only revalidation: a validate that turns an integration error (or back) alerts and delivers, once."""
    receiver = Receiver()
    try:
        service.set_webhook("acme", receiver.url)
        connect(service, "acme")  # pending -> active: no alert
        assert receiver.received == []
        good_url = service.adapters.settings.provider_base_urls["openai"]
        point_openai_at(service, "http://127.0.0.1:9")  # refused
        jobs = service.adapters.store.counters["jobs"]
        broken = service.validate(caller_for("acme"), "openai").integration
        # read + (write and alert: one job) + the webhook lookup + the delivery record
        assert service.adapters.store.counters["jobs"] - jobs == 4
        assert broken.status == "error" and len(receiver.received) == 1
        service.validate(caller_for("acme"), "openai")  # still error: no new alert
        assert len(receiver.received) == 1
        point_openai_at(service, good_url)
        assert service.validate(caller_for("acme"), "openai").integration.status == "active"
    finally:
        receiver.stop()
    kinds = [json.loads(body)["type"] for _, body in receiver.received]
    assert kinds == ["integration.error", "integration.recovered"]
    alerts = service.adapters.store.list_alerts("acme")
    assert [(a.kind, a.delivery_status) for a in alerts] == [("recovered", "delivered"), ("error", "delivered")]
    assert alerts[1].message == "OpenAI integration is error: Unable to connect to OpenAI"


def test_webhook_url_must_be_https(service):
    from shared.domain.errors import BadRequest

    for url in (
        "http://hooks.example/x",
        "ftp://hooks.example/x",
        "not a url",
        "https://169.254.169.254/computeMetadata/v1/",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "https://metadata.google.internal/x",
        "https://localhost/x",
    ):
        with pytest.raises(BadRequest):
            service.set_webhook("acme", url)
    assert service.set_webhook("acme", "https://hooks.example/alerts")[0].url == "https://hooks.example/alerts"


def test_per_provider_cap_holds_across_many_orgs(service, simulator):
    for index in range(12):
        for provider, secret in (("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY), ("gemini", GEMINI_KEY)):
            connect(service, f"org{index:02d}", provider, secret, validate=False)
    service.adapters.settings = replace(
        service.adapters.settings, revalidation_concurrency=8, revalidation_per_provider=2
    )
    simulator.reset()
    simulator.configure(latency_ms=60)
    summary = revalidate(service)
    assert summary["checked"] == 36 and summary["active"] == 36
    peaks = simulator.stats()["max_concurrent"]
    assert all(1 <= peaks[p] <= 2 for p in ("openai", "anthropic", "gemini")), peaks
    assert sum(peaks.values()) >= 4  # providers really ran side by side


def test_time_box_leaves_the_rest_for_the_next_run(service, simulator):
    for index in range(6):
        connect(service, f"org{index}", validate=False)
    service.adapters.settings = replace(
        service.adapters.settings,
        revalidation_concurrency=1,
        revalidation_min_interval_seconds=3600,
    )
    simulator.configure(latency_ms=200)
    first = revalidate(service, max_seconds=0.5)
    assert first["more"] is True and 1 <= first["checked"] < 6 and first["skipped"] == 6 - first["checked"]
    simulator.configure(latency_ms=0)
    second = revalidate(service)
    assert second["checked"] == 6 - first["checked"] and second["more"] is False
    assert revalidate(service)["checked"] == 0  # all checked within the minimum interval


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_store_jobs_grow_with_pages_not_with_integrations(service, backend):
    jobs: list[int] = []
    for count in (3, 12):
        for index in range(len(jobs) * 3, len(jobs) * 3 + count):
            connect(service, f"org{index:03d}", "gemini", GEMINI_KEY, validate=False)
        summary = revalidate(service)
        jobs.append(summary["store_jobs"])
    # One page read and one page write, whatever N up to a page (no alerts: no webhook jobs).
    assert jobs == [2, 2]
    assert service.adapters.cipher.counters["decrypt"] == 3 + 15


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_a_run_works_page_by_page_and_checks_each_integration_once(service, backend):
    for index in range(12):
        connect(service, f"org{index:03d}", "gemini", GEMINI_KEY, validate=False)
    service.adapters.settings = replace(service.adapters.settings, revalidation_page_size=5)
    for _ in range(2):  # the second run pages through the first run's ties (one timestamp per page write)
        summary = revalidate(service)
        assert (summary["checked"], summary["written"], summary["read"], summary["pages"]) == (12, 12, 12, 3)
        assert summary["store_jobs"] == 3 + 3 and summary["more"] is False
    audits = [a for index in range(12) for a in service.adapters.store.list_audit(f"org{index:03d}")]
    per_integration = [sum(a.action == "revalidate" for a in audits if a.org_slug == f"org{i:03d}") for i in range(12)]
    assert per_integration == [2] * 12


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_full_pages_cost_two_jobs_each_and_no_read_that_finds_nothing(service, backend):
    for index in range(10):
        connect(service, f"org{index:03d}", "gemini", GEMINI_KEY, validate=False)
    service.adapters.settings = replace(service.adapters.settings, revalidation_page_size=5)
    summary = revalidate(service)
    # Two full pages: a read and a write each, as docs/revalidation.md budgets them, not a third read.
    assert (summary["checked"], summary["pages"], summary["more"]) == (10, 2, False)
    assert summary["store_jobs"] == 2 * 2


def test_a_batch_limit_that_ends_on_the_last_due_row_says_nothing_more_is_due(service):
    for index in range(10):
        connect(service, f"org{index:03d}", "gemini", GEMINI_KEY, validate=False)
    service.adapters.settings = replace(
        service.adapters.settings, revalidation_page_size=5, revalidation_batch_limit=10
    )
    summary = revalidate(service)
    assert (summary["checked"], summary["more"], summary["store_jobs"]) == (10, False, 4)


def test_the_batch_limit_caps_a_run_and_the_next_run_goes_on(service):
    for index in range(12):
        connect(service, f"org{index:03d}", "gemini", GEMINI_KEY, validate=False)
    service.adapters.settings = replace(
        service.adapters.settings,
        revalidation_page_size=5,
        revalidation_batch_limit=7,
        revalidation_min_interval_seconds=3600,
    )
    first = revalidate(service)
    assert (first["read"], first["checked"], first["pages"], first["more"]) == (7, 7, 2, True)
    second = revalidate(service)
    assert (second["checked"], second["more"]) == (5, False)


def test_skipped_rows_stay_due_without_stalling_the_pages(service):
    """A retired provider's rows are never written, so they stay due; the keyset reads past them."""
    import sqlite3

    for index in range(9):
        connect(service, f"org{index}", validate=False)
    with sqlite3.connect(service.adapters.store.path) as connection:
        connection.execute(
            "UPDATE org_integrations SET provider = 'retired' WHERE org_slug IN ('org1', 'org4', 'org7')"
        )
    service.adapters.settings = replace(service.adapters.settings, revalidation_page_size=2)
    summary = revalidate(service)
    assert (summary["checked"], summary["skipped"], summary["read"]) == (6, 3, 9)


def test_a_run_holds_a_few_pages_of_integrations_whatever_their_number(service):
    """Memory stays flat in N: the integrations alive at any moment are a few pages' worth, not the batch.

    Counted as live Integration objects (sampled while the run goes), not as allocated bytes: the
    provider simulator serves from this process and its buffers would drown the figure.
    """
    import gc

    from shared.domain.models import Integration

    count, page_size = 400, 20
    for index in range(count):
        connect(service, f"org{index:04d}", "gemini", GEMINI_KEY, validate=False)
    service.adapters.settings = replace(
        service.adapters.settings, revalidation_page_size=page_size, revalidation_concurrency=4
    )
    gc.collect()
    live: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            live.append(sum(type(item) is Integration for item in gc.get_objects()))
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        summary = revalidate(service)
    finally:
        done.set()
        sampler.join()
    assert summary["checked"] == count and summary["pages"] == count // page_size
    assert len(live) > 5 and max(live) <= 10 * page_size < count, max(live)


def test_revalidate_endpoint_needs_an_admin_key(client, service, org_key):
    _, admin_key = service.create_api_key("ops", is_admin=True)
    path = "/api/v1/admin/revalidate"
    assert client.post(path).status_code == 401
    assert client.post(path, headers={"X-API-Key": org_key}).status_code == 403
    response = client.post(path, json={"max_seconds": 5}, headers={"X-API-Key": admin_key})
    assert response.status_code == 200 and response.get_json()["summary"]["checked"] == 0
    bad = client.post(path, json={"max_seconds": "soon"}, headers={"X-API-Key": admin_key})
    assert bad.status_code == 400


def test_platform_mode_trusts_the_schedulers_oidc_token(client, service):
    import base64

    service.adapters.settings = replace(service.adapters.settings, revalidate_auth="platform")
    claims = base64.urlsafe_b64encode(json.dumps({"email": "scheduler@p.iam.gserviceaccount.com"}).encode()).decode()
    path = "/api/v1/admin/revalidate"
    assert client.post(path).status_code == 401
    response = client.post(path, headers={"Authorization": f"Bearer e30.{claims.rstrip('=')}.sig"})
    assert response.status_code == 200, response.get_json()


def test_integration_of_a_retired_provider_is_skipped_not_fatal(service):
    import sqlite3

    connect(service, "acme")
    connect(service, "globex")
    with sqlite3.connect(service.adapters.store.path) as connection:
        connection.execute("UPDATE org_integrations SET provider = 'retired' WHERE org_slug = 'globex'")
    summary = revalidate(service)
    assert summary["checked"] == 1 and summary["active"] == 1 and summary["skipped"] == 1
