"""Cached interval answers follow the records: a new record is served at once."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from api.readmodel import ReadModel
from services.contract.settings import Settings


def record(offered: int) -> dict:
    return {"room": "north", "line": "999", "interval_start": "2026-11-21T22:15:00Z",
            "interval_end": "2026-11-21T22:30:00Z", "final": False, "offered": offered}


def test_interval_answers_change_as_soon_as_a_record_changes() -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:1", api_tokens="")
    model = ReadModel(settings)
    model.apply(settings.topic_intervals, {"kind": "interval", "record": record(1)})
    client = TestClient(create_app(settings, read_model=model))
    url = "/api/v1/rooms/north/intervals?start=2026-11-21T00:00:00Z&end=2026-11-22T00:00:00Z"
    first = client.get(url)
    assert first.status_code == 200 and [r["offered"] for r in first.json()] == [1]
    assert client.get(url).json() == first.json()  # served again, unchanged
    model.apply(settings.topic_intervals, {"kind": "interval", "record": record(2)})
    assert [r["offered"] for r in client.get(url).json()] == [2]
    assert [r["offered"] for r in client.get(url + "&line=999").json()] == [2]
    assert client.get(url + "&line=101").json() == []
