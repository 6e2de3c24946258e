"""Credential access for OAuth integrations (tests/simulators/oauth.py): the access token, refreshed
first when near expiry, one refresh whatever the concurrency; a refused refresh turns the integration
to error with the re-authorize message and alert, and the pipeline gets 409."""

from __future__ import annotations

import threading

import requests

from tests.openapi_contract import check_response
from tests.test_oauth import Browser, browser, settings  # noqa: F401 - the OAuth simulator's fixtures

PATH = "/api/v1/integrations/acme/{provider}/access"


def access(client, key, provider):
    path = PATH.format(provider=provider)
    response = client.post(path, json={"pipeline": "saas/usage"}, headers={"X-API-Key": key})
    check_response("POST", path, response.status_code, response.get_json())
    return response


def test_an_oauth_access_token_goes_out_refreshed_once_for_twenty_pipelines(browser, client, service, oauth_sim):  # noqa: F811
    admin_key = service.create_api_key("ops", is_admin=True)[1]
    oauth_sim.configure(access_token_seconds=60)  # inside the refresh window: the next use refreshes
    browser.connect("github_app")  # rotating refresh tokens: a second refresh would spend a dead one
    oauth_sim.configure(access_token_seconds=None, token_delay_seconds=0.3)
    barrier = threading.Barrier(20)
    answers: list[dict] = []

    def use() -> None:
        barrier.wait()
        answers.append(access(client, admin_key, "github_app").get_json())

    threads = [threading.Thread(target=use) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(answers) == 20 and all(a["success"] for a in answers), answers
    assert oauth_sim.refresh_calls("github_app") == 1
    tokens = {a["credential"]["access_token"] for a in answers}
    assert len(tokens) == 1 and {a["credential"]["token_type"] for a in answers} == {"Bearer"}
    token = tokens.pop()
    assert requests.get(oauth_sim.url + "/github_app/user", headers={"Authorization": f"Bearer {token}"}, timeout=5).ok
    _, credential = service.adapters.store.get_integration_with_credential("acme", "github_app")
    assert {a["fingerprint"] for a in answers} == {credential.fingerprint}
    assert {a["expires_at"] for a in answers} != {None}
    rows = [a for a in service.adapters.store.list_audit("acme") if a.action == "credential_accessed"]
    assert len(rows) == 20 and {a.outcome for a in rows} == {"success"}


def test_a_refused_refresh_is_409_and_the_integration_asks_to_reauthorize(browser, client, service, oauth_sim):  # noqa: F811
    admin_key = service.create_api_key("ops", is_admin=True)[1]
    oauth_sim.configure(access_token_seconds=60)
    browser.connect("canva")
    oauth_sim.revoke("canva")  # the user revoked the app: the refresh token is dead
    response = access(client, admin_key, "canva")
    assert response.status_code == 409
    body = response.get_json()
    assert body["details"]["status"] == "error" and "re-authorize" in body["error"]
    assert "/api/v1/integrations/acme/canva/oauth/start" in body["details"]["error_message"]
    assert service.adapters.store.get_integration("acme", "canva").status == "error"
    assert [(a.kind, a.provider) for a in service.adapters.store.list_alerts("acme")] == [("error", "canva")]
    # The next pipeline fails fast on the recorded error: no second refresh is tried.
    calls = oauth_sim.refresh_calls("canva")
    assert access(client, admin_key, "canva").status_code == 409
    assert oauth_sim.refresh_calls("canva") == calls


def test_an_oauth_token_far_from_expiry_costs_one_read_one_decrypt_one_append_and_no_token_call(
    browser,  # noqa: F811
    client,
    service,
    oauth_sim,
):
    admin_key = service.create_api_key("ops", is_admin=True)[1]
    browser.connect("canva")  # the simulator's tokens live hours: outside the refresh window
    access(client, admin_key, "canva")  # warm the auth cache
    store, cipher = service.adapters.store, service.adapters.cipher
    store.counters.clear()
    cipher.counters.clear()
    refreshes = oauth_sim.refresh_calls("canva")
    response = access(client, admin_key, "canva")
    assert response.status_code == 200 and oauth_sim.refresh_calls("canva") == refreshes
    assert (dict(store.counters), dict(cipher.counters)) == ({"jobs": 1, "appends": 1}, {"decrypt": 1})
