"""Forty days through the worker's store sink: the API serves all of it, memory and store merged.

The read model keeps 8 days in memory; older records come from the history store, written by
the worker's sink as they became final. Every answer over days 1-40 equals the independent
oracle's records, on SQLite and on a real PostgreSQL server, and while the database is down a
history request gets a 503 naming the store, and the API recovers by itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import LazyStore
from api.readmodel import ReadModel
from services.contract.settings import Settings
from services.history.store import HistoryStore, SchemaBehind
from services.simulation.simulator import simulate_events
from streams.worker import StreamWorker
from tests import oracle
from tests.postgres import wait_until
from tests.streams.test_engine_vs_oracle import assert_same
from tests.streams.test_worker_publish import FakeProducer

START = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 40
WALL = datetime(2027, 1, 1, tzinfo=UTC)  # after every event: a replay, nothing is live
WALL_US = int(WALL.timestamp()) * 1_000_000


@pytest.fixture(scope="module")
def events() -> list[bytes]:
    return [orjson.dumps(e) for e in simulate_events(rooms=1, days=DAYS, start=START,
                                                     scale=0.03, seed=14)]


@pytest.fixture(scope="module")
def expected(events: list[bytes]) -> oracle.OracleResult:
    return oracle.compute(events, wall_clock=WALL)


async def replay(events: list[bytes], store: HistoryStore, tmp_path: Any,
                 outage: Any = None) -> ReadModel:
    """The worker's engine and publishing path over the events; the read model fed its output.

    ``outage`` (a PostgreSQL server) is stopped a third of the way through, and started again
    at two thirds: the worker publishes all the while.
    """
    settings = Settings(data_dir=str(tmp_path))
    worker = StreamWorker(settings, store=store, clock=lambda: WALL_US)
    producer = FakeProducer()
    worker.producer = producer  # type: ignore[assignment]
    third = len(events) // 3
    published_in_outage = 0
    for n, line in enumerate(events, 1):
        worker.engine.process(line, WALL_US)
        if n % 2000 == 0:
            await worker.flush(force=True)
        if outage is not None and n == third:
            await worker.flush(force=True)
            outage.stop()
            sent_before = len(producer.sent)
        if outage is not None and n == 2 * third:
            await worker.flush(force=True)
            published_in_outage = len(producer.sent) - sent_before
            assert worker.history is not None and not worker.history.available
            outage.start()
    if outage is not None:
        assert published_in_outage > 0  # the stream went on while the database was down
    await worker.stop()  # publishes the rest and waits for the store sink
    model = ReadModel(settings)
    for topic, _partition, records in producer.sent:
        if topic == settings.topic_intervals:
            for _key, value in records:
                model.apply(topic, orjson.loads(value))
    model.prune()
    return model


def check(answer: list[dict[str, Any]], records: dict[str, dict[str, Any]], then: str,
          kind: str) -> None:
    want = sorted(records.values(), key=lambda r: (r["interval_start"], r.get(then, "")))
    assert len(answer) == len(want), kind
    for got, record in zip(answer, want, strict=True):
        assert_same(got, record, kind)


async def test_forty_days_are_served_from_memory_and_store_equal_to_the_oracle(
        store_url, tmp_path, events, expected):
    await served_equal_to_oracle(store_url, tmp_path, events, expected)


async def test_nothing_is_lost_when_postgresql_stops_and_starts_during_the_stream(
        postgres, tmp_path, events, expected):
    postgres.reset()
    await served_equal_to_oracle(postgres.url, tmp_path, events, expected, postgres)


async def served_equal_to_oracle(store_url: str, tmp_path: Any, events: list[bytes],
                                 expected: oracle.OracleResult, server: Any = None) -> None:
    store = HistoryStore.open(store_url, upgrade=True)
    try:
        model = await replay(events, store, tmp_path, server)
        oldest = model.oldest_interval("north")
        assert oldest is not None and oldest > START + timedelta(days=30)  # memory: 8 days
        client = TestClient(create_app(Settings(), read_model=model, store=store))
        span = {"start": START.isoformat(), "end": (START + timedelta(days=DAYS)).isoformat()}
        for path, kind, then in (("intervals", "intervals", "line"),
                                 ("attendance", "attendance", "grade"),
                                 ("handlers", "handlers", "")):
            response = client.get(f"/api/v1/rooms/north/{path}", params=span)
            assert response.status_code == 200, response.text
            check(response.json(), getattr(expected, kind), then, kind)
        # and a day in the middle, wholly from the store
        day = {"start": (START + timedelta(days=10)).isoformat(),
               "end": (START + timedelta(days=11)).isoformat()}
        got = client.get("/api/v1/rooms/north/attendance", params=day).json()
        assert got and all(day["start"] <= r["interval_start"].replace("Z", "+00:00")
                           < day["end"] for r in got)
    finally:
        if server is not None and not server.running():
            server.start()
        store.close()


async def test_history_requests_get_503_naming_the_store_while_postgresql_is_down(
        postgres, tmp_path, events):
    postgres.reset()
    HistoryStore.open(postgres.url, upgrade=True).close()
    store = LazyStore(postgres.url)
    model = await replay(events[:8000], store.get(), tmp_path)
    client = TestClient(create_app(Settings(), read_model=model, store=store))
    old = {"start": START.isoformat(), "end": (START + timedelta(days=2)).isoformat()}
    assert len(client.get("/api/v1/rooms/north/intervals", params=old).json()) > 0
    recent = {"start": model.oldest_interval("north").isoformat()}
    # (answers of the last 30 s may come from the API's cache: ask for ranges not asked yet)
    other = {"start": (START + timedelta(hours=1)).isoformat(), "end": old["end"]}
    try:
        postgres.stop()
        for path in ("intervals", "attendance", "handlers"):
            response = client.get(f"/api/v1/rooms/north/{path}", params=other)
            assert response.status_code == 503
            assert "127.0.0.1" in response.json()["detail"]  # names the store
            assert "test-password" not in response.text
        # what memory holds is still served
        assert client.get("/api/v1/rooms/north/intervals", params=recent).status_code == 200
    finally:
        postgres.start()
    wait_until(lambda: client.get("/api/v1/rooms/north/intervals",
                                  params=other).status_code == 200)
    store.close()


async def test_a_behind_schema_is_named_by_the_api_and_the_worker(postgres, tmp_path, events,
                                                                   capsys):
    from pacesetter.cli import main

    postgres.reset()  # an empty database: no schema yet
    with HistoryStore.open(f"sqlite:///{tmp_path / 'h.db'}") as scratch:
        model = await replay(events[:8000], scratch, tmp_path)
    client = TestClient(create_app(Settings(), read_model=model, store=LazyStore(postgres.url)))
    old = {"start": START.isoformat(), "end": (START + timedelta(days=1)).isoformat()}
    response = client.get("/api/v1/rooms/north/intervals", params=old)
    assert response.status_code == 503
    assert "pacesetter db upgrade" in response.json()["detail"]
    # the worker stops at start, saying the same
    from streams.runner import open_store

    with pytest.raises(SchemaBehind, match="pacesetter db upgrade"):
        open_store(Settings(store_url=postgres.url))
    assert main(["db", "upgrade", "--store", postgres.url]) == 0
    capsys.readouterr()
    wait_until(lambda: client.get("/api/v1/rooms/north/intervals", params=old).status_code
               == 200)
