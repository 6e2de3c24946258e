"""OAuth connections over HTTP against tests/simulators/oauth.py: the authorization-code
flow with PKCE, state replay / expiry / cross-org, the org's own completion (a
consent link clicked by someone else links nothing; a completion code works once,
for its org and provider, within the TTL), consent denied, single-flight
refresh (one token-endpoint call per expiry, whatever the concurrency),
invalid_grant -> error + alert, and no token in any response, URL, log or stored byte."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from shared.domain.caller import Caller
from shared.jobs.revalidation import revalidate_all
from tests.openapi_contract import check_response

FRONTEND = "https://app.example/settings/integrations"
REDIRECT = "http://127.0.0.1:8001/api/v1/oauth/callback"


@pytest.fixture
def settings(settings, oauth_sim, monkeypatch):
    """The conftest settings, pointed at the OAuth simulator with its client ids and secrets."""
    oauth_sim.reset()
    env = oauth_sim.env()
    for name, value in env.items():
        if name.startswith("INTEGRATIONS_SECRET_"):
            monkeypatch.setenv(name, value)
    return replace(
        settings,
        provider_base_urls={
            **settings.provider_base_urls,
            "canva": env["PROVIDER_CANVA_BASE_URL"],
            "github_app": env["PROVIDER_GITHUB_APP_BASE_URL"],
        },
        oauth_endpoint_urls={
            f"{provider}.{kind}": env[f"PROVIDER_{provider.upper()}_{kind.upper()}_URL"]
            for provider in ("canva", "github_app")
            for kind in ("authorize", "token")
        },
        oauth_redirect_uri=REDIRECT,
        oauth_frontend_url=FRONTEND,
        revalidation_min_interval_seconds=0,
    )


class Browser:
    """What the user's browser and the org's frontend do: open the authorize URL, come back to the callback,
    confirm with the org's key. Records every URL and body."""

    def __init__(self, client, key: str) -> None:
        self.client = client
        self.key = key
        self.seen: list[str] = []
        self.completion_codes: list[str] = []

    def start(self, provider: str, org: str = "acme", body: dict | None = None, expected: int = 200) -> dict:
        path = f"/api/v1/integrations/{org}/{provider}/oauth/start"
        response = self.client.post(path, json=body or {}, headers={"X-API-Key": self.key})
        self.seen.append(response.get_data(as_text=True))
        check_response("POST", path, response.status_code, response.get_json())
        assert response.status_code == expected, response.get_json()
        return response.get_json()

    def consent(self, authorize_url: str) -> str:
        """The provider's consent page; returns the callback URL it redirects to (carries code and state)."""
        answer = requests.get(authorize_url, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text
        return answer.headers["Location"]

    def callback(self, callback_url: str) -> dict[str, str]:
        """Follow the redirect to our callback; returns the outcome the frontend receives."""
        parts = urlsplit(callback_url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT
        response = self.client.get(f"{parts.path}?{parts.query}")
        assert response.status_code == 302, response.get_data(as_text=True)
        location = response.headers["Location"]
        self.seen += [location, response.get_data(as_text=True)]
        assert location.startswith(FRONTEND + "?")
        outcome = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
        if "completion_code" in outcome:
            self.completion_codes.append(outcome["completion_code"])
        return outcome

    def complete(
        self, outcome: dict[str, str], *, key: str | None = None, org: str | None = None, provider: str | None = None
    ) -> tuple[int, dict]:
        """The org's frontend confirms the flow with its own key (or, in a test, with someone else's)."""
        org, provider = org or outcome["org"], provider or outcome["provider"]
        path = f"/api/v1/integrations/{org}/{provider}/oauth/complete"
        response = self.client.post(
            path, json={"completion_code": outcome["completion_code"]}, headers={"X-API-Key": key or self.key}
        )
        self.seen.append(response.get_data(as_text=True))
        check_response("POST", path, response.status_code, response.get_json())
        return response.status_code, response.get_json()

    def connect(self, provider: str, org: str = "acme") -> dict:
        """The whole flow; the completion's answer, or the callback's outcome when it failed."""
        outcome = self.callback(self.consent(self.start(provider, org)["authorize_url"]))
        if outcome["oauth"] != "authorized":
            return outcome
        status, answer = self.complete(outcome)
        assert status == 200, answer
        return answer


@pytest.fixture
def browser(client, org_key):
    return Browser(client, org_key)


def _caller(service, org="acme"):
    return Caller(key_id="pipeline", org_slug=org, is_admin=False, request_id="test")


def _all_tokens(oauth_sim) -> list[str]:
    state = oauth_sim.app.state
    return [*state.access_tokens, *state.refresh_tokens, *state.codes]


def _assert_no_token_in(oauth_sim, haystacks: dict[str, bytes], secrets: Sequence[str] = ()) -> None:
    """No token or authorization code (nor any of ``secrets``, e.g. completion codes) in any haystack."""
    tokens = [*_all_tokens(oauth_sim), *secrets]
    assert tokens
    for name, haystack in haystacks.items():
        for token in tokens:
            assert token.encode() not in haystack, f"a token or code is in {name}"


def _data_dir_bytes(service) -> dict[str, bytes]:
    data_dir = Path(service.adapters.settings.data_dir)
    return {str(path): path.read_bytes() for path in data_dir.rglob("*") if path.is_file()}


# --- the flow ----------------------------------------------------------------------------------


def test_pkce_provider_connects_end_to_end(browser, client, org_key, service, oauth_sim, caplog):
    caplog.set_level(logging.DEBUG)
    store, cipher = service.adapters.store, service.adapters.cipher
    jobs, encrypts = store.counters["jobs"], cipher.counters["encrypt"]
    started = browser.start("canva")
    # start: one store job (the state, which also confirms the API key) and one encrypt (the PKCE verifier)
    assert store.counters["jobs"] - jobs == 1 and cipher.counters["encrypt"] - encrypts == 1
    query = parse_qs(urlsplit(started["authorize_url"]).query)
    assert query["response_type"] == ["code"] and query["client_id"] == ["sim-canva-client"]
    assert query["redirect_uri"] == [REDIRECT] and query["scope"] == ["profile:read"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"] == [started["state"]] and started["code_challenge_method"] == "S256"

    callback_url = browser.consent(started["authorize_url"])
    jobs, encrypts, decrypts = store.counters["jobs"], cipher.counters["encrypt"], cipher.counters["decrypt"]
    outcome = browser.callback(callback_url)
    # callback: consume the state, hold the tokens (encrypted against the flow); decrypt the PKCE verifier
    assert store.counters["jobs"] - jobs == 2
    assert (cipher.counters["encrypt"] - encrypts, cipher.counters["decrypt"] - decrypts) == (1, 1)
    assert outcome.keys() == {"oauth", "org", "provider", "completion_code"}
    assert (outcome["oauth"], outcome["org"], outcome["provider"]) == ("authorized", "acme", "canva")
    assert _stored(service) == []  # nothing is connected until the org confirms

    jobs, encrypts, decrypts = store.counters["jobs"], cipher.counters["encrypt"], cipher.counters["decrypt"]
    status, connected = browser.complete(outcome)
    # completion: complete the flow, read the integration, write it with the credential and audit row
    assert status == 200 and store.counters["jobs"] - jobs == 3
    assert (cipher.counters["encrypt"] - encrypts, cipher.counters["decrypt"] - decrypts) == (1, 1)
    assert (connected["oauth"], connected["status"], connected["provider"]) == ("connected", "active", "canva")
    assert connected["integration"]["org_slug"] == "acme"
    got = client.get("/api/v1/integrations/acme/canva", headers={"X-API-Key": org_key}).get_json()
    assert got["integration"]["status"] == "active" and got["integration"]["details"]["connection"] is True
    integration, credential = service.adapters.store.get_integration_with_credential("acme", "canva")
    assert credential.credential_type == "oauth" and integration.expires_at is None
    assert 14300 < (credential.expires_at - credential.created_at).total_seconds() <= 14400
    assert oauth_sim.stats()["token_calls"]["canva"] == {"authorization_code": 1, "refresh_token": 0}

    validated = client.post("/api/v1/integrations/acme/canva/validate", headers={"X-API-Key": org_key})
    assert validated.get_json()["status"] == "active"
    assert oauth_sim.refresh_calls("canva") == 0  # a fresh token is used as is

    audit = [(a.action, a.outcome) for a in service.adapters.store.list_audit("acme", "canva")]
    assert audit == [("validate", "success"), ("oauth_connect", "success")]
    _assert_no_token_in(
        oauth_sim,
        {
            "responses and URLs": "\n".join(browser.seen).encode() + validated.get_data(),
            "logs": caplog.text.encode(),
            **_data_dir_bytes(service),
        },
    )
    # The completion code travels to the frontend, never into logs or the store (only its hash).
    _assert_no_token_in(
        oauth_sim, {"logs": caplog.text.encode(), **_data_dir_bytes(service)}, secrets=browser.completion_codes
    )


def test_rotating_provider_connects_and_revalidation_keeps_it_alive(browser, service, oauth_sim, caplog):
    caplog.set_level(logging.DEBUG)
    oauth_sim.configure(access_token_seconds=1)  # tokens die fast, so revalidation must refresh
    assert browser.connect("github_app")["status"] == "active"
    integration, first = service.adapters.store.get_integration_with_credential("acme", "github_app")
    assert integration.expires_at is not None  # the refresh token's six months: then only a new consent helps
    assert (integration.expires_at - integration.created_at).days > 150

    admin = Caller(key_id="scheduler", org_slug="*", is_admin=True, request_id="revalidate")
    for round_number in (1, 2, 3):
        time.sleep(1.05)  # the access token has expired
        summary = revalidate_all(service, admin)
        assert summary["active"] == 1 and summary["error"] == 0, summary
        assert oauth_sim.refresh_calls("github_app") == round_number  # one refresh per expiry
    _, last = service.adapters.store.get_integration_with_credential("acme", "github_app")
    assert last.credential_id == first.credential_id and last.fingerprint != first.fingerprint
    # Each refresh spent the previous refresh token: only the newest one is left unused.
    unused = [t for t in oauth_sim.app.state.refresh_tokens.values() if not t.used]
    assert len(unused) == 1
    _assert_no_token_in(
        oauth_sim,
        {"responses": "\n".join(browser.seen).encode(), "logs": caplog.text.encode(), **_data_dir_bytes(service)},
    )


def test_callback_without_frontend_url_answers_json(browser, service, oauth_sim):
    service.adapters.settings = replace(service.adapters.settings, oauth_frontend_url=None)
    callback = urlsplit(browser.consent(browser.start("canva")["authorize_url"]))
    response = browser.client.get(f"{callback.path}?{callback.query}")
    body = response.get_json()
    check_response("GET", callback.path, response.status_code, body)
    assert response.status_code == 200 and body["oauth"] == "authorized" and body["org_slug"] == "acme"
    assert "/api/v1/integrations/acme/canva/oauth/complete" in body["message"] and body["completion_expires_at"]
    assert _stored(service) == []
    replay = browser.client.get(f"{callback.path}?{callback.query}")
    check_response("GET", callback.path, replay.status_code, replay.get_json())
    assert replay.status_code == 400 and replay.get_json()["code"] == "oauth_flow_rejected"
    status, connected = browser.complete({**body, "org": "acme"})
    assert status == 200 and connected["oauth"] == "connected" and connected["status"] == "active"


# --- completion: only the org that started the flow, once, in time -----------------------------------


def _stored(service, org="acme"):
    return service.adapters.store.list_integrations(org)


def test_a_consent_link_clicked_by_someone_else_links_nothing_without_the_org(
    browser, client, service, oauth_sim, other_org_key
):
    """acme sends its consent link to a globex user, who consents and lands on the callback in their browser.
    The completion code is in that browser only; globex's frontend, completing with globex's key, stores nothing."""
    outcome = browser.callback(browser.consent(browser.start("canva")["authorize_url"]))
    assert outcome["oauth"] == "authorized"
    for org, key, expected in (
        ("globex", other_org_key, 400),  # the victim's own org: the code is not globex's flow
        ("acme", other_org_key, 403),  # globex's key on acme's path
    ):
        status, answer = browser.complete(outcome, key=key, org=org)
        assert status == expected and answer["success"] is False, answer
    unknown = browser.complete(outcome, key=other_org_key, org="globex")[1]
    assert unknown["code"] == "oauth_flow_rejected" and unknown["error"] == (
        "Unknown Canva completion code; start the connection again"  # the same words as a made-up code
    )
    anonymous = client.post(
        "/api/v1/integrations/acme/canva/oauth/complete", json={"completion_code": outcome["completion_code"]}
    )
    assert anonymous.status_code == 401
    assert _stored(service, "acme") == [] and _stored(service, "globex") == []
    assert service.adapters.store.list_audit("acme") == service.adapters.store.list_audit("globex") == []
    # The org's own frontend confirms: stored once.
    status, connected = browser.complete(outcome)
    assert status == 200 and connected["status"] == "active"
    stored = service.adapters.store.get_integration_with_credential("acme", "canva")
    status, again = browser.complete(outcome)
    assert status == 400 and "already used" in again["error"]
    assert service.adapters.store.get_integration_with_credential("acme", "canva") == stored
    assert [a.action for a in service.adapters.store.list_audit("acme", "canva")] == ["oauth_connect"]


def test_a_completion_after_the_ttl_or_for_another_provider_stores_nothing(browser, service, oauth_sim):
    outcome = browser.callback(browser.consent(browser.start("canva")["authorize_url"]))
    status, answer = browser.complete(outcome, provider="github_app")
    assert status == 400 and answer["error"].startswith("Unknown GitHub App completion code")
    service.adapters.settings = replace(service.adapters.settings, oauth_state_ttl_seconds=0.3)
    late = browser.callback(browser.consent(browser.start("github_app")["authorize_url"]))
    time.sleep(0.35)
    status, answer = browser.complete(late)
    assert status == 400 and "expired" in answer["error"]
    assert _stored(service) == []
    status, _ = browser.complete(outcome)  # the canva code is still good (its own TTL is 10 minutes)
    assert status == 200 and [i.provider for i in _stored(service)] == ["canva"]


@pytest.mark.parametrize("code", ["", "short", "x" * 43 + "!", 42, None, "a" * 44])
def test_a_malformed_completion_code_is_a_400(browser, code):
    status, answer = browser.complete({"org": "acme", "provider": "canva", "completion_code": code})
    assert status == 400 and answer["code"] == "bad_request"


# --- rejected callbacks store nothing ------------------------------------------------------------


def test_replayed_state_is_refused_and_stores_nothing_more(browser, service, oauth_sim):
    callback = browser.consent(browser.start("canva")["authorize_url"])
    first = browser.callback(callback)
    assert browser.complete(first)[0] == 200
    before = service.adapters.store.get_integration_with_credential("acme", "canva")
    replay = browser.callback(callback)
    assert replay["oauth"] == "failed" and replay["code"] == "oauth_flow_rejected"
    assert "already used" in replay["message"]
    assert service.adapters.store.get_integration_with_credential("acme", "canva") == before
    assert oauth_sim.stats()["token_calls"]["canva"]["authorization_code"] == 1  # the replay never reached it


def test_expired_state_is_refused(browser, service, oauth_sim):
    service.adapters.settings = replace(service.adapters.settings, oauth_state_ttl_seconds=0.2)
    callback = browser.consent(browser.start("github_app")["authorize_url"])
    time.sleep(0.3)
    outcome = browser.callback(callback)
    assert outcome["oauth"] == "failed" and "expired" in outcome["message"]
    assert outcome["org"] == "acme" and outcome["provider"] == "github_app"
    assert _stored(service) == [] and oauth_sim.stats()["token_calls"]["github_app"]["authorization_code"] == 0


def test_unknown_or_missing_state_is_refused(browser, service):
    for query in ("code=abc&state=" + "x" * 43, "code=abc", "state=short"):
        response = browser.client.get("/api/v1/oauth/callback?" + query)
        outcome = parse_qs(urlsplit(response.headers["Location"]).query)
        assert outcome["oauth"] == ["failed"] and outcome["code"] == ["oauth_flow_rejected"], query
    assert _stored(service) == []


def test_code_of_another_orgs_flow_is_refused_and_stores_nothing(browser, client, service, oauth_sim, other_org_key):
    acme_callback = browser.consent(browser.start("canva")["authorize_url"])
    globex = Browser(client, other_org_key)
    globex_callback = globex.consent(globex.start("canva", org="globex")["authorize_url"])
    acme_code = parse_qs(urlsplit(acme_callback).query)["code"][0]
    globex_state = parse_qs(urlsplit(globex_callback).query)["state"][0]
    # acme's code delivered with globex's state: globex's PKCE verifier does not match acme's challenge.
    outcome = globex.callback(f"{REDIRECT}?code={acme_code}&state={globex_state}")
    assert outcome["oauth"] == "failed" and outcome["org"] == "globex"
    assert "refused the authorization code" in outcome["message"]
    assert _stored(service, "acme") == [] and _stored(service, "globex") == []


def test_consent_denied_stores_nothing(browser, service, oauth_sim):
    oauth_sim.configure(consent="deny")
    outcome = browser.connect("canva")
    assert outcome["oauth"] == "failed" and "denied" in outcome["message"]
    assert _stored(service) == [] and oauth_sim.stats()["token_calls"]["canva"]["authorization_code"] == 0


def test_start_refuses_what_it_cannot_do(browser, client, org_key, service, monkeypatch):
    assert browser.start("openai", expected=400)["error"].startswith("OpenAI does not connect through OAuth")
    # A toggle-only tool has no connection at all: it is refused as setup refuses it, not sent to setup.
    toggle = browser.start("chatgpt_plus", expected=400)
    assert toggle["code"] == "provider_not_connectable" and "subscription toggle" in toggle["error"]
    completed = client.post(
        "/api/v1/integrations/acme/railway/oauth/complete",
        json={"completion_code": "x" * 43},
        headers={"X-API-Key": org_key},
    )
    assert completed.status_code == 400 and completed.get_json()["code"] == "provider_not_connectable"
    assert browser.start("nope", expected=404)["code"] == "unknown_provider"
    assert "Unknown config field" in browser.start("canva", body={"config": {"x": "1"}}, expected=400)["error"]
    monkeypatch.delenv("INTEGRATIONS_SECRET_OAUTH_CANVA_CLIENT_SECRET")
    assert browser.start("canva", expected=503)["code"] == "oauth_not_configured"
    pasted = client.post(
        "/api/v1/integrations/acme/canva/setup",
        json={"credentials": {"oauth_token": "sim_at_pasted"}},
        headers={"X-API-Key": org_key},
    )
    assert pasted.status_code == 400 and "oauth/start" in pasted.get_json()["error"]
    assert client.post("/api/v1/integrations/acme/canva/oauth/start").status_code == 401


def test_reauthorizing_replaces_the_credential(browser, service, oauth_sim):
    browser.connect("canva")
    integration, first = service.adapters.store.get_integration_with_credential("acme", "canva")
    assert browser.connect("canva")["status"] == "active"
    again, second = service.adapters.store.get_integration_with_credential("acme", "canva")
    assert again.integration_id == integration.integration_id and second.credential_id != first.credential_id
    actions = [a.action for a in service.adapters.store.list_audit("acme", "canva")]
    assert actions == ["oauth_reauthorize", "oauth_connect"]


# --- refresh -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["canva", "github_app"])
def test_twenty_concurrent_refreshes_make_one_token_call(browser, service, oauth_sim, provider):
    oauth_sim.configure(access_token_seconds=60)  # inside the 10-minute refresh window
    browser.connect(provider)
    oauth_sim.configure(access_token_seconds=None, token_delay_seconds=0.3)  # a slow token endpoint widens the race
    cipher, store = service.adapters.cipher, service.adapters.store
    encrypts_before, jobs_before = cipher.counters["encrypt"], store.counters["jobs"]
    barrier = threading.Barrier(20)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def use() -> None:
        barrier.wait()
        try:
            tokens.append(service.oauth_access_token(_caller(service), provider))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=use) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and len(tokens) == 20
    assert oauth_sim.refresh_calls(provider) == 1
    assert len(set(tokens)) == 1  # every caller ends with the winner's token
    assert cipher.counters["encrypt"] - encrypts_before == 1  # one new credential version written
    # 20 initial reads + one claim (the rest lose theirs) + one write + the losers' re-reads while they wait
    print(f"\n{provider}: 20 concurrent uses took {store.counters['jobs'] - jobs_before} store jobs")
    api = {"canva": "/canva/rest/v1/users/me", "github_app": "/github_app/user"}[provider]
    assert requests.get(oauth_sim.url + api, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=5).ok
    _, credential = service.adapters.store.get_integration_with_credential("acme", provider)
    assert credential.refresh_lease_id is None and credential.refresh_error is None


def test_a_token_endpoint_slower_than_the_lease_makes_one_refresh_and_the_integration_stays_active(
    browser, service, oauth_sim
):
    """The winner's token request has a total deadline inside its lease, so no second caller
    takes the lease over while it runs and spends the same rotating refresh token."""
    oauth_sim.configure(access_token_seconds=60)  # inside the refresh window, and still valid
    browser.connect("github_app")  # rotating: a second use of a refresh token revokes its whole family
    lease = 2.0
    service.adapters.settings = replace(service.adapters.settings, oauth_refresh_lease_seconds=lease)
    # The answer is decided (the refresh token spent) at once, then takes ~15 s to arrive: longer than the lease,
    # and every read gets a byte, so a per-read timeout never fires.
    oauth_sim.configure(access_token_seconds=None, token_drip_seconds=0.05)
    barrier = threading.Barrier(8)
    took: list[float] = []
    tokens: list[str] = []
    errors: list[BaseException] = []

    def use() -> None:
        barrier.wait()
        started = time.monotonic()
        try:
            tokens.append(service.oauth_access_token(_caller(service), "github_app"))
            took.append(time.monotonic() - started)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    print(f"\n8 uses with a token endpoint slower than the {lease:g} s lease: slowest {max(took):.2f} s")
    assert errors == [] and len(tokens) == 8
    assert oauth_sim.refresh_calls("github_app") == 1  # the winner's; nobody took its lease over
    assert max(took) < lease + 1.0
    assert len(set(tokens)) == 1  # the current access token, still valid, for everyone
    _, credential = service.adapters.store.get_integration_with_credential("acme", "github_app")
    assert credential.refresh_lease_id is None and credential.refresh_error == "transient"  # not invalid_grant

    outcome = service.validate(_caller(service), "github_app")  # one more refresh try, cut short the same way
    assert outcome.integration.status == "active" and outcome.result.ok
    assert oauth_sim.refresh_calls("github_app") == 2


def test_a_slow_drip_token_endpoint_cannot_stretch_an_oauth_validation_past_its_deadline(browser, service, oauth_sim):
    """The refresh a validation starts with is part of the validation: it ends by VALIDATION_DEADLINE_SECONDS
    too, not only by the token request's own timeout, and the checks after it get only what is left."""
    oauth_sim.configure(access_token_seconds=1)
    browser.connect("canva")
    time.sleep(1.1)  # the access token has expired: validating must refresh first
    deadline = 2.0
    service.adapters.settings = replace(
        service.adapters.settings, validation_deadline_seconds=deadline, request_timeout_seconds=5.0
    )
    oauth_sim.configure(access_token_seconds=None, token_drip_seconds=0.5)
    started = time.monotonic()
    outcome = service.validate(_caller(service), "canva")
    elapsed = time.monotonic() - started
    print(f"\nOAuth validation against a slow-drip token endpoint: {elapsed:.2f} s (deadline {deadline:g} s)")
    assert elapsed < deadline + 1.0
    assert outcome.result.ok is False and outcome.result.message == "Unable to connect to Canva"
    assert oauth_sim.refresh_calls("canva") == 1


def test_invalid_grant_moves_to_error_with_reauthorize_and_alerts(browser, client, org_key, service, oauth_sim):
    oauth_sim.configure(access_token_seconds=60)
    browser.connect("github_app")
    oauth_sim.revoke("github_app")  # the user uninstalled the app: every refresh token is dead
    first = client.post("/api/v1/integrations/acme/github_app/validate", headers={"X-API-Key": org_key}).get_json()
    assert first["status"] == "error" and "re-authorize" in first["error"]
    assert "/api/v1/integrations/acme/github_app/oauth/start" in first["error"]
    alerts = service.adapters.store.list_alerts("acme")
    assert [(a.kind, a.provider) for a in alerts] == [("error", "github_app")] and "re-authorize" in alerts[0].message
    # Later uses fail fast: the dead refresh token is not sent again.
    second = client.post("/api/v1/integrations/acme/github_app/validate", headers={"X-API-Key": org_key}).get_json()
    assert second["status"] == "error" and oauth_sim.refresh_calls("github_app") == 1
    assert len(service.adapters.store.list_alerts("acme")) == 1  # still the one alert
    # A new consent brings it back.
    oauth_sim.configure(access_token_seconds=None)
    assert browser.connect("github_app")["status"] == "active"
    _, credential = service.adapters.store.get_integration_with_credential("acme", "github_app")
    assert credential.refresh_error is None


def test_transient_token_endpoint_failure_does_not_break_the_integration(browser, service, oauth_sim):
    oauth_sim.configure(access_token_seconds=1)
    browser.connect("canva")
    time.sleep(1.05)
    oauth_sim.configure(token_status=503)
    admin = Caller(key_id="scheduler", org_slug="*", is_admin=True, request_id="revalidate")
    summary = revalidate_all(service, admin)
    assert summary["active"] == 1 and summary["error"] == 0 and summary["alerts"] == 0
    integration, credential = service.adapters.store.get_integration_with_credential("acme", "canva")
    assert (
        integration.status == "active" and integration.details["last_transient_failure"] == "Unable to connect to Canva"
    )
    assert credential.refresh_error == "transient" and credential.refresh_lease_id is None
    oauth_sim.configure(token_status=None, access_token_seconds=None)
    assert revalidate_all(service, admin)["active"] == 1  # the next run refreshes
    assert oauth_sim.refresh_calls("canva") == 2


def test_a_near_expiry_token_is_still_used_while_the_token_endpoint_is_down(browser, service, oauth_sim):
    oauth_sim.configure(access_token_seconds=120)
    browser.connect("canva")
    oauth_sim.configure(token_status=503)
    token = service.oauth_access_token(_caller(service), "canva")
    assert token in oauth_sim.app.state.access_tokens and oauth_sim.refresh_calls("canva") == 1


@pytest.mark.parametrize("backend", ["gcp"])
def test_flow_replay_and_single_flight_refresh_on_bigquery(
    browser, service, oauth_sim, gcp_stack, settings, other_org_key
):
    """The same flow on BigQuery (emulator), KMS and Secret Manager stand-ins: client secrets from Secret Manager."""
    for name, value in oauth_sim.env().items():
        if name.startswith("INTEGRATIONS_SECRET_OAUTH_"):
            secret_id = name.removeprefix("INTEGRATIONS_SECRET_").lower().replace("_", "-")
            secret_id = secret_id.replace("github-app", "github_app")
            gcp_stack.secret_manager.put_secret(settings.gcp_project, secret_id, value)
            os.environ.pop(name, None)  # so only Secret Manager can have answered
    oauth_sim.configure(access_token_seconds=60)
    callback = browser.consent(browser.start("github_app")["authorize_url"])
    outcome = browser.callback(callback)
    assert browser.callback(callback)["oauth"] == "failed"  # replay
    assert browser.complete(outcome, key=other_org_key, org="globex")[0] == 400  # another org's key
    assert browser.complete(outcome)[1]["status"] == "active"
    assert browser.complete(outcome)[0] == 400  # completed once
    oauth_sim.configure(access_token_seconds=None, token_delay_seconds=0.5)
    barrier = threading.Barrier(20)
    tokens: list[str] = []

    def use() -> None:
        barrier.wait()
        tokens.append(service.oauth_access_token(_caller(service), "github_app"))

    threads = [threading.Thread(target=use) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(tokens) == 20 and len(set(tokens)) == 1
    assert oauth_sim.refresh_calls("github_app") == 1


def test_readme_walkthrough_against_a_real_server_leaks_nothing(tmp_path, oauth_sim, simulator):
    """`make run` as a process, driven like the README: connect, expire, revalidate; then grep everything."""
    from tests.test_e2e_server import RunningServer, _create_key, _free_port

    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "INTEGRATIONS_DATA_DIR": str(tmp_path / "data"),
        "OAUTH_FRONTEND_URL": FRONTEND,
        "REVALIDATION_MIN_INTERVAL_MINUTES": "0",
        **oauth_sim.env(),
    }
    env.pop("INTEGRATIONS_SECRET_API_KEY_PEPPER", None)
    server = RunningServer(env, tmp_path / "server.log")
    server.start()
    transcript: list[str] = []
    try:
        key = _create_key(env, "--org", "acme")
        admin = _create_key(env, "--org", "ops", "--admin")
        oauth_sim.configure(access_token_seconds=1)
        started = requests.post(
            f"{server.url}/api/v1/integrations/acme/canva/oauth/start", headers={"X-API-Key": key}, timeout=10
        )
        transcript.append(started.text)
        consent = requests.get(started.json()["authorize_url"], allow_redirects=False, timeout=10)
        callback = consent.headers["Location"]
        assert callback.startswith(f"http://127.0.0.1:{port}/api/v1/oauth/callback?")  # the default redirect URI
        landed = requests.get(callback, allow_redirects=False, timeout=30)
        transcript += [landed.headers["Location"], landed.text]
        outcome = parse_qs(urlsplit(landed.headers["Location"]).query)
        assert outcome["oauth"] == ["authorized"]
        completed = requests.post(
            f"{server.url}/api/v1/integrations/acme/canva/oauth/complete",
            json={"completion_code": outcome["completion_code"][0]},
            headers={"X-API-Key": key},
            timeout=30,
        )
        transcript.append(completed.text)
        assert completed.json()["status"] == "active"
        time.sleep(1.05)  # the access token has expired
        oauth_sim.configure(access_token_seconds=None)
        run = requests.post(f"{server.url}/api/v1/admin/revalidate", headers={"X-API-Key": admin}, json={}, timeout=60)
        transcript.append(run.text)
        assert run.json()["summary"]["active"] == 1 and oauth_sim.refresh_calls("canva") == 1
        got = requests.get(f"{server.url}/api/v1/integrations/acme/canva", headers={"X-API-Key": key}, timeout=10)
        transcript.append(got.text)
        assert got.json()["integration"]["status"] == "active"
    finally:
        server.stop()
    stored = {str(p): p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    log = server.log_path.read_bytes()
    assert b"/api/v1/oauth/callback" in log  # the request was logged, without its query
    _assert_no_token_in(oauth_sim, {"responses": "\n".join(transcript).encode(), "server log": log, **stored})


def test_a_lease_left_by_a_dead_worker_is_taken_over_once(browser, service, oauth_sim):
    oauth_sim.configure(access_token_seconds=60)
    browser.connect("github_app")
    oauth_sim.configure(access_token_seconds=None)
    store = service.adapters.store
    _, credential = store.get_integration_with_credential("acme", "github_app")
    past = credential.updated_at - timedelta(minutes=1)
    # A worker claimed the refresh and died before calling the token endpoint: its lease has lapsed.
    assert store.claim_credential_refresh(
        credential.credential_id,
        expected_updated_at=credential.updated_at,
        lease_id="dead-worker",
        lease_expires_at=past,
        version=credential.updated_at + timedelta(microseconds=1),
    )
    token = service.oauth_access_token(_caller(service), "github_app")
    assert oauth_sim.refresh_calls("github_app") == 1
    assert requests.get(oauth_sim.url + "/github_app/user", headers={"Authorization": f"Bearer {token}"}, timeout=5).ok
    _, after = store.get_integration_with_credential("acme", "github_app")
    assert after.refresh_lease_id is None
