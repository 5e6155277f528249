"""Offsets with no message (compaction, transaction markers) never wedge a partition."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from services.kafka.broker import ensure_topics
from tests.integration.harness import Process, read_topic, topic_env, wait_until

pytestmark = pytest.mark.integration


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def offered(call: str, at: float) -> bytes:
    return orjson.dumps([{"v": 1, "id": f"e-{call}", "type": "call.offered", "room": "north",
                          "at": _at(at), "call": call, "line": "999"}])


def publish(bootstrap: str, topic: str, messages: list[bytes], gaps: bool) -> None:
    """One record batch; with ``gaps``, an offset with no message after each message, as
    compaction leaves them (tansu keeps a batch's offset deltas as written)."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            batch = producer.create_batch()
            for value in messages:
                batch.append(key=b"north", value=value, timestamp=None)
                if gaps:
                    batch._relative_offset += 1  # type: ignore[attr-defined]
            batch.close()
            await (await producer.send_batch(batch, topic, partition=0))
        finally:
            await producer.stop()

    asyncio.run(run())


def offered_total(bootstrap: str, topic: str) -> int:
    """Calls offered in north's latest interval records (a live room's records are published
    again and again: read for a few seconds, not until the topic falls quiet)."""
    latest: dict[bytes | None, dict[str, object]] = {}
    for key, value, _p, _o in sorted(read_topic(bootstrap, topic, idle_seconds=0.5, timeout=4),
                                     key=lambda m: (m[2], m[3])):
        body = orjson.loads(value)
        if body["kind"] == "interval":
            latest[key] = body["record"]
    return sum(int(str(r["offered"])) for r in latest.values()
               if r["room"] == "north" and r["line"] == "999")


def test_gaps_in_offsets_are_passed_over_live_and_in_a_rebuild(
        bootstrap: str, tmp_path: Path) -> None:
    env = topic_env(bootstrap, tmp_path, partitions=1)
    events, intervals = env["PACESETTER_TOPIC_EVENTS"], env["PACESETTER_TOPIC_INTERVALS"]
    ensure_topics(bootstrap, [events], 1)
    now = time.time()
    worker = Process(["worker"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: worker.readyz()[0] == 200, 90, what="the worker ready")
        publish(bootstrap, events, [offered("c0", now - 50)], gaps=False)  # offset 0
        # offsets 1, 3, 5 hold messages; 2, 4 and 6 none; the next batch starts at 6
        publish(bootstrap, events, [offered(f"c{i}", now - 50 + i) for i in (1, 2, 3)],
                gaps=True)
        publish(bootstrap, events, [offered("c4", now - 40)], gaps=False)
        wait_until(lambda: worker.metrics().get("pacesetter_worker_events_applied_total", 0)
                   >= 5, 60, interval=0.5, what="all five messages applied")
        wait_until(lambda: offered_total(bootstrap, intervals) == 5, 60, interval=1,
                   what="5 calls offered in the published records")
        assert worker.metrics()['pacesetter_worker_lag_messages{partition="0"}'] == 0
    finally:
        worker.stop()

    # a new worker rebuilds the partition across the gaps, then goes on applying
    worker = Process(["worker"], env, tmp_path / "worker2.log")
    try:
        wait_until(lambda: worker.readyz()[0] == 200, 90, what="the rebuilt worker ready")
        assert worker.metrics()['pacesetter_worker_rebuild_messages{partition="0"}'] == 5
        publish(bootstrap, events, [offered("c5", now - 30)], gaps=False)
        wait_until(lambda: offered_total(bootstrap, intervals) == 6, 60, interval=1,
                   what="6 calls offered after the rebuild")
        wait_until(lambda: worker.metrics().get('pacesetter_worker_lag_messages{partition="0"}')
                   == 0, 30, interval=0.5, what="no lag after the rebuild")
    finally:
        worker.stop()
