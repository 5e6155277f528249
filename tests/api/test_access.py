"""Access: bearer tokens and roles, open probes, and loopback-only without tokens."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.feeds import TOKENS, changed

VIEWER = {"Authorization": "Bearer viewer-token-1"}
SCHEDULER = {"Authorization": "Bearer scheduler-token-1"}
ADMIN = {"Authorization": "Bearer admin-token-1"}
WHAT_IF = {"calls": 100, "interval_seconds": 1800, "aht_seconds": 180, "handlers": 14,
           "threshold_seconds": 20}


@pytest.fixture(scope="module")
def secured(settings, model):
    with TestClient(create_app(changed(settings, api_tokens=TOKENS),
                               read_model=model)) as test_client:
        yield test_client


def test_missing_token_is_401_with_a_bearer_challenge(secured):
    response = secured.get("/api/v1/rooms")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


def test_wrong_token_is_401(secured):
    response = secured.get("/api/v1/rooms", headers={"Authorization": "Bearer nope-nope-nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_viewer_reads_but_cannot_plan_staffing(secured):
    assert secured.get("/api/v1/rooms", headers=VIEWER).status_code == 200
    assert secured.get("/api/v1/rooms/north/intervals", headers=VIEWER).status_code == 200
    assert secured.get("/api/v1/alerts", headers=VIEWER).status_code == 200
    response = secured.post("/api/v1/staffing/what-if", json=WHAT_IF, headers=VIEWER)
    assert response.status_code == 403
    assert "scheduler" in response.json()["detail"]
    staffing = secured.get("/api/v1/rooms/north/staffing", params={"line": "999"}, headers=VIEWER)
    assert staffing.status_code == 403


def test_scheduler_and_admin_pass_the_role_check(secured):
    for headers in (SCHEDULER, ADMIN):
        assert secured.get("/api/v1/rooms", headers=headers).status_code == 200
        response = secured.post("/api/v1/staffing/what-if", json={**WHAT_IF, "handlers": 0},
                                headers=headers)
        assert response.status_code == 422  # past auth, stopped by validation


def test_probes_metrics_dashboard_and_docs_stay_open(secured):
    for path in ("/healthz", "/readyz", "/metrics", "/", "/openapi.json", "/docs"):
        assert secured.get(path).status_code == 200, path


def test_a_token_in_a_link_is_refused_with_how_to_sign_in(secured):
    for path, name in (("/api/v1/stream", "access_token"), ("/api/v1/rooms", "token")):
        response = secured.get(path, params={name: "viewer-token-1"})
        assert response.status_code == 400
        assert "sign in" in response.json()["detail"]
        assert "Authorization: Bearer" in response.json()["detail"]
    for path in ("/", "/rooms", "/reports/monthly"):
        page = secured.get(path, params={"token": "viewer-token-1"})
        assert page.status_code == 400
        assert "sign in" in page.text and page.headers["content-type"].startswith("text/html")
    assert secured.get("/api/v1/stream").status_code == 401


def test_without_tokens_everything_is_open(client):
    assert client.get("/api/v1/rooms").status_code == 200


def _api(*args, tokens=""):
    env = dict(os.environ, PACESETTER_API_TOKENS=tokens,
               PACESETTER_BOOTSTRAP_SERVERS="127.0.0.1:1")
    return subprocess.run([sys.executable, "-m", "pacesetter.cli", "api", *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_api_refuses_a_public_address_without_tokens():
    result = _api("--api-host", "0.0.0.0", "--api-port", "1")
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without tokens" in result.stderr
    assert "PACESETTER_API_TOKENS" in result.stderr


def test_check_exposure_explains_loopback_only_and_tokens(settings):
    from pacesetter.commands.serve import ServeError, check_exposure

    assert "loopback only" in check_exposure(changed(settings, api_host="::1"))
    with pytest.raises(ServeError):
        check_exposure(changed(settings, api_host="192.0.2.1"))
    secured = changed(settings, api_host="0.0.0.0", api_tokens=TOKENS)
    assert "tokens required" in check_exposure(secured)
