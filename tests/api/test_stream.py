"""Server-sent events over a real server: the current state first, then changes as published."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import pytest

from api.app import create_app
from tests.api.feeds import BASE, TOKENS, Server, alert, changed, live_state


class Reader:
    """Parses server-sent events from one streaming response, as they come."""

    def __init__(self, response):
        self.lines = response.iter_lines()
        self.events = []

    def until(self, done, timeout=20.0):
        """Read until ``done(events read so far)``; return those events."""
        name, data = None, []
        deadline = time.monotonic() + timeout
        if done(self.events):
            return self.events
        for line in self.lines:
            if line.startswith("event:"):
                name = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data.append(line.partition(":")[2].strip())
            elif line == "" and name:
                self.events.append((name, json.loads("\n".join(data))))
                name, data = None, []
                if done(self.events):
                    return self.events
            if time.monotonic() > deadline:
                break
        pytest.fail(f"stream ended or timed out after {self.events!r}")


@pytest.fixture(scope="module")
def server(settings, model):
    with Server(create_app(settings, read_model=model)) as running:
        yield running


def test_stream_sends_live_state_then_changes(server, feed):
    with httpx.stream("GET", server.url + "/api/v1/stream", params={"room": "north"},
                      timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Reader(response)
        first = reader.until(lambda ev: len(ev) >= 1)
        assert first[0][0] == "live" and first[0][1]["room"] == "north"

        feed.live(live_state("south", BASE, in_queue=9))  # another room: filtered out
        feed.live(live_state("north", BASE + timedelta(seconds=5), in_queue=7))
        feed.alert(alert("north", "long_wait", "101", BASE, value=700.0, threshold=600.0))
        feed.flush()
        events = reader.until(lambda ev: any(n == "alert" for n, _ in ev) and any(
            n == "live" and d["lines"]["999"]["in_queue"] == 7 for n, d in ev))
    lives = [d for n, d in events if n == "live"]
    assert lives[-1]["lines"]["999"]["in_queue"] == 7
    assert all(d["room"] == "north" for d in lives)
    assert [d["line"] for n, d in events if n == "alert"] == ["101"]


def test_stream_sends_interval_changes(server, feed):
    from tests.api.feeds import interval_record

    with httpx.stream("GET", server.url + "/api/v1/stream", timeout=30) as response:
        reader = Reader(response)
        reader.until(lambda ev: len(ev) >= 2)  # the two rooms' live states
        feed.interval(interval_record("south", "999", BASE, offered=3, final=False))
        feed.flush()
        events = reader.until(lambda ev: any(n == "interval" for n, _ in ev))
    changes = [d for n, d in events if n == "interval"]
    assert changes[0]["kind"] == "interval"
    assert changes[0]["record"]["offered"] == 3


def test_stream_takes_the_session_cookie_when_tokens_are_set(settings, model):
    with Server(create_app(changed(settings, api_tokens=TOKENS), read_model=model)) as running:
        url = running.url + "/api/v1/stream"
        assert httpx.get(url, timeout=10).status_code == 401
        with httpx.Client(base_url=running.url, timeout=30) as browser:
            signed = browser.post("/api/v1/session", json={"token": "viewer-token-1"})
            assert signed.status_code == 200
            with browser.stream("GET", "/api/v1/stream") as response:
                assert response.status_code == 200
                assert Reader(response).until(lambda ev: len(ev) >= 1)[0][0] == "live"


def _stage_samples(url: str) -> dict[tuple[str, str], float]:
    """``(sample name, stage or le) -> value`` of pacesetter_api_freshness_seconds at /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        if family.name == "pacesetter_api_freshness_seconds":
            for sample in family.samples:
                key = sample.labels["stage"] + "|" + sample.labels.get("le", "")
                out[(sample.name, key)] = sample.value
    return out


def test_live_messages_are_timed_from_publication_to_the_stream_on_metrics(server, feed):
    from services.contract.freshness import HEADER_PUBLISHED

    before = _stage_samples(server.url)
    count = "pacesetter_api_freshness_seconds_count"
    bucket = "pacesetter_api_freshness_seconds_bucket"
    with httpx.stream("GET", server.url + "/api/v1/stream", params={"room": "north"},
                      timeout=30) as response:
        reader = Reader(response)
        reader.until(lambda ev: len(ev) >= 1)
        # published 0.3 s ago by the worker's clock: the read_model stage lasts at least that
        published = time.time_ns() // 1000 - 300_000
        state = live_state("north", BASE + timedelta(seconds=9), in_queue=5)
        feed.producer.send(feed.settings.topic_live, key=b"north",
                           value=json.dumps(state).encode(),
                           headers=[(HEADER_PUBLISHED, b"%d" % published)])
        feed.flush()
        reader.until(lambda ev: any(
            n == "live" and d["lines"]["999"]["in_queue"] == 5 for n, d in ev))
        deadline = time.monotonic() + 10
        while (after := _stage_samples(server.url)).get((count, "sse|"), 0) <= before.get(
                (count, "sse|"), 0) and time.monotonic() < deadline:
            time.sleep(0.05)

    def grew(name: str, key: str) -> float:
        return after.get((name, key), 0) - before.get((name, key), 0)

    assert grew(count, "read_model|") == 1
    assert grew(bucket, "read_model|0.25") == 0  # it took over 0.25 s
    assert grew(bucket, "read_model|+Inf") == 1
    assert grew(count, "sse|") == 1  # one client, one event written
