"""When the worker takes a checkpoint: only once what it published before is acknowledged, no
dead letter waits, and no send was lost since the partition was rebuilt."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from services.contract.events import to_us
from services.contract.settings import Settings
from services.figures.checkpoint import import_engine
from services.figures.engine import Engine
from services.history.store import Checkpoint
from streams.worker import PartitionState, StreamWorker, message_digest
from tests.streams.test_worker_publish import FakeProducer


class FakeStore:
    """Keeps the checkpoints saved."""

    def __init__(self) -> None:
        self.saved: list[Checkpoint] = []

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.saved.append(checkpoint)


def offered(n: int) -> bytes:
    return orjson.dumps({"v": 1, "id": f"e{n}", "type": "call.offered", "room": "north",
                         "at": f"2026-11-20T10:{n:02d}:00Z", "call": f"c{n}", "line": "999"})


def worker_with(producer: FakeProducer) -> tuple[StreamWorker, FakeStore, PartitionState]:
    settings = Settings(checkpoint_seconds=0.001)
    now = to_us(datetime(2026, 11, 20, 12, tzinfo=UTC))
    worker = StreamWorker(settings, clock=lambda: now)
    store = FakeStore()
    worker.store, worker.checkpointing = store, True
    worker.producer = producer  # type: ignore[assignment]
    state = worker.partitions[0] = PartitionState(0)
    state.ready.set()
    return worker, store, state


async def apply(worker: StreamWorker, offset: int, value: bytes) -> bool:
    worker.last_flush = time.monotonic()  # the test flushes, not the message
    return await worker.handle(0, offset, b"north", value)


async def flushes(worker: StreamWorker, count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0.01)
        await worker.flush()
    await asyncio.sleep(0.1)  # the saves run in threads


def test_a_checkpoint_is_the_state_after_acknowledged_flushes() -> None:
    async def run() -> None:
        worker, store, _state = worker_with(FakeProducer())
        await apply(worker, 0, offered(1))
        await apply(worker, 1, offered(2))
        await flushes(worker, 3)
        assert store.saved and store.saved[-1].next_offset == 2
        # it names the newest message applied, for a rebuild to find in the events topic
        assert store.saved[-1].anchor_offset == 1
        assert store.saved[-1].anchor_digest == message_digest(0, offered(2))
        assert store.saved[-1].anchor_digest != message_digest(0, offered(1))
        engine = Engine(worker.settings)
        assert import_engine(engine, store.saved[-1].state, worker.fingerprint) == ["north"]
        assert engine.rooms["north"].events_total == {"call.offered": 2}
        assert worker.checkpoints_saved == len(store.saved)

    asyncio.run(run())


def test_no_checkpoint_while_a_dead_letter_waits_or_after_a_lost_send() -> None:
    async def run() -> None:
        worker, store, state = worker_with(FakeProducer())
        await apply(worker, 0, offered(1))
        await flushes(worker, 1)  # the first only sets when the first is due
        # a message whose dead letter waits for the next flush: no checkpoint before it is out
        acked: list[int] = []

        async def ack() -> None:
            acked.append(1)

        assert await apply(worker, 1, b'{"v": 1, "room": "north"}')
        worker.hold(ack)
        await flushes(worker, 1)
        assert not store.saved and acked == [1]
        await flushes(worker, 2)
        assert store.saved[-1].next_offset == 2
        # a send the broker did not take: the partition is not checkpointed again until rebuilt
        producer = worker.producer = FakeProducer(hold=True)  # type: ignore[assignment]
        await apply(worker, 2, offered(3))
        await worker.flush(force=True)  # its records and live state, sends left pending
        assert producer.futures
        producer.release(OSError("broker gone"))
        producer.hold = False
        await flushes(worker, 3)
        assert state.sends_lost
        # (one taken before those sends is right: what they carried is in it, not handed over)
        before = list(store.saved)
        await apply(worker, 3, offered(4))
        await flushes(worker, 3)
        assert store.saved == before
        assert before[-1].next_offset <= 3

    asyncio.run(run())


def test_no_store_no_checkpoints() -> None:
    assert not StreamWorker(Settings()).checkpointing
    assert not StreamWorker(Settings(checkpoint_seconds=0), store=FakeStore()).checkpointing
    store: Any = FakeStore()
    assert StreamWorker(Settings(), store=store).checkpointing


def test_checkpoints_are_spaced_to_their_share_of_the_loop() -> None:
    """After a checkpoint that paused the loop p seconds, the next waits p / share."""
    async def run(share: float) -> list[int]:
        settings = Settings(checkpoint_seconds=0.001, checkpoint_loop_share=share)
        now = to_us(datetime(2026, 11, 20, 12, tzinfo=UTC))
        worker = StreamWorker(settings, clock=lambda: now)
        store = FakeStore()
        worker.store, worker.checkpointing = store, True
        worker.producer = FakeProducer()  # type: ignore[assignment]
        for partition, room in ((0, "north"), (1, "south")):
            state = worker.partitions[partition] = PartitionState(partition)
            state.ready.set()
            value = offered(1).replace(b'"north"', f'"{room}"'.encode())
            worker.last_flush = time.monotonic()
            await worker.handle(partition, 0, room.encode(), value)
        await flushes(worker, 3)  # both due now; the first taken
        await asyncio.sleep(1.2)  # past the 1 s floor between two
        await flushes(worker, 2)
        return sorted({c.partition for c in store.saved})

    # a pause of at least a few microseconds over a millionth of the loop: many seconds
    assert asyncio.run(run(1e-6)) in ([0], [1])
    assert asyncio.run(run(1.0)) == [0, 1]


def test_no_checkpoint_while_another_partition_rebuilds() -> None:
    async def run() -> None:
        worker, store, _state = worker_with(FakeProducer())
        await apply(worker, 0, offered(1))
        rebuilding = worker.partitions[1] = PartitionState(1)  # not ready: replaying
        await flushes(worker, 3)
        assert not store.saved
        rebuilding.ready.set()
        await flushes(worker, 3)
        assert [c.partition for c in store.saved] == [0]

    asyncio.run(run())
