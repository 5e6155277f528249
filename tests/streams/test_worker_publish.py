"""The worker's publishing: record batches on the partitions ``send`` would choose, in order;
acknowledgements awaited one flush later (at once for dead letters); the history sink in a
thread of its own, in order, drained on stop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given
from hypothesis import strategies as st

from services.contract.settings import Settings
from services.figures.engine import DeadLetter, Output
from streams.worker import PartitionState, StreamWorker, murmur2

PARTITIONS = 8


class FakeProducer:
    """The part of AIOKafkaProducer the worker uses; batches are decoded as sent."""

    def __init__(self, batch_size: int = 1 << 20, hold: bool = False):
        self.batch_size = batch_size
        self.hold = hold  # leave acknowledgements pending until released
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.singles: list[tuple[str, bytes, bytes]] = []
        self.headers: list[list[tuple[str, bytes]]] = []  # of each single send
        self.futures: list[asyncio.Future[Any]] = []
        self.gate: asyncio.Event | None = None  # when set, send_batch waits for it once

    async def partitions_for(self, topic: str) -> set[int]:  # noqa: ARG002
        return set(range(PARTITIONS))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    def _future(self) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if not self.hold:
            future.set_result(None)
        self.futures.append(future)
        return future

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        assert batch.closed()
        records = [(r.key, r.value) for r in DefaultRecordBatch(bytes(batch._build()))]
        self.sent.append((topic, partition, records))
        return self._future()

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]] | None = None) -> Any:
        self.singles.append((topic, key, value))
        self.headers.append(headers or [])
        return self._future()

    async def stop(self) -> None:
        pass

    def release(self, error: BaseException | None = None) -> None:
        for future in self.futures:
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def by_partition(self, topic: str) -> dict[int, list[tuple[bytes, bytes]]]:
        out: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for sent_topic, partition, records in self.sent:
            if sent_topic == topic:
                out[partition].extend(records)
        return dict(out)


class FakeEngine:
    """Hands out the prepared outputs, one a flush."""

    def __init__(self, outputs: list[Output]):
        self.outputs = list(outputs)
        self.rooms: dict[str, Any] = {}

    def flush(self, rooms: Any = None) -> Output:  # noqa: ARG002 - the outputs are prepared
        return self.outputs.pop(0) if self.outputs else Output()


def interval(room: str, start: int, final: bool, offered: int) -> tuple[str, str, dict[str, Any]]:
    record = {"room": room, "line": "999", "interval_start": f"2026-11-20T{start:02d}:00:00Z",
              "final": final, "offered": offered}
    return "interval", f"{room}|999|{record['interval_start']}", record


def expected(topic_messages: list[tuple[bytes, bytes]]) -> dict[int, list[tuple[bytes, bytes]]]:
    """What AIOKafkaProducer.send would put on each partition, message by message."""
    partitioner = DefaultPartitioner()
    out: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for key, value in topic_messages:
        all_partitions = list(set(range(PARTITIONS)))
        out[partitioner(key, all_partitions, all_partitions)].append((key, value))
    return dict(out)


def worker_with(outputs: list[Output], producer: FakeProducer,
                store: Any = None) -> StreamWorker:
    worker = StreamWorker(Settings(), store=store)
    worker.engine = FakeEngine(outputs)  # type: ignore[assignment]
    worker.producer = producer  # type: ignore[assignment]
    return worker


def messages_of(outputs: list[Output]) -> list[tuple[bytes, bytes]]:
    return [(key.encode(), orjson.dumps({"kind": kind, "record": record}))
            for out in outputs for kind, key, record in out.records]


@given(st.binary(max_size=80))
def test_the_key_hash_is_aiokafkas_murmur2(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


async def test_records_go_where_send_would_put_them_in_order() -> None:
    rooms = [f"room-{i}" for i in range(12)]
    outputs = [Output([interval(room, hour, hour < 2, hour * 10 + i)
                       for i, room in enumerate(rooms) for hour in range(3)])
               for _ in range(3)]
    producer = FakeProducer()
    worker = worker_with(outputs, producer)
    for _ in outputs:
        await worker.flush()
    topic = worker.settings.topic_intervals
    assert producer.by_partition(topic) == expected(messages_of(outputs))
    # one batch a partition a flush, not a future a message
    assert len(producer.sent) <= 3 * PARTITIONS


async def test_a_full_batch_is_sent_and_the_partition_keeps_its_order() -> None:
    outputs = [Output([interval("north", hour % 24, False, n) for n, hour in enumerate(range(60))])]
    producer = FakeProducer(batch_size=600)
    worker = worker_with(outputs, producer)
    await worker.flush()
    topic = worker.settings.topic_intervals
    assert producer.by_partition(topic) == expected(messages_of(outputs))
    assert len(producer.sent) > PARTITIONS


async def test_dead_letters_are_batched_keyed_by_room() -> None:
    dead = [DeadLetter("schema", "bad", room, None, None, b"{}",
                       {"topic": "t", "partition": 0, "offset": n})
            for n, room in enumerate(["north", None, "south", "north"])]
    producer = FakeProducer()
    worker = worker_with([Output([], dead)], producer)
    await worker.flush()
    topic = worker.settings.topic_deadletter
    got = producer.by_partition(topic)
    keys = [key for records in got.values() for key, _ in records]
    assert sorted(keys) == sorted([b"north", b"", b"south", b"north"])
    north = [orjson.loads(v)["source"]["offset"] for records in got.values()
             for k, v in records if k == b"north"]
    assert north == [0, 3]


async def test_acknowledgements_are_awaited_at_the_next_flush() -> None:
    producer = FakeProducer(hold=True)
    worker = worker_with([Output([interval("north", 1, False, 1)]),
                          Output([interval("north", 1, False, 2)])], producer)
    await asyncio.wait_for(worker.flush(), 1)  # does not wait for its own acknowledgements
    assert worker.pending_sends
    sent = len(producer.sent)
    second = asyncio.ensure_future(worker.flush())
    await asyncio.sleep(0.05)
    assert not second.done()  # waits for the first flush's acknowledgements
    assert len(producer.sent) == sent  # before it sends anything more
    producer.release()
    await asyncio.wait_for(second, 1)
    assert len(producer.sent) > sent


async def test_a_flush_with_dead_letters_waits_for_its_acknowledgements() -> None:
    producer = FakeProducer(hold=True)
    dead = DeadLetter("schema", "bad", "north", None, None, b"{}", None)
    worker = worker_with([Output([interval("north", 1, False, 1)], [dead])], producer)
    flush = asyncio.ensure_future(worker.flush())
    await asyncio.sleep(0.05)
    assert not flush.done()
    producer.release()
    await asyncio.wait_for(flush, 1)
    assert not worker.pending_sends


async def test_unacknowledged_sends_show_the_broker_disconnected_not_raised() -> None:
    # what /metrics (pacesetter_worker_broker_connected) and /readyz report
    producer = FakeProducer(hold=True)
    worker = worker_with([Output([interval("north", 1, False, 1)])], producer)
    await worker.flush()
    producer.release(ConnectionError("broker gone"))
    await worker.flush(wait=True)
    assert worker.sends_failing
    assert await worker.broker_connected() is False


async def test_concurrent_flushes_queue_their_records_in_flush_order() -> None:
    producer = FakeProducer()
    first = Output([interval("north", 1, False, 1)])
    second = Output([interval("north", 1, True, 2)])
    worker = worker_with([first, second], producer)
    gate = producer.gate = asyncio.Event()  # the first flush stalls in send_batch
    one = asyncio.ensure_future(worker.flush())
    await asyncio.sleep(0.01)
    two = asyncio.ensure_future(worker.flush())
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.wait_for(asyncio.gather(one, two), 1)
    values = [orjson.loads(v)["record"]["offered"]
              for records in producer.by_partition(worker.settings.topic_intervals).values()
              for _k, v in records]
    assert values == [1, 2]


async def test_final_records_reach_the_store_in_order_off_the_event_loop(tmp_path) -> None:
    from services.history.store import HistoryStore

    class Recording(HistoryStore):
        threads: set[str] = set()

        def upsert_records(self, records):  # type: ignore[no-untyped-def]
            self.threads.add(threading.current_thread().name)
            return super().upsert_records(records)

    outputs = [Output([interval("north", hour, True, hour), interval("south", hour, False, 0),
                       ("attendance", f"north|grade:immediate|{hour}", {
                           "room": "north", "grade": "immediate", "final": True, "created": hour,
                           "interval_start": f"2026-11-20T{hour:02d}:00:00Z"})])
               for hour in range(6)]
    store = Recording.open(f"sqlite:///{tmp_path / 'h.db'}")
    worker = StreamWorker(Settings(data_dir=str(tmp_path)), store=store)
    worker.engine = FakeEngine(outputs)  # type: ignore[assignment]
    worker.producer = FakeProducer()  # type: ignore[assignment]
    for _ in outputs:
        await worker.flush()
    await worker.stop()  # waits for the sink
    assert [r["offered"] for r in store.intervals("north")] == list(range(6))
    assert store.intervals("south") == []  # never final: never stored
    assert [r["created"] for r in store.attendance("north")] == list(range(6))
    assert Recording.threads and threading.main_thread().name not in Recording.threads


def test_a_catching_up_room_publishes_its_records_each_second_a_live_one_at_every_flush(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.figures.kpis import iso
    from streams import worker as worker_module

    worker = StreamWorker(Settings())
    now_us = time.time_ns() // 1000

    def offered(room: str, n: int, at_us: int) -> bytes:
        return orjson.dumps({"v": 1, "id": f"e{n}", "type": "call.offered", "room": room,
                             "at": iso(at_us), "call": f"c{n}", "line": "101"})

    worker.engine.process(offered("old", 1, now_us - 3 * 86400 * 1_000_000), now_us)
    worker.engine.process(offered("new", 1, now_us - 1_000_000), now_us)
    assert not worker.engine.rooms["old"].live and worker.engine.rooms["new"].live
    clock = [1000.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])
    assert {r.name for r in worker._flush_due()} == {"old", "new"}
    clock[0] += 0.1
    assert {r.name for r in worker._flush_due()} == {"new"}  # old: published 0.1 s ago
    clock[0] += worker_module.CATCH_UP_FLUSH_SECONDS
    assert {r.name for r in worker._flush_due()} == {"old", "new"}
    # and what is not due stays in the room until it is: nothing is dropped
    worker.engine.process(offered("old", 2, now_us - 3 * 86400 * 1_000_000 + 1), now_us)
    clock[0] += 0.1
    out = worker.engine.flush(worker._flush_due())
    assert not any(key.startswith("old|") for _kind, key, _record in out.records)
    clock[0] += worker_module.CATCH_UP_FLUSH_SECONDS
    out = worker.engine.flush(worker._flush_due())
    old = [record for _kind, key, record in out.records if key.startswith("old|")]
    assert old and old[0]["offered"] == 2


def _offered(room: str, n: int, at_us: int, **extra: Any) -> bytes:
    from services.figures.kpis import iso

    return orjson.dumps({"v": 1, "id": f"e{n}", "type": "call.offered", "room": room,
                         "at": iso(at_us), "call": f"c{n}", "line": "101", **extra})

async def reassign(worker: StreamWorker, partitions: list[int]) -> None:
    """Revoke and assign back ``partitions``, then let the loop run what that started."""
    worker.on_revoked(partitions)
    worker.on_assigned(partitions)
    for _ in range(20):
        await asyncio.sleep(0)



def _ready_worker(producer: FakeProducer) -> StreamWorker:
    worker = StreamWorker(Settings())
    worker.producer = producer  # type: ignore[assignment]
    state = worker.partitions[0] = PartitionState(0)
    state.ready.set()
    worker.last_flush = time.monotonic() + 3600  # no flush inside handle: the test flushes
    return worker


async def test_a_message_with_dead_letters_is_acknowledged_only_once_they_are_published(
) -> None:
    producer = FakeProducer(hold=True)
    worker = _ready_worker(producer)
    now_us = time.time_ns() // 1000
    acked: list[int] = []

    async def ack(offset: int) -> None:
        acked.append(offset)

    assert await worker.handle(0, 0, b"north", _offered("north", 1, now_us)) is False
    bad = _offered("north", 2, now_us, call=5)  # a call id that is not a string
    assert await worker.handle(0, 1, b"north", bad) is True
    worker.hold(lambda: ack(1))
    # a catching-up room publishes its records each second; its dead letters go at once
    worker.records_sent["north"] = time.monotonic()
    worker.engine.rooms["north"].live = False
    flush = asyncio.ensure_future(worker.flush())
    await asyncio.sleep(0.05)
    assert not flush.done() and acked == []  # published, not yet acknowledged by the broker
    dead = producer.by_partition(worker.settings.topic_deadletter)
    assert [orjson.loads(v)["error"][:5] for records in dead.values() for _k, v in records] == [
        "call:"]
    assert not producer.by_partition(worker.settings.topic_intervals)  # records wait their turn
    producer.release()
    await asyncio.wait_for(flush, 1)
    assert acked == [1]
    assert not worker.held


async def test_a_message_whose_dead_letters_were_not_acknowledged_stays_unacknowledged(
) -> None:
    producer = FakeProducer(hold=True)
    worker = _ready_worker(producer)
    acked: list[int] = []

    async def ack() -> None:
        acked.append(1)

    assert await worker.handle(0, 0, b"north", b"{not json") is True
    worker.hold(ack)
    flush = asyncio.ensure_future(worker.flush())
    await asyncio.sleep(0.05)
    producer.release(ConnectionError("broker gone"))
    await asyncio.wait_for(flush, 1)
    assert acked == []  # its offset is not committed: the rebuild publishes them again
    assert worker.held_unacknowledged == 1  # so its partition is rebuilt, never kept


async def test_without_a_producer_nothing_is_published_so_nothing_is_acknowledged() -> None:
    worker = _ready_worker(FakeProducer())
    worker.producer = None  # before start() connected it, or after stop()
    acked: list[int] = []

    async def ack() -> None:
        acked.append(1)

    assert await worker.handle(0, 0, b"north", b"{not json") is True
    worker.hold(ack)
    await worker.flush()
    assert acked == []


class CommittedConsumer:
    """Stands in for the group consumer ``_resume`` asks for the committed offset."""

    committed_offset: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def committed(self, tp: Any) -> int | None:
        return self.committed_offset


@pytest.mark.parametrize(("committed", "unacknowledged", "kept"), [
    (40, 0, True),   # the group committed all it applied
    (25, 0, True),   # the commit before the revoke fell short: the rest is delivered again
    (25, 1, False),  # ... but dead letters were never taken: only a rebuild publishes them
    (55, 0, False),  # another worker moved it on
    (None, 0, False),
])
async def test_a_partition_assigned_back_is_kept_only_when_its_state_is_still_exact(
        monkeypatch: pytest.MonkeyPatch, committed: int | None, unacknowledged: int,
        kept: bool) -> None:
    import streams.worker

    monkeypatch.setattr(CommittedConsumer, "committed_offset", committed)
    monkeypatch.setattr(streams.worker, "AIOKafkaConsumer", CommittedConsumer)
    worker = _ready_worker(FakeProducer())
    worker.held_unacknowledged = unacknowledged
    rebuilt: list[int] = []

    async def rebuild(state: Any) -> None:
        rebuilt.append(state.partition)

    monkeypatch.setattr(worker, "_rebuild", rebuild)
    worker.partitions[0].applied_upto = 40
    worker.on_revoked([0])
    worker.on_assigned([0])  # resumes it in a task of its own
    state = worker.partitions[0]
    for _ in range(10):
        await asyncio.sleep(0)
    assert (worker.kept.get(0, 0), rebuilt) == ((1, []) if kept else (0, [0]))
    assert state.ready.is_set() is kept


class CountingConsumer(CommittedConsumer):
    """Counts the clients started and stopped; fails ``committed`` while ``failing``."""

    started = 0
    stopped = 0
    failing = False

    async def start(self) -> None:
        type(self).started += 1

    async def stop(self) -> None:
        type(self).stopped += 1

    async def committed(self, tp: Any) -> int | None:
        if self.failing:
            raise OSError("coordinator gone")
        return 40


async def test_partitions_assigned_back_together_share_one_client_asking_their_commits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.worker

    monkeypatch.setattr(streams.worker, "AIOKafkaConsumer", CountingConsumer)
    monkeypatch.setattr(CountingConsumer, "started", 0)
    monkeypatch.setattr(CountingConsumer, "stopped", 0)
    worker = _ready_worker(FakeProducer())
    monkeypatch.setattr(worker, "_rebuild", lambda state: asyncio.sleep(0))
    for partition in (1, 2, 3):
        worker.partitions[partition] = PartitionState(partition)
        worker.partitions[partition].ready.set()
    for state in worker.partitions.values():
        state.applied_upto = 40
    everything = sorted(worker.partitions)
    await reassign(worker, everything)
    assert all(state.ready.is_set() for state in worker.partitions.values())
    assert sum(worker.kept.values()) == len(everything)
    assert (CountingConsumer.started, CountingConsumer.stopped) == (1, 0)
    # a client that failed is closed; the next partition assigned back starts another
    monkeypatch.setattr(CountingConsumer, "failing", True)
    await reassign(worker, [0])
    assert (CountingConsumer.started, CountingConsumer.stopped) == (1, 1)
    monkeypatch.setattr(CountingConsumer, "failing", False)
    await reassign(worker, [1])
    assert CountingConsumer.started == 2 and worker.partitions[1].ready.is_set()


def _freshness_samples(worker: StreamWorker) -> dict[tuple[str, str], float]:
    """``(sample name, "stage|le") -> value`` of the freshness histogram the worker's /metrics
    serves."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from streams.observe import WorkerObserver

    text = generate_latest(WorkerObserver(worker).registry).decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "pacesetter_worker_freshness_seconds":
            for sample in family.samples:
                key = sample.labels["stage"] + "|" + sample.labels.get("le", "")
                out[(sample.name, key)] = sample.value
    return out


async def test_a_live_message_carries_and_counts_the_stages_of_the_oldest_event_it_shows(
) -> None:
    from services.contract.freshness import (
        HEADER_APPLIED,
        HEADER_FETCHED,
        HEADER_PRODUCED,
        HEADER_PUBLISHED,
    )
    from streams.worker import FLUSH_SECONDS

    producer = FakeProducer()
    worker = _ready_worker(producer)
    topic = worker.settings.topic_live
    now_us = time.time_ns() // 1000
    first_produced_ms = now_us // 1000 - 200  # produced 0.2 s before the worker got it
    await worker.handle(0, 0, b"north", _offered("north", 1, now_us), first_produced_ms)
    await worker.handle(0, 1, b"north", _offered("north", 2, now_us), now_us // 1000)
    await worker.flush()
    lives = [i for i, (t, _k, _v) in enumerate(producer.singles) if t == topic]
    assert len(lives) == 1
    headers = {name: int(value) for name, value in producer.headers[lives[0]]}
    # the times are those of the first event: the one that waited longest
    assert headers[HEADER_PRODUCED] == first_produced_ms * 1000
    assert (headers[HEADER_PRODUCED] <= headers[HEADER_FETCHED] <= headers[HEADER_APPLIED]
            <= headers[HEADER_PUBLISHED])
    metrics = _freshness_samples(worker)
    count = "pacesetter_worker_freshness_seconds_count"
    bucket = "pacesetter_worker_freshness_seconds_bucket"
    assert {stage: metrics[(count, stage + "|")] for stage in ("fetch", "apply", "publish")} == {
        "fetch": 1, "apply": 1, "publish": 1}
    assert metrics[(bucket, "fetch|0.1")] == 0 and metrics[(bucket, "fetch|+Inf")] == 1

    # a room that changed again publishes at the next flush, and is timed again
    await asyncio.sleep(FLUSH_SECONDS)
    await worker.handle(0, 2, b"north", _offered("north", 3, now_us), time.time_ns() // 1_000_000)
    await worker.flush()
    assert len([t for t, _k, _v in producer.singles if t == topic]) == 2
    metrics = _freshness_samples(worker)
    assert metrics[(count, "publish|")] == 2
    assert metrics[(bucket, "fetch|0.1")] == 1  # this one was received at once


async def test_the_flush_timer_skips_a_flush_the_agent_has_just_made() -> None:
    from streams.worker import FLUSH_SECONDS

    producer = FakeProducer()
    worker = _ready_worker(producer)
    topic = worker.settings.topic_live
    now_us = time.time_ns() // 1000
    await worker.handle(0, 0, b"north", _offered("north", 1, now_us), now_us // 1000)
    await worker.flush()  # as the agent does
    await worker.handle(0, 1, b"north", _offered("north", 2, now_us), now_us // 1000)
    await worker.flush_due()  # the timer, moments later: nothing
    assert len([t for t, _k, _v in producer.singles if t == topic]) == 1
    await asyncio.sleep(FLUSH_SECONDS)
    await worker.flush_due()  # a period later, with no message since: published
    assert len([t for t, _k, _v in producer.singles if t == topic]) == 2


def test_a_plan_shows_in_the_live_state_as_soon_as_a_room_that_was_catching_up_is_live(
        tmp_path: Any) -> None:
    from services.alerts.book import AlertBook
    from services.figures.kpis import interval_start, iso
    from services.figures.live import live_state
    from services.history.store import HistoryStore

    store = HistoryStore.open(f"sqlite:///{tmp_path / 'h.db'}")
    worker = StreamWorker(Settings(data_dir=str(tmp_path)), store=store)
    now_us = time.time_ns() // 1000
    day_us = 86400 * 1_000_000
    book = AlertBook("north")
    # catching up: a past interval after another, none planned
    for n in range(3):
        worker.engine.process(_offered("north", n, now_us - 3 * day_us + n * 3_600_000_000),
                              now_us)
        state, _ = live_state(worker.engine.rooms["north"], book, worker._plan_lookup())
        assert state["mode"] == "replay" and state["lines"]["101"]["staffing"] is None
    store.save_plan([{"room": "north", "line": "101", "interval_start": iso(
        interval_start(now_us)), "required_handlers": 4, "calls": 11, "calls_upper": 15}])
    worker.engine.process(_offered("north", 9, now_us), now_us)  # live now
    state, _ = live_state(worker.engine.rooms["north"], book, worker._plan_lookup())
    assert state["mode"] == "live"
    assert state["lines"]["101"]["staffing"] == {
        "required_handlers": 4, "forecast_calls": 11, "forecast_calls_upper": 15}


async def test_a_catching_up_room_publishes_its_live_state_once_a_second_a_live_one_each_flush(
) -> None:
    from streams.worker import CATCH_UP_FLUSH_SECONDS, FLUSH_SECONDS

    producer = FakeProducer()
    worker = _ready_worker(producer)
    topic = worker.settings.topic_live
    now_us = time.time_ns() // 1000
    old_us = now_us - 3 * 86400 * 1_000_000  # a backfill: days behind the clock
    await worker.handle(0, 0, b"old", _offered("old", 1, old_us), now_us // 1000)
    await worker.handle(0, 1, b"new", _offered("new", 1, now_us), now_us // 1000)
    await worker.flush()
    for n in range(2, 4):  # both change again; a flush period later only the live one shows
        await asyncio.sleep(FLUSH_SECONDS)
        await worker.handle(0, 2 * n - 2, b"old", _offered("old", n, old_us + n), now_us // 1000)
        await worker.handle(0, 2 * n - 1, b"new", _offered("new", n, now_us), now_us // 1000)
        await worker.flush()
    keys = [key for t, key, _v in producer.singles if t == topic]
    assert keys.count(b"new") == 3 and keys.count(b"old") == 1
    await asyncio.sleep(CATCH_UP_FLUSH_SECONDS)
    await worker.flush()  # what was held back is published, counting every event
    old = [orjson.loads(v) for t, key, v in producer.singles if t == topic and key == b"old"]
    assert len(old) == 2
    assert sum(old[-1]["totals"]["events"].values()) == 3


async def test_once_no_message_arrives_a_catching_up_room_publishes_what_it_held_back() -> None:
    producer = FakeProducer()
    worker = _ready_worker(producer)
    topic = worker.settings.topic_live
    now_us = time.time_ns() // 1000
    old_us = now_us - 3 * 86400 * 1_000_000  # a backfill: days behind the clock
    await worker.handle(0, 0, b"old", _offered("old", 1, old_us), now_us // 1000)
    await worker.flush()
    await worker.handle(0, 1, b"old", _offered("old", 2, old_us + 1), now_us // 1000)
    worker.last_flush -= 1  # the timer's turn: a message arrived since the last flush
    await worker.flush_due()
    old = [orjson.loads(v) for t, key, v in producer.singles if t == topic and key == b"old"]
    assert len(old) == 1  # held back: a room catching up shows its state once a second
    worker.last_flush -= 1  # the next turn: nothing arrived meanwhile, the backfill has ended
    await worker.flush_due()
    old = [orjson.loads(v) for t, key, v in producer.singles if t == topic and key == b"old"]
    assert len(old) == 2 and sum(old[-1]["totals"]["events"].values()) == 2
    records = [orjson.loads(v)["record"] for batch in producer.by_partition(
        worker.settings.topic_intervals).values() for _k, v in batch]
    assert records and records[-1]["offered"] == 2  # its records too
