"""Faults the stream survives: a flood of invalid input, and a broker that goes away."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.kafka.broker import ensure_topics
from services.simulation.simulator import simulate_events
from tests import oracle
from tests.integration.harness import Process, produce_lines, topic_env, uncommitted, wait_until
from tests.integration.test_worker import live_states, wait_for_oracle

pytestmark = pytest.mark.integration

PER_MESSAGE = 1000
# The flood's property (every invalid event dead-lettered, counted and acknowledged while valid
# events flow on) holds at any size far past what any buffer on the way takes (the worker's
# producer batches 1 MB; 200,000 dead letters, each with its raw event, are tens of MB):
# `make test` floods 200,000, the slow run a million.
FLOODS = [pytest.param(200_000, id="200k"),
          pytest.param(1_000_000, id="million", marks=pytest.mark.slow)]


def broken(n: int) -> bytes:
    """An invalid event of room ``north``: each fails a different rule."""
    kind = n % 4
    if kind == 0:
        return orjson.dumps({"v": 1, "id": f"x{n}", "type": "call.teleported", "room": "north",
                             "at": "2026-11-02T10:00:00Z"})
    if kind == 1:
        return orjson.dumps({"v": 1, "id": f"x{n}", "type": "call.offered", "room": "north",
                             "at": "2026-11-02T10:00:00", "call": f"z{n}", "line": "101"})
    if kind == 2:
        return orjson.dumps({"v": 2, "id": f"x{n}", "type": "call.offered", "room": "north",
                             "at": "2026-11-02T10:00:00Z", "call": f"z{n}", "line": "101"})
    return orjson.dumps({"v": 1, "id": f"x{n}", "type": "call.answered", "room": "north",
                         "at": "2026-11-02T10:00:00Z"})


async def flood(bootstrap: str, topic: str, size: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_request_size=16 << 20, max_batch_size=4 << 20)
    await producer.start()
    try:
        sends = []
        for start in range(0, size, PER_MESSAGE):
            value = b"[" + b",".join(broken(n) for n in range(start, start + PER_MESSAGE)) + b"]"
            sends.append(await producer.send(topic, value, key=b"north"))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def count_dead_letters(bootstrap: str, topic: str, expected: int,
                             timeout: float) -> Counter[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    reasons: Counter[str] = Counter()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while sum(reasons.values()) < expected and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=50000)).values():
                for message in messages:
                    reasons[orjson.loads(message.value)["reason"]] += 1
        return reasons
    finally:
        await consumer.stop()


@pytest.mark.parametrize("size", FLOODS)
def test_a_flood_of_invalid_events_is_all_dead_lettered_and_counted_while_valid_flow_on(
    bootstrap: str, tmp_path: Path, size: int
) -> None:
    env = topic_env(bootstrap, tmp_path)
    ensure_topics(bootstrap, [env[k] for k in env if k.startswith("PACESETTER_TOPIC")], 8)
    day = [orjson.dumps(e) for e in simulate_events(rooms=1, days=0.25, seed=61)]
    first, second = day[: len(day) // 2], day[len(day) // 2:]
    worker = Process(["worker"], env, tmp_path / "worker.log")
    try:
        produce_lines(bootstrap, env["PACESETTER_TOPIC_EVENTS"], first)
        started = time.monotonic()
        asyncio.run(flood(bootstrap, env["PACESETTER_TOPIC_EVENTS"], size))
        produce_lines(bootstrap, env["PACESETTER_TOPIC_EVENTS"], second)
        want = oracle.compute(day)
        wait_for_oracle(bootstrap, env, want, 240, [worker])
        reasons = asyncio.run(count_dead_letters(
            bootstrap, env["PACESETTER_TOPIC_DEADLETTER"], size, 240))
        elapsed = time.monotonic() - started
        assert sum(reasons.values()) == size, reasons
        assert reasons["invalid"] == size
        live: dict = {}

        def counted() -> bool:
            live.update(live_states(bootstrap, env["PACESETTER_TOPIC_LIVE"]))
            return live.get("north", {}).get("totals", {}).get("rejected", {}).get(
                "invalid") == size

        wait_until(counted, 60, interval=2, what="the live state to count the flood")
        # every message was acknowledged once its dead letters were published: all committed
        lag = [-1]

        def all_committed() -> bool:
            lag[0] = uncommitted(bootstrap, env["PACESETTER_TOPIC_EVENTS"],
                                 env["PACESETTER_WORKER_ID"])
            return lag[0] <= 0  # tansu can report an end offset short of the last batch

        try:
            wait_until(all_committed, 60, interval=2, what="every offset to be committed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {lag[0]} messages not committed") from None
        # the worker kept pace: it did not fall over, and it published the records as it went
        assert worker.proc.poll() is None
        print(f"flood of {size} invalid events handled in {elapsed:.1f} s")
    finally:
        worker.stop()
