"""Readiness: 503 with the reason until every published record is read, 503 without Kafka."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient

from api.app import create_app
from api.readmodel import ReadModel
from services.kafka.broker import free_port
from tests.api.feeds import BASE, Feed, interval_record, live_state, make_settings, make_topics


def test_ready_only_after_every_published_record_is_read(bootstrap):
    settings = make_settings(bootstrap, partitions=3)
    make_topics(settings)
    feed = Feed(settings)
    rooms = [f"room{i}" for i in range(6)]
    for i in range(400):
        for room in rooms:
            feed.interval(interval_record(room, "999", BASE + timedelta(minutes=15 * i)))
    for room in rooms:
        feed.live(live_state(room, BASE))
    feed.flush()
    feed.close()

    model = ReadModel(settings)
    with TestClient(create_app(settings, read_model=model)) as client:
        first = client.get("/readyz")
        assert first.status_code == 503
        assert first.json()["ready"] is False and first.json()["reason"]
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.05)
        # Ready means complete: tansu's end offsets can be a batch short, but nothing is missing.
        for room in rooms:
            rows = client.get(f"/api/v1/rooms/{room}/intervals").json()
            assert len(rows) == 400
    model.stop()


def test_not_ready_while_kafka_is_unreachable(bootstrap):
    settings = make_settings(bootstrap, bootstrap_servers=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(settings)) as client:
        time.sleep(1.5)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "127.0.0.1" in response.json()["reason"]
        assert client.get("/healthz").status_code == 200
