"""A rebuilt partition publishes again exactly the dead letters its uncommitted offsets made.

The worker acknowledges a message (so lets its offset be committed) only once the dead letters
it produced are published. After a crash, the rebuild replays the partition and publishes
again the dead letters found from the committed offset on, including orphans (children whose
call never came), which name no offset of their own. Run on the embedded broker.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.contract.settings import Settings
from services.figures.engine import Engine
from services.figures.kpis import iso
from services.kafka.broker import ensure_topics
from streams.worker import PartitionState, StreamWorker
from tests.streams.test_worker_publish import FakeProducer

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def event(n: int, etype: str, minutes: float, **fields: Any) -> dict[str, Any]:
    at = T0 + timedelta(minutes=minutes)
    return {"v": 1, "id": f"e{n}", "type": etype, "room": "north",
            "at": iso(int(at.timestamp() * 1_000_000)), **fields}


def messages() -> list[bytes]:
    return [
        # 0: a call, and an answer to a call that never comes (an orphan once final)
        orjson.dumps([event(1, "call.offered", 0, call="c1", line="999"),
                      event(2, "call.answered", 1, call="ghost")]),
        b"{this is not json",  # 1: dead-lettered at once
        orjson.dumps([event(3, "call.offered", 1, call="c2", line="999")]),
        # 3: five hours on (the grace is two): the ghost's interval is final, the orphan found
        orjson.dumps([event(4, "call.offered", 300, call="c3", line="101")]),
        orjson.dumps([event(5, "call.offered", 301, call=7, line="101")]),  # 4: call not a string
    ]


def dead_letters_by_offset(values: list[bytes], settings: Settings) -> dict[int, list[str]]:
    """Which dead letters processing each offset produces (a plain engine, message by message)."""
    engine = Engine(settings)
    found: dict[int, list[str]] = {}
    for offset, value in enumerate(values):
        engine.process(value, int(datetime.now(UTC).timestamp() * 1_000_000), b"north",
                       {"topic": settings.topic_events, "partition": 0, "offset": offset})
        found[offset] = [f"{dl.reason}:{dl.event_id}" for dl in engine.flush().dead_letters]
    return found


async def rebuild_with_committed(bootstrap: str, settings: Settings, committed: int,
                                 values: list[bytes]) -> list[dict[str, Any]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.topic_events, value, key=b"north", partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(settings.topic_events, 0)
    group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.worker_id,
                             enable_auto_commit=False)
    await group.start()
    try:
        group.assign([tp])
        if committed:
            await group.commit({tp: committed})
    finally:
        await group.stop()
    worker = StreamWorker(settings)
    fake = FakeProducer()
    worker.producer = fake  # type: ignore[assignment]
    state = PartitionState(0)
    await worker._rebuild(state)
    assert state.ready.is_set() and state.applied_upto == len(values)
    return [orjson.loads(v) for records in fake.by_partition(settings.topic_deadletter).values()
            for _k, v in records]


def settings_for(bootstrap: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(bootstrap_servers=bootstrap, topic_events=f"d{tag}.events",
                        topic_intervals=f"d{tag}.intervals", topic_live=f"d{tag}.live",
                        topic_alerts=f"d{tag}.alerts", topic_deadletter=f"d{tag}.deadletter",
                        worker_id=f"w{tag}", partitions=1)
    ensure_topics(bootstrap, [settings.topic_events], 1)
    return settings


def test_the_rebuild_publishes_again_the_dead_letters_of_uncommitted_offsets_only(
        bootstrap: str) -> None:
    values = messages()
    for committed in (0, 2, 4, len(values)):
        settings = settings_for(bootstrap)
        by_offset = dead_letters_by_offset(values, settings)
        # the scenario has what it is for: an offset's own dead letter and a later orphan
        assert by_offset[1] == ["malformed:None"]
        assert any(name.startswith("orphan:e2") for name in by_offset[3]), by_offset
        want = sorted(name for offset, names in by_offset.items() if offset >= committed
                      for name in names)
        got = asyncio.run(rebuild_with_committed(bootstrap, settings, committed, values))
        assert sorted(f"{d['reason']}:{d['event_id']}" for d in got) == want, committed
