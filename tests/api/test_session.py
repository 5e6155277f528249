"""Sign-in without tokens in links: signed session cookies, CSRF, sign-out, revocation."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.session import SessionSigner
from tests.api.feeds import TOKENS, changed

KEY = "k" * 40
WHAT_IF = {"calls": 100, "interval_seconds": 1800, "aht_seconds": 180, "handlers": 0,
           "threshold_seconds": 20}


@pytest.fixture(scope="module")
def secured_settings(settings):
    return changed(settings, api_tokens=TOKENS, session_key=KEY)


@pytest.fixture
def browser(secured_settings, model):
    with TestClient(create_app(secured_settings, read_model=model)) as client:
        yield client


def _sign_in(client, token="scheduler-token-1"):
    response = client.post("/api/v1/session", json={"token": token})
    assert response.status_code == 200, response.text
    return response


def test_sign_in_sets_an_httponly_strict_cookie_with_an_expiry(browser):
    assert browser.get("/api/v1/session").json()["signed_in"] is False
    response = _sign_in(browser)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("pacesetter_session=")
    for part in ("HttpOnly", "SameSite=strict", "Max-Age=43200", "Path=/"):
        assert part.lower() in cookie.lower(), part
    assert "secure" not in cookie.lower()  # plain HTTP here: a Secure cookie would never return
    body = response.json()
    assert body["role"] == "scheduler" and body["signed_in"] and body["csrf"]
    assert "scheduler-token-1" not in cookie
    assert browser.get("/api/v1/rooms").status_code == 200  # the cookie alone
    who = browser.get("/api/v1/session").json()
    assert (who["signed_in"], who["role"], who["csrf"]) == (True, "scheduler", body["csrf"])


def test_the_cookie_is_secure_over_tls(secured_settings, model):
    with TestClient(create_app(secured_settings, read_model=model),
                    base_url="https://testserver") as client:
        assert "secure" in _sign_in(client).headers["set-cookie"].lower()


def test_an_unknown_token_does_not_sign_in(browser):
    response = browser.post("/api/v1/session", json={"token": "nope-nope-nope"})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert browser.get("/api/v1/rooms").status_code == 401


def test_writes_on_the_cookie_need_the_csrf_token_and_this_origin(browser):
    csrf = _sign_in(browser).json()["csrf"]
    no_csrf = browser.post("/api/v1/staffing/what-if", json=WHAT_IF)
    assert no_csrf.status_code == 403 and "X-CSRF-Token" in no_csrf.json()["detail"]
    wrong = browser.post("/api/v1/staffing/what-if", json=WHAT_IF,
                         headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    ok = browser.post("/api/v1/staffing/what-if", json=WHAT_IF, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 422  # past access control, stopped by validation (0 handlers)
    cross = browser.post("/api/v1/staffing/what-if", json=WHAT_IF,
                         headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert cross.status_code == 403 and "cross-site" in cross.json()["detail"]
    login = browser.post("/api/v1/session", json={"token": "viewer-token-1"},
                         headers={"Origin": "https://evil.example"})
    assert login.status_code == 403
    form = browser.post("/api/v1/session", content='{"token": "viewer-token-1"}',
                        headers={"Content-Type": "text/plain"})  # what a cross-site form sends
    assert form.status_code == 422


def test_bearer_clients_need_no_csrf_token(browser):
    response = browser.post("/api/v1/staffing/what-if", json=WHAT_IF,
                            headers={"Authorization": "Bearer scheduler-token-1"})
    assert response.status_code == 422


def test_a_forged_or_expired_cookie_is_not_a_session(browser, secured_settings):
    _sign_in(browser, "viewer-token-1")
    value = browser.cookies["pacesetter_session"]
    body, _, mac = value.partition(".")
    browser.cookies.set("pacesetter_session", body + "." + mac[::-1])
    assert browser.get("/api/v1/rooms").status_code == 401
    signer = SessionSigner(secured_settings)
    assert signer.read(value) is not None
    assert signer.read(value, now=time.time() + secured_settings.session_seconds + 1) is None
    other = SessionSigner(changed(secured_settings, session_key="x" * 40))
    assert other.read(value) is None


def test_removing_a_token_ends_its_sessions(browser, secured_settings, model):
    _sign_in(browser, "viewer-token-1")
    cookie = browser.cookies["pacesetter_session"]
    revoked = changed(secured_settings,
                      api_tokens="scheduler:scheduler-token-1,admin:admin-token-1")
    with TestClient(create_app(revoked, read_model=model)) as replica:
        replica.cookies.set("pacesetter_session", cookie)
        assert replica.get("/api/v1/rooms").status_code == 401
    with TestClient(create_app(secured_settings, read_model=model)) as replica:
        replica.cookies.set("pacesetter_session", cookie)  # same key: another replica
        assert replica.get("/api/v1/rooms").status_code == 200


def test_sign_out_clears_the_cookie(browser):
    csrf = _sign_in(browser).json()["csrf"]
    assert browser.delete("/api/v1/session").status_code == 403  # no CSRF token
    response = browser.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert "pacesetter_session=" in response.headers["set-cookie"]
    assert browser.get("/api/v1/rooms").status_code == 401
    assert browser.get("/api/v1/session").json()["signed_in"] is False


def test_a_short_session_key_stops_the_program_naming_the_variable():
    from services.contract.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="PACESETTER_SESSION_KEY"):
        load_settings(session_key="short")


def test_named_tokens_and_the_supervisor_role_parse():
    from services.contract.settings import Settings, SettingsError, load_settings

    tokens = Settings(api_tokens="a.khan=supervisor:abcdefgh1,viewer:abcdefgh2").tokens()
    assert [(t.name, t.role) for t in tokens] == [("a.khan", "supervisor"), (None, "viewer")]
    with pytest.raises(SettingsError, match="PACESETTER_API_TOKENS"):
        load_settings(api_tokens="=supervisor:abcdefgh1")
