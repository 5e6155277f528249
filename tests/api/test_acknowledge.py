"""Alert lifecycle over the API: acknowledge (supervisor), history, metrics, replicas, restart.

Two API apps, each with its own read model on the session broker, share one history store
file, as two replicas (or one replica and its restart) would.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from services.history.store import HistoryStore
from tests.api.feeds import Feed, iso, live_state, make_settings, make_topics

TOKENS = ("viewer:viewer-token-1,a.khan=supervisor:supervisor-token-1,"
          "scheduler:scheduler-token-1")
VIEWER = {"Authorization": "Bearer viewer-token-1"}
SUPERVISOR = {"Authorization": "Bearer supervisor-token-1"}
SCHEDULER = {"Authorization": "Bearer scheduler-token-1"}
ALERT_ID = "north:long_wait:999"


def long_wait(started: datetime, state: str = "firing") -> dict:
    return {"id": ALERT_ID, "rule": "long_wait", "room": "north", "line": "999",
            "incident": None, "severity": "critical", "state": state,
            "started_at": iso(started),
            "resolved_at": iso(started + timedelta(minutes=3)) if state == "resolved" else None,
            "value": 75.0, "threshold": 60.0,
            "message": "999: a caller has waited 1 min 15 s (limit 1 min)"}


def wait_until(probe, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {timeout} s: {probe}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world(bootstrap, tmp_path_factory):
    settings = make_settings(bootstrap, api_tokens=TOKENS)
    make_topics(settings)
    feed = Feed(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    feed.live(live_state("north", now))
    feed.alert(long_wait(now - timedelta(minutes=30), state="firing"))
    feed.flush()
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'history.db'}"
    yield settings, feed, url, now
    feed.close()


def _replica(settings, url):
    store = HistoryStore.open(url)
    client = TestClient(create_app(settings, store=store))
    client.__enter__()
    return client, store


def _ready(client):
    wait_until(lambda: client.get("/readyz").status_code == 200)
    wait_until(lambda: client.get("/api/v1/alerts", headers=VIEWER).json())
    return client


def _firing(client):
    return {a["id"]: a for a in client.get("/api/v1/alerts", params={"state": "firing"},
                                           headers=VIEWER).json()}


def _episodes_gauge(client):
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "pacesetter_alerts_firing_episodes":
            for sample in family.samples:
                found[(sample.labels["rule"], sample.labels["acknowledged"])] = sample.value
    return found


def test_lifecycle_across_two_replicas_and_a_restart(world):
    settings, feed, url, now = world
    (a, store_a), (b, store_b) = _replica(settings, url), _replica(settings, url)
    try:
        _ready(a), _ready(b)
        first = _firing(a)[ALERT_ID]
        assert first["acknowledged_by"] is None
        assert _episodes_gauge(a)[("long_wait", "false")] == 1

        path = f"/api/v1/rooms/north/alerts/{ALERT_ID}/acknowledge"
        body = {"started_at": first["started_at"], "note": "seen, calling in two more handlers"}
        denied = a.post(path, json=body, headers=VIEWER)
        assert denied.status_code == 403 and "supervisor" in denied.json()["detail"]

        acked = a.post(path, json=body, headers=SUPERVISOR)
        assert acked.status_code == 200, acked.text
        assert acked.json()["acknowledged_by"] == "a.khan"
        assert acked.json()["note"] == "seen, calling in two more handlers"
        assert _firing(a)[ALERT_ID]["acknowledged_by"] == "a.khan"
        # The other replica reads it from the store.
        wait_until(lambda: _firing(b)[ALERT_ID]["acknowledged_by"] == "a.khan")
        assert _firing(b)[ALERT_ID]["note"] == "seen, calling in two more handlers"
        assert _episodes_gauge(b)[("long_wait", "true")] == 1
        assert ("long_wait", "false") not in _episodes_gauge(b)

        again = b.post(path, json={"note": "me too"}, headers=SCHEDULER)  # scheduler > supervisor
        assert again.status_code == 409 and "a.khan" in again.json()["detail"]

        # A restarted replica: a fresh read model, the same store.
        b.__exit__(None, None, None)
        store_b.close()
        b, store_b = _replica(settings, url)
        _ready(b)
        wait_until(lambda: _firing(b)[ALERT_ID]["acknowledged_by"] == "a.khan")

        # Resolve, then fire again: a new episode, not acknowledged.
        feed.alert(long_wait(now - timedelta(minutes=30), state="resolved"))
        refire = now - timedelta(minutes=5)
        feed.alert(long_wait(refire))
        feed.flush()
        wait_until(lambda: _firing(a).get(ALERT_ID, {}).get("started_at") == iso(refire))
        assert _firing(a)[ALERT_ID]["acknowledged_by"] is None
        stale = a.post(path, json=body, headers=SUPERVISOR)  # the old episode's start
        assert stale.status_code == 409

        history = a.get("/api/v1/rooms/north/alerts/history", headers=VIEWER,
                        params={"start": iso(now - timedelta(hours=1)),
                                "end": iso(now + timedelta(minutes=1))})
        assert history.status_code == 200
        wait_until(lambda: len(a.get("/api/v1/rooms/north/alerts/history", headers=VIEWER)
                               .json()) == 2)
        episodes = a.get("/api/v1/rooms/north/alerts/history", headers=VIEWER).json()
        assert [e["started_at"] for e in episodes] == [iso(now - timedelta(minutes=30)),
                                                        iso(refire)]
        assert [e["acknowledged_by"] for e in episodes] == ["a.khan", None]
        assert episodes[0]["resolved_at"] == iso(now - timedelta(minutes=27))
        assert episodes[1]["resolved_at"] is None
        assert episodes[0]["subject"] == "999" and episodes[0]["severity"] == "critical"
    finally:
        for client, store in ((a, store_a), (b, store_b)):
            client.__exit__(None, None, None)
            store.close()


def test_history_and_acknowledge_answer_clearly_without_a_store_or_a_known_alert(world):
    settings, _, url, _ = world
    with TestClient(create_app(settings)) as bare:
        _ready(bare)
        response = bare.get("/api/v1/rooms/north/alerts/history", headers=VIEWER)
        assert response.status_code == 503 and "PACESETTER_STORE_URL" in response.json()["detail"]
    client, store = _replica(settings, url)
    try:
        _ready(client)
        missing = client.post("/api/v1/rooms/north/alerts/north:nope:999/acknowledge",
                              json={}, headers=SUPERVISOR)
        assert missing.status_code == 404
        bad = client.get("/api/v1/rooms/north/alerts/history", headers=VIEWER,
                         params={"start": "2026-11-21T22:00:00Z", "end": "2026-11-21T21:00:00Z"})
        assert bad.status_code == 422 and "end" in bad.json()["message"]
        assert client.get("/api/v1/rooms/west/alerts/history", headers=VIEWER).status_code == 404
    finally:
        client.__exit__(None, None, None)
        store.close()


def test_acknowledged_alerts_pass_promtool(world, tmp_path):
    settings, _, url, _ = world
    promtool = shutil.which("promtool")
    if promtool is None:
        import os

        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (Debian package 'prometheus'); CI needs it")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    client, store = _replica(settings, url)
    try:
        _ready(client)
        text = client.get("/metrics").text
        assert "pacesetter_alerts_firing_episodes{" in text
        result = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                                capture_output=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        client.__exit__(None, None, None)
        store.close()


def test_another_replicas_event_stream_carries_the_acknowledgement(world):
    import httpx

    from tests.api.feeds import Server
    from tests.api.test_stream import Reader

    settings, feed, url, now = world
    gap = dict(long_wait(now - timedelta(minutes=2)), id="north:staffing_gap:room",
               rule="staffing_gap", line=None, severity="warning",
               message="3 handlers logged in, the plan needs 5")
    feed.alert(gap)
    feed.flush()
    a, store_a = _replica(settings, url)
    store_b = HistoryStore.open(url)
    try:
        _ready(a)
        wait_until(lambda: "north:staffing_gap:room" in _firing(a))
        with Server(create_app(settings, store=store_b)) as b, \
                httpx.Client(base_url=b.url, timeout=30) as browser:
            wait_until(lambda: browser.get("/readyz").status_code == 200)
            assert browser.post("/api/v1/session",
                                json={"token": "viewer-token-1"}).status_code == 200
            with browser.stream("GET", "/api/v1/stream", params={"room": "north"}) as response:
                reader = Reader(response)
                reader.until(lambda ev: any(n == "live" for n, _ in ev))
                acked = a.post("/api/v1/rooms/north/alerts/north:staffing_gap:room/acknowledge",
                               json={"note": "two more from the next shift"}, headers=SUPERVISOR)
                assert acked.status_code == 200, acked.text
                events = reader.until(lambda ev: any(
                    n == "alert" and d["id"] == "north:staffing_gap:room"
                    and d["acknowledged_by"] == "a.khan" for n, d in ev))
        shown = [d for n, d in events if n == "alert" and d["acknowledged_by"]]
        assert shown[-1]["note"] == "two more from the next shift"
    finally:
        a.__exit__(None, None, None)
        store_a.close()
        store_b.close()
