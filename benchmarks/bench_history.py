"""History: p99 of month-long /attendance and /intervals from the store, and API ready times.

- latency: a month of one room's records (3 lines of intervals, 4 grades of attendance,
  handlers) in the history store, the API's memory holding only its 8-day horizon; requests
  for the whole month (``/intervals`` and ``/attendance``) at a constant 50 requests/s, on SQLite
  and on PostgreSQL (a server this script starts with Debian's binaries, as the tests do).
- ready time: 8 and 30 days of record messages on the output topics of an embedded broker
  (published over those days: record timestamps spread back in time); how long a new read
  model takes to be ready, reading its 8-day horizon (now) and reading everything (before).

Prints one JSON object. Figures are measured, never asserted.
Run: `.venv/bin/python benchmarks/bench_history.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_api import open_loop  # noqa: E402

from api.app import create_app  # noqa: E402
from api.readmodel import ReadModel  # noqa: E402
from api.routes.intervals import STORED  # noqa: E402
from services.contract.settings import Settings  # noqa: E402
from services.history.store import HistoryStore  # noqa: E402
from services.kafka.broker import EmbeddedBroker, ensure_topics, free_port  # noqa: E402
from tests.api.feeds import (  # noqa: E402
    Server,
    attendance_record,
    handler_record,
    interval_record,
    live_state,
)

END = datetime(2026, 11, 30, tzinfo=UTC)
DAYS = 31
GRADES = ("immediate", "priority", "scheduled", "resolution")
LINES = ("999", "101", "online")
CASES: dict[str, tuple[str, str, bool]] = {}  # all cases when empty


def month_of_records(days: int, end: datetime = END) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, record)`` of one room over ``days`` days before ``end``, every quarter hour."""
    out: list[tuple[str, dict[str, Any]]] = []
    first = end - timedelta(days=days)
    for i in range(days * 96):
        start = first + timedelta(minutes=15 * i)
        for line in LINES:
            out.append(("interval", interval_record("north", line, start, offered=10 + i % 30)))
        for grade in GRADES:
            record = attendance_record("north", grade, start, created=1 + i % 4)
            record["final"] = True
            out.append(("attendance", record))
        out.append(("handlers", {**handler_record("north", start), "final": True}))
    return out


def fill(store: HistoryStore, records: list[tuple[str, dict[str, Any]]]) -> None:
    store.upsert_intervals(r for k, r in records if k == "interval")
    store.upsert_attendance(r for k, r in records if k == "attendance")
    store.upsert_handlers(r for k, r in records if k == "handlers")


def latency(store_url: str, seconds: float, rate: int) -> dict[str, Any]:
    store = HistoryStore.open(store_url, upgrade=True)
    records = month_of_records(DAYS)
    started = time.perf_counter()
    fill(store, records)
    fill_seconds = time.perf_counter() - started
    settings = Settings()
    model = ReadModel(settings)
    horizon = END - timedelta(days=settings.read_model_days)
    for kind, record in records:  # memory holds the horizon, as after a start
        if record["interval_start"] >= horizon.strftime("%Y-%m-%dT%H:%M:%SZ"):
            model.apply(settings.topic_intervals, {"kind": kind, "record": record})
    model.apply(settings.topic_live, live_state("north", END))
    model._ready = True  # no Kafka here: the model was filled directly  # noqa: SLF001
    app = create_app(settings, read_model=model, store=store)
    model.start = lambda: model  # type: ignore[method-assign]  # keep it off Kafka
    out: dict[str, Any] = {"fill_seconds": round(fill_seconds, 2), "records": len(records)}
    span = (f"start={(END - timedelta(days=DAYS)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
            f"&end={END.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    cases = CASES or {
        "intervals": ("intervals", "", True),
        "intervals_one_line": ("intervals", "&line=999", True),
        "attendance": ("attendance", "", True),
        "attendance_one_grade": ("attendance", "&grade=immediate", True),
        # every request reaches the database: the store's own cost
        "intervals_one_line_uncached": ("intervals", "&line=999", False),
        "attendance_one_grade_uncached": ("attendance", "&grade=immediate", False),
    }
    with Server(app) as server:
        for name, (path, query, cached) in cases.items():
            STORED.ttl = 30.0 if cached else 0.0
            url = f"/api/v1/rooms/north/{path}?{span}{query}"
            asyncio.run(open_loop(server.port, url, rate, 5))  # warm up (the pool fills)
            result = asyncio.run(open_loop(server.port, url, rate, seconds))
            result["what"] = (f"GET {url}: a month, {DAYS - settings.read_model_days} days of "
                              "it from the store" + ("" if cached else ", never from the "
                                                     "API's 30 s cache"))
            out[name] = result
    STORED.ttl = 30.0
    store.close()
    return out


def ready_time(bootstrap: str, days: int, horizon_days: int) -> dict[str, Any]:
    """Seconds until a new read model is ready over ``days`` days of published records."""
    from kafka import KafkaProducer

    tag = f"h{days}x{time.time_ns() % 10**9}"
    settings = Settings(bootstrap_servers=bootstrap, partitions=2, topic_intervals=f"{tag}.i",
                        topic_live=f"{tag}.l", topic_alerts=f"{tag}.a",
                        read_model_days=horizon_days)
    ensure_topics(bootstrap, [settings.topic_intervals, settings.topic_live,
                              settings.topic_alerts], settings.partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1,
                             max_request_size=8 << 20, batch_size=1 << 20)
    now_ms = int(time.time() * 1000)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    records = month_of_records(days, end)
    per_day = len(records) / days
    for n, (kind, record) in enumerate(records):
        # published as it happened: a record n quarter hours before the end is that old
        age_ms = int((len(records) - n) / per_day * 86_400_000)
        key = f"north|{record.get('line') or record.get('grade') or 'handlers'}|" \
              f"{record['interval_start']}"
        producer.send(settings.topic_intervals, key=key.encode(),
                      value=orjson.dumps({"kind": kind, "record": record}),
                      timestamp_ms=now_ms - age_ms)
    producer.flush(60)
    producer.close(10)
    model = ReadModel(settings)
    started = time.perf_counter()
    model.start()
    ready = model.wait_ready(600)
    seconds = time.perf_counter() - started
    applied = model.messages_applied
    model.stop()
    return {"days_published": days, "records_published": len(records),
            "read_model_days": horizon_days, "ready": ready,
            "ready_seconds": round(seconds, 2), "messages_applied": applied}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per endpoint, not 20")
    parser.add_argument("--rate", type=int, default=50, help="requests per second")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 20.0
    result: dict[str, Any] = {"latency": {}, "ready": {}}
    with tempfile.TemporaryDirectory() as tmp:
        result["latency"]["sqlite"] = latency(f"sqlite:///{tmp}/history.db", seconds, args.rate)
    try:
        from tests.postgres import PostgresServer

        server = PostgresServer()
    except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
        result["latency"]["postgresql"] = {"error": f"no PostgreSQL server: {exc}"}
    else:
        try:
            result["latency"]["postgresql"] = latency(server.url, seconds, args.rate)
        finally:
            server.close()
    with EmbeddedBroker("127.0.0.1", free_port()) as broker:
        for days in (8, 30):
            result["ready"][f"{days}_days"] = {
                "horizon_8_days": ready_time(broker.bootstrap, days, 8),
                "everything_as_before": ready_time(broker.bootstrap, days, 366),
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
