"""The stream worker: owns the rooms of its partitions, rebuilds them, publishes what changes.

Why rebuild instead of changelog tables: on the embedded broker (tansu) Faust's changelog
recovery can stop short of the newest records, exactly-once is unavailable, and a per-event
changelog write cuts throughput to a third (ARCHITECTURE.md). The state of a room is a pure
function of its events in offset order, so when a partition is assigned the worker replays it
from the events topic (a room-week in seconds) and from then on applies each offset once.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.alerts.book import AlertBook
from services.contract.events import format_time
from services.contract.freshness import (
    HEADER_APPLIED,
    HEADER_FETCHED,
    HEADER_PRODUCED,
    HEADER_PUBLISHED,
    STAGES_WORKER,
    StageHistograms,
)
from services.contract.settings import Settings
from services.figures import checkpoint
from services.figures.engine import Engine, Output, Room
from services.figures.kpis import interval_start
from services.figures.live import Computed, PlanLookup, computed_records, live_state
from services.history.sink import HistorySink
from services.history.store import Checkpoint
from services.kafka.broker import ensure_topics
from services.kafka.clients import KafkaSecurity, security

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
# A room catching up (replay, backfill: its events are not fresh) publishes its records at
# most this often: each flush republishes every open interval an event touched, and most of
# them change again within the second. A live room publishes at every flush.
CATCH_UP_FLUSH_SECONDS = 1.0
# A room's live state is published at most this often. At 0.25 s this throttle alone put the
# p99 freshness (event produced -> dashboard) near 250 ms at 2,000 events/s; equal to
# FLUSH_SECONDS, a room that changed publishes at every flush, counted from the flush's start
# so that flush-to-flush jitter never skips one.
LIVE_MIN_SECONDS = FLUSH_SECONDS
STORE_CLOSE_SECONDS = 30.0  # at shutdown, how long to wait for the store to take the queue
PARTITION_CACHE = 200_000  # message keys whose partition is remembered
REBUILD_FETCH = 5000  # messages a rebuild takes from its consumer at a time
# how long a rebuild replays before it lets the loop serve the live partitions
REPLAY_SLICE_SECONDS = 0.02
# A catch-up that has not reached its offset by then (a broker that stopped answering) gives
# up and rebuilds the partition instead, rather than hold the partition forever.
CATCH_UP_SECONDS = 60.0
# How long a rebuild tries to fetch a checkpoint's newest message from the events topic
ANCHOR_SECONDS = 5.0
# Taking a checkpoint pauses the event loop (0.15-0.35 s per room-week of state, measured:
# 1.2-2.9 s for a partition of a national week, 4-8 rooms): after one, the next partition's
# waits at least this long, and long enough that checkpoints take at most
# ``checkpoint_loop_share`` of the loop's time (0.5 %: after a 2 s pause, 400 s), so that a big
# partition's pauses stay rare enough for the freshness p99 whatever the period asked for.
CHECKPOINT_SPACING_SECONDS = 1.0


_M = 0x5BD1E995  # murmur2's multiplier


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of a message key, as ``aiokafka.partitioner.murmur2`` computes it.

    Word by word (``struct``) instead of byte by byte: each interval, attendance and handler
    record of a new interval has a new key, and aiokafka's byte-by-byte hash of those keys
    took as much of the worker's time as publishing them when a day of events is replayed.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    for k in struct.unpack_from(f"<{length // 4}I", data):
        k = (k * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    rest = length & 3
    end = length & ~3
    if rest >= 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h = ((h ^ data[end]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def wall_us() -> int:
    """The wall clock in epoch microseconds."""
    return time.time_ns() // 1000


def _failure(future: asyncio.Future[Any]) -> BaseException | None:
    """What a finished send failed with, or None."""
    return asyncio.CancelledError() if future.cancelled() else future.exception()


def message_digest(timestamp_ms: int, value: bytes) -> str:
    """A message told apart from any other at its offset: its Kafka time and value's digest."""
    return f"{timestamp_ms}:{hashlib.blake2b(value, digest_size=16).hexdigest()}"


class PartitionState:
    """What the worker knows of one assigned events partition."""

    def __init__(self, partition: int):
        self.partition = partition
        self.ready = asyncio.Event()
        self.applied_upto = 0  # next offset to apply
        self.rooms: set[str] = set()
        # what /metrics shows of it (streams/observe.py)
        self.rebuild_messages = 0
        self.rebuild_started = time.monotonic()
        self.rebuild_ended: float | None = None
        # when the rebuild received its first message: start-up (topics checked, consumer
        # connected, offsets looked up) is told apart from the replay itself
        self.replay_started: float | None = None
        self.newest_event_ms = 0  # Kafka timestamp of the newest applied message
        # checkpoints (``StreamWorker._checkpoint``): when the next is due (monotonic), the
        # offset of the latest one saved, and the one the latest rebuild restored (None: a
        # full replay)
        self.checkpoint_due = 0.0
        self.checkpointed_upto: int | None = None
        self.restored_offset: int | None = None
        # a send failed since the rebuild: records published before may be missing from the
        # topics, and only a rebuild that replays what made them publishes them again, so no
        # checkpoint may say they are published
        self.sends_lost = False
        # The newest message applied, as (offset, Kafka timestamp, value): a checkpoint names
        # it (``message_digest``), and a rebuild restores the checkpoint only if the events
        # topic still holds that message at that offset. After a restore and before any newer
        # message, the checkpoint's own (offset, digest).
        self.anchor: tuple[int, int, bytes] | None = None
        self.anchor_restored: tuple[int, str] | None = None

    def rebuild_seconds(self) -> float:
        """How long the latest rebuild took, or has taken so far."""
        return (self.rebuild_ended or time.monotonic()) - self.rebuild_started


class StreamWorker:
    """The engine plus partition ownership, rebuilds and publishing."""

    def __init__(
        self,
        settings: Settings,
        store: Any = None,
        clock: Callable[[], int] = wall_us,
        group_id: str | None = None,
        freeze_gc: bool = False,
    ):
        self.settings = settings
        self.freeze_gc = freeze_gc
        self.engine = Engine(settings)
        self.store = store
        self.clock = clock
        self.group_id = group_id or settings.worker_id
        self.partitions: dict[int, PartitionState] = {}
        # Revoked in a rebalance still under way: their rooms are kept until it ends, so a
        # partition assigned back is resumed instead of rebuilt (``on_rebalanced``).
        self.suspended: dict[int, PartitionState] = {}
        self.room_partition: dict[str, int] = {}
        self.books: dict[str, AlertBook] = {}
        self.producer: AIOKafkaProducer | None = None
        # asks the group's committed offsets when partitions are assigned back (``_committed``)
        self.committed_client: AIOKafkaConsumer | None = None
        self.committed_lock = asyncio.Lock()
        self.pending_sends: list[asyncio.Future[Any]] = []
        # Acknowledgements of messages whose dead letters wait for a flush: a message is
        # acknowledged (and its offset committed) only once they are published, so the
        # rebuild after a crash knows which dead letters to publish again.
        self.held: list[Callable[[], Awaitable[Any]]] = []
        # Engine flushes are published in the order they were taken: a later record of a key
        # must never be queued before an earlier one.
        self.publish_lock = asyncio.Lock()
        self.last_flush = 0.0
        self.live_sent: dict[str, float] = {}
        self.records_sent: dict[str, float] = {}
        self.live_dirty: set[str] = set()
        # per room, the oldest event applied since its live state was last published:
        # (Kafka timestamp, received by the agent, applied), epoch microseconds
        self.fresh_pending: dict[str, tuple[int, int, int]] = {}
        self.freshness = StageHistograms(STAGES_WORKER)  # what /metrics shows of them
        self.plan_cache: dict[tuple[str, str, int], tuple[float, dict[str, Any] | None]] = {}
        self.plan_absent: dict[tuple[str, str], float] = {}  # rooms catching up: no plan since
        # plan look-ups from the event loop, one at a time
        self.store_lock = threading.Lock()
        # The history sink writes final records and alert episodes from a thread of its own,
        # in the order they were published, queueing them while the store is down.
        self.history = (HistorySink(store, Path(settings.data_dir) / "history-spool")
                        if store is not None else None)
        self.partition_cache: dict[tuple[str, bytes], int] = {}
        self.partition_counts: dict[str, int] = {}
        self.kafka: KafkaSecurity = security(settings)  # how every client here connects
        # what /metrics shows (streams/observe.py); counts only ever grow
        self.rebuilds: dict[int, int] = {}
        self.kept: dict[int, int] = {}  # partitions assigned back and resumed, not rebuilt
        self.events_applied = 0
        self.applied_at_flush = 0  # events_applied when the latest flush started
        self.rebuild_messages_total = 0
        self.dead_letters_by_reason: dict[str, int] = {}
        self.sends_failing = False
        # messages whose dead letters the broker did not take: only a rebuild publishes them
        # again, so a partition assigned back is not kept on a commit short of what it applied
        self.held_unacknowledged = 0
        # the end offset of an events partition as the group consumer last saw it (the
        # runner points this at Faust's consumer)
        self.highwater: Callable[[int], int | None] = lambda _partition: None
        # Checkpoints of each partition's rooms in the history store: a rebuild restores the
        # latest and replays only what came after it (services/figures/checkpoint.py).
        self.checkpointing = (settings.checkpoint_seconds > 0 and store is not None
                              and hasattr(store, "save_checkpoint"))
        self.fingerprint = checkpoint.fingerprint(settings)
        self.checkpoint_writing: set[int] = set()
        self.checkpoint_not_before = 0.0  # monotonic: no checkpoint is taken before then
        # what /metrics shows of them; counts only ever grow
        self.checkpoints_saved = 0
        self.checkpoints_failed = 0
        self.checkpoints_restored = 0
        self.checkpoints_refused = 0
        self.checkpoint_pause_seconds = 0.0  # the event loop's pause taking the latest
        self.checkpoint_bytes = 0  # the size of the latest saved

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect the producer."""
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_list,
            linger_ms=5,
            max_batch_size=1 << 20,
            max_request_size=8 << 20,
            acks="all",
            **self.kafka.aiokafka(),
        )
        await self.producer.start()

    async def broker_connected(self) -> bool:
        """Whether the broker answers the producer now and took its latest sends."""
        producer = self.producer
        if producer is None or self.sends_failing:
            return False
        client = producer.client
        nodes = [broker.nodeId for broker in client.cluster.brokers()]
        try:
            for node in nodes:
                if await asyncio.wait_for(client.ready(node), 2.0):
                    return True
        except (TimeoutError, OSError, KafkaError):
            pass
        return False

    async def stop(self) -> None:
        """Flush, wait for every acknowledgement and the history sink, and close."""
        if self.producer is not None:
            try:
                await self.flush(force=True, wait=True)
            finally:
                await self.producer.stop()
                self.producer = None
        if self.committed_client is not None:
            client, self.committed_client = self.committed_client, None
            await client.stop()
        if self.history is not None:
            await asyncio.to_thread(self.history.close, STORE_CLOSE_SECONDS)

    # ------------------------------------------------------ partition churn

    def on_assigned(self, partitions: list[int]) -> None:
        """Resume the partitions assigned back; start rebuilding the newly assigned ones."""
        for partition in partitions:
            if partition in self.partitions:
                continue
            state = self.suspended.pop(partition, None)
            if state is not None:
                state.ready.clear()  # until the committed offset says it is still exact
                self.partitions[partition] = state
                asyncio.ensure_future(self._resume(state))
            else:
                state = self.partitions[partition] = PartitionState(partition)
                asyncio.ensure_future(self._rebuild(state))

    def on_revoked(self, partitions: list[int]) -> None:
        """Stop applying these partitions; keep their rooms until the rebalance ends.

        An eager rebalance revokes every partition and then assigns most of them back:
        dropping and rebuilding them all would freeze every room's figures for the
        length of a rebuild, on every deploy.
        """
        for partition in partitions:
            state = self.partitions.pop(partition, None)
            if state is not None:
                self.suspended[partition] = state

    def on_rebalanced(self, owned: list[int]) -> None:
        """The rebalance is over: drop what is not owned any more, start what is new."""
        keep = set(owned)
        for partition in [p for p in self.partitions if p not in keep]:
            self._drop(self.partitions.pop(partition))
        for partition in [p for p in self.suspended if p not in keep]:
            self._drop(self.suspended.pop(partition))
        self.on_assigned(sorted(keep - set(self.partitions)))

    def _drop(self, state: PartitionState) -> None:
        """Forget the rooms of a partition this worker no longer owns."""
        for room in state.rooms:
            self.engine.rooms.pop(room, None)
            self.books.pop(room, None)
            self.room_partition.pop(room, None)
        log.info("partition %d revoked: dropped %d rooms", state.partition, len(state.rooms))
        state.rooms = set()
        if self.freeze_gc:
            gc.unfreeze()  # let the collector find the dropped rooms' cycles

    async def _resume(self, state: PartitionState) -> None:
        """Go on with a partition assigned back, if no one else applied anything of it since.

        Its state is exact when what it applied is what the group committed (Faust commits
        before it revokes). A commit short of what it applied (a revoke while the group was
        already rebalancing, under a steady feed) leaves it exact too: no one else owned the
        partition in between (a partition not assigned back is dropped when the rebalance
        ends), and the messages delivered again below ``applied_upto`` are skipped. Otherwise
        (another worker moved it on, acknowledgements are held for dead letters still
        waiting, or some were never acknowledged) it is rebuilt.
        """
        committed: int | None = None
        tp = TopicPartition(self.settings.topic_events, state.partition)
        try:
            committed = await self._committed(tp)
        except Exception as exc:  # noqa: BLE001 - unknown: rebuild, which is always exact
            log.warning("partition %d: committed offset unknown (%s)", state.partition, exc)
        if self.partitions.get(state.partition) is not state:
            return  # revoked again meanwhile
        if committed is not None and (committed == state.applied_upto or (
                committed < state.applied_upto and not self.held_unacknowledged
                and not self.engine.dead_letters_waiting(state.rooms))):
            self.kept[state.partition] = self.kept.get(state.partition, 0) + 1
            state.ready.set()
            log.info("partition %d kept: %d rooms at offset %d", state.partition,
                     len(state.rooms), committed)
            return
        self._drop(state)
        state.applied_upto = 0
        state.newest_event_ms = 0
        await self._rebuild(state)

    async def _committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of a partition, asked of the broker now.

        One client, started at the first resume and kept: every partition of a rebalance is
        resumed at once, and a client started for each (connection, metadata, coordinator
        look-up: a second or more) held their rooms back that long. One that failed is closed,
        and the next resume starts another.
        """
        async with self.committed_lock:
            consumer = self.committed_client
            if consumer is None:
                consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_list,
                                            group_id=self.group_id, enable_auto_commit=False,
                                            **self.kafka.aiokafka())
                try:
                    await consumer.start()
                except BaseException:
                    await consumer.stop()
                    raise
                self.committed_client = consumer
            try:
                return await consumer.committed(tp)
            except BaseException:
                self.committed_client = None
                await consumer.stop()
                raise

    async def _rebuild(self, state: PartitionState) -> None:
        """Replay the partition into a fresh engine: from its checkpoint on, else from the start.

        A checkpoint at offset C is the state of the partition's rooms after every message
        below C, taken when everything published before it was acknowledged and no dead letter
        waited (``_checkpoint``): the records and dead letters of the messages below C are on
        their topics, and the records the state had not handed over yet are in it and are
        handed over by the flushes below. So the replay starts at C and publishes what it
        hands over, as a full replay does; the committed offset still says which dead letters
        to publish again:

        - C <= committed: the messages from C to the committed offset were acknowledged, so
          their dead letters were published (``hold``); as in a full replay, what the replay
          hands over up to the committed offset is records only, their dead letters are not
          repeated, and from the committed offset on they are.
        - C > committed: the state held no dead letter waiting, and nothing says the dead
          letters of the messages from C on were published (their commit may not have come),
          so every dead letter the replay hands over is published again. The messages from the
          committed offset to C, delivered again to the agent, are skipped (``applied_upto``):
          their records and dead letters were published and acknowledged before C was taken.
        """
        started = state.rebuild_started = time.monotonic()
        state.replay_started = None
        state.restored_offset = None
        state.sends_lost = False  # everything of the partition is published again below
        replay_cpu = time.process_time()
        self.rebuilds[state.partition] = self.rebuilds.get(state.partition, 0) + 1
        tp = TopicPartition(self.settings.topic_events, state.partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_list,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=16 << 20,
            **self.kafka.aiokafka(),
        )
        engine = Engine(self.settings)
        committed = 0
        count = 0
        restored: int | None = None
        newest: Any = None  # the newest message replayed
        restore_started = started
        restore_seconds = 0.0
        # What replaying the committed offsets produced: their dead letters were published
        # before those offsets were committed (``hold``); the records are published again.
        published: Output | None = None
        try:
            # After a broker restart (the embedded broker keeps nothing) the topics this
            # worker writes to may be gone; a rebalance is the moment to put them back.
            await asyncio.to_thread(self._ensure_topics)
            await consumer.start()
            consumer.assign([tp])
            try:
                committed = await consumer.committed(tp) or 0
            except Exception as exc:  # noqa: BLE001 - only decides which dead letters repeat
                log.warning("partition %d: committed offset unknown (%s)", state.partition, exc)
            restore_started = time.monotonic()
            restored = await self._restore(engine, state, consumer, tp)
            restore_seconds = time.monotonic() - restore_started
            if restored is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, restored)
                state.restored_offset = restored
                if restored > committed:
                    published = Output()  # every dead letter from here on is repeated
            end = (await consumer.end_offsets([tp]))[tp]
            last = -1
            idle = 0
            position = 0
            # The rebuild must read at least to the committed offset (the agent delivers only
            # what comes after it) and should read to the end, so that the partition is
            # current when it goes live; what it does not read reaches the agent and
            # ``_catch_up``. tansu's end offset can be the base offset of the last record
            # batch, one batch short: so once the position reaches it, the end offset is read
            # again. A position past it means that last batch was read whole (fetches return
            # whole batches, and the consumer handed over all it had: fewer messages than
            # asked for); a position at it, one empty fetch from there proves nothing more is
            # there. No idle wait otherwise. The position, not the last offset read, says how
            # far the partition is read: compaction and transaction markers leave offsets
            # that no message has. Under a steady feed, once past the end offset, a second is
            # enough.
            reached_at: float | None = None
            # the position is the end offset, read again: an empty fetch ends. A checkpoint at
            # the end offset is such a position already (the usual case of a takeover by a
            # worker of the same group: one empty fetch proves the rest, not two).
            at_end = restored is not None and restored == end
            while True:
                batches = await consumer.getmany(tp, timeout_ms=200, max_records=REBUILD_FETCH)
                messages = batches.get(tp, [])
                position = await consumer.position(tp)
                if messages and restored is not None and messages[0].offset < restored:
                    # The consumer went back before the checkpoint (its offset is out of the
                    # partition's range: a topic made again): the state does not fit it.
                    log.warning("partition %d: checkpoint at offset %d is beyond the events "
                                "topic (first offset %d); replaying it all", state.partition,
                                restored, messages[0].offset)
                    self.checkpoints_refused += 1
                    engine = Engine(self.settings)
                    restored = state.restored_offset = None
                    state.anchor_restored = None
                    published = None
                    await consumer.seek_to_beginning(tp)
                    continue
                if messages:
                    idle = 0
                    if state.replay_started is None:
                        state.replay_started = time.monotonic()
                        replay_cpu = time.process_time()
                    sliced = time.monotonic()
                    for message in messages:
                        if time.monotonic() - sliced >= REPLAY_SLICE_SECONDS:
                            # A fetch can hold a million events, seconds of work: the rooms
                            # this worker already serves (their partitions did not move) must
                            # not wait that long for the loop. The rebuild's engine is its own.
                            await asyncio.sleep(0)
                            sliced = time.monotonic()
                        if published is None and message.offset >= committed:
                            published = engine.flush()
                        when = (message.timestamp or 0) * 1000 or self.clock()
                        engine.process(message.value or b"", when, message.key,
                                       self._source(tp.partition, message.offset))
                        last = message.offset
                        newest = message
                        count += 1
                        state.newest_event_ms = max(state.newest_event_ms,
                                                    message.timestamp or 0)
                    state.rebuild_messages = count
                    self.rebuild_messages_total += len(messages)
                else:
                    idle += 1
                    if idle > 50:
                        break
                if position < committed or position < end or len(messages) >= REBUILD_FETCH:
                    continue
                if at_end and not messages:
                    break  # an empty fetch at the end offset: all of it is read
                reached_at = reached_at or time.monotonic()
                if time.monotonic() - reached_at >= 1.0:
                    break  # a steady feed: the agent takes over from here
                end = (await consumer.end_offsets([tp]))[tp]
                if position > end:
                    break  # past the base offset of the last batch: all of it is read
                at_end = position == end
        finally:
            await consumer.stop()
        state.applied_upto = max(last + 1, position)
        state.anchor = None if newest is None else (
            newest.offset, newest.timestamp or 0, newest.value or b"")
        rebuilt = engine.flush()
        if published is None:  # every offset was committed
            published, rebuilt = rebuilt, Output(rebuilt.records)
        latest: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for record in published.records + rebuilt.records:
            latest[record[1]] = record
        # The dead letters of offsets from the committed one on (orphans found then included,
        # which name no offset) may not have been published before the restart.
        repeat = rebuilt.dead_letters
        async with self.publish_lock:  # no flush of these rooms is queued before this
            for name, room in engine.rooms.items():
                self.engine.rooms[name] = room
                self.room_partition[name] = state.partition
                state.rooms.add(name)
                self.books.setdefault(name, AlertBook(name))
                self.live_dirty.add(name)
            await self._publish(Output(list(latest.values()), repeat))
            if repeat:  # before the agent acknowledges the offsets they came from again
                sends, self.pending_sends = self.pending_sends, []
                await self._acknowledged(sends)
        if self.freeze_gc:
            # The rebuilt rooms live as long as the partition: keep the cyclic collector
            # from walking them again and again (unfrozen when a partition is revoked).
            gc.collect(1)
            gc.freeze()
        state.ready.set()
        ended = state.rebuild_ended = time.monotonic()
        replay = state.replay_started or ended
        # the process's CPU seconds (every partition's and thread's) at the first message
        # and at the end: what the replay cost on a machine shared with other work
        log.info(
            "partition %d rebuilt: %d messages, %d rooms in %.2f s (committed offset %d; "
            "start-up %.3f s, then replay and publication %.3f s; process CPU %.3f to %.3f s)"
            "%s", state.partition, count, len(state.rooms), ended - started, committed,
            replay - started, ended - replay, replay_cpu, time.process_time(),
            "; full replay" if restored is None else
            f"; from the checkpoint at offset {restored}: start-up {restore_started - started:.3f}"
            f" s, then read and restored in {restore_seconds:.3f} s, done "
            f"{ended - restore_started:.3f} s after the read began",
        )

    async def _restore(self, engine: Engine, state: PartitionState,
                       consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
        """Import the partition's checkpoint into ``engine``; its offset, or None (replay all).

        No store, the store down, no checkpoint, one of another format or settings, or one the
        events topic no longer bears out (``_anchored``): the rebuild replays everything, as
        it always could. ``consumer`` (the rebuild's, assigned ``tp``) is left anywhere.
        """
        partition = state.partition
        if not self.checkpointing:
            return None
        try:
            found = await asyncio.to_thread(self.store.checkpoint, self.settings.topic_events,
                                            partition)
        except Exception as exc:  # noqa: BLE001 - the store down: replay, which is exact
            log.warning("partition %d: no checkpoint read (%s); replaying it all", partition, exc)
            return None
        if found is None:
            return None
        rooms = None
        fits = (found.format_version == checkpoint.FORMAT_VERSION
                and found.fingerprint == self.fingerprint)
        anchored = not fits or await self._anchored(consumer, tp, found)
        if fits and anchored:
            # a fresh engine the event loop does not use: imported in a thread
            rooms = await asyncio.to_thread(checkpoint.import_engine, engine, found.state,
                                            self.fingerprint)
        if rooms is None:
            self.checkpoints_refused += 1
            log.info("partition %d: checkpoint at offset %d refused (format %d, settings %s; "
                     "this worker's: %d, %s; %s); replaying it all", partition,
                     found.next_offset, found.format_version, found.fingerprint,
                     checkpoint.FORMAT_VERSION, self.fingerprint,
                     "its newest message is in the events topic" if anchored else
                     f"the events topic holds no such message at offset {found.anchor_offset}")
            return None
        self.checkpoints_restored += 1
        state.anchor_restored = (found.anchor_offset, found.anchor_digest)
        return found.next_offset

    async def _anchored(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                        found: Checkpoint) -> bool:
        """Whether the events topic holds the checkpoint's newest message, as it was.

        Offsets alone do not say it is the same topic: one deleted and made again under the
        same name (an embedded broker restarted, a cluster rebuilt, events published again)
        may have grown past the checkpoint's offset with other messages, to which the state
        would be silently wrong. A message trimmed by retention, or not fetched within
        ``ANCHOR_SECONDS``, proves nothing either: a full replay is always exact.
        """
        consumer.seek(tp, found.anchor_offset)
        deadline = time.monotonic() + ANCHOR_SECONDS
        while time.monotonic() < deadline:
            batches = await consumer.getmany(tp, timeout_ms=200, max_records=1)
            for message in batches.get(tp, []):
                return bool(message.offset == found.anchor_offset and message_digest(
                    message.timestamp or 0, message.value or b"") == found.anchor_digest)
        return False

    def _ensure_topics(self) -> None:
        settings = self.settings
        try:
            ensure_topics(settings.bootstrap_servers,
                          [settings.topic_events, settings.topic_intervals, settings.topic_live,
                           settings.topic_alerts, settings.topic_deadletter],
                          settings.partitions, settings.replication_factor,
                          settings.output_topic_configs(), settings=settings)
        except Exception as exc:  # noqa: BLE001 - the rebuild reports the outage if it persists
            log.warning("could not check the topics at %s: %s", settings.bootstrap_servers, exc)

    def _source(self, partition: int, offset: int) -> dict[str, Any]:
        return {"topic": self.settings.topic_events, "partition": partition, "offset": offset}

    # -------------------------------------------------------------- events

    async def handle(self, partition: int, offset: int, key: bytes | None, value: bytes,
                     timestamp_ms: int = 0) -> bool:
        """Apply one message of the events topic exactly once.

        ``timestamp_ms`` is the message's Kafka timestamp: the worker's lag in seconds.

        Returns:
            True when the message left dead letters for the next flush: acknowledge it
            through :meth:`hold`, once they are published. False: acknowledge it now.
        """
        received_us = wall_us()
        state = self.partitions.get(partition)
        if state is None:
            self.on_assigned([partition])
            state = self.partitions[partition]
        if not state.ready.is_set():
            await state.ready.wait()
        if offset < state.applied_upto:
            return False  # already applied by the rebuild
        caught: set[str] = set()
        if offset > state.applied_upto:
            try:
                caught = await self._catch_up(state, offset)
            except TimeoutError:
                log.warning("partition %d: catching up to offset %d took over %g s; "
                            "rebuilding it", partition, offset, CATCH_UP_SECONDS)
                self.on_revoked([partition])
                self.on_assigned([partition])
                state = self.partitions[partition]
                await state.ready.wait()
                if offset < state.applied_upto:
                    return False
                caught = await self._catch_up(state, offset)
        touched = self.engine.process(value, self.clock(), key, self._source(partition, offset))
        state.applied_upto = offset + 1
        state.anchor = (offset, timestamp_ms, value)
        self.events_applied += 1
        state.newest_event_ms = max(state.newest_event_ms, timestamp_ms)
        for room in touched:
            if room not in self.room_partition:
                self.room_partition[room] = partition
                state.rooms.add(room)
                self.books[room] = AlertBook(room)
        self.live_dirty |= touched
        self._note_fresh(touched, timestamp_ms, received_us)
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            await self.flush()
        return self.engine.dead_letters_waiting(touched | caught if caught else touched)

    def _note_fresh(self, touched: set[str], produced_ms: int, received_us: int) -> None:
        """Remember the times of the first event applied to each room since it was published."""
        pending = self.fresh_pending
        applied_us = 0
        for room in touched:
            if room not in pending:
                applied_us = applied_us or wall_us()
                pending[room] = (produced_ms * 1000, received_us, applied_us)

    def hold(self, ack: Callable[[], Awaitable[Any]]) -> None:
        """Acknowledge a message (``ack``) once the next flush has published its dead letters."""
        self.held.append(ack)

    async def _catch_up(self, state: PartitionState, offset: int) -> set[str]:
        """Apply the offsets between what the rebuild saw and what the agent delivers.

        Follows the consumer's position: offsets with no message (compaction, transaction
        markers) are passed over, never waited for.

        Returns:
            The rooms those offsets touched.

        Raises:
            TimeoutError: ``offset`` not reached within ``CATCH_UP_SECONDS``.
        """
        deadline = time.monotonic() + CATCH_UP_SECONDS
        caught: set[str] = set()
        tp = TopicPartition(self.settings.topic_events, state.partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_list,
                                    enable_auto_commit=False, fetch_max_wait_ms=50,
                                    **self.kafka.aiokafka())
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, state.applied_upto)
            while state.applied_upto < offset:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"offset {offset} not reached")
                batches = await consumer.getmany(tp, timeout_ms=500, max_records=5000)
                for message in batches.get(tp, []):
                    if message.offset >= offset:
                        state.applied_upto = offset  # what lies between has no message
                        break
                    if message.offset < state.applied_upto:
                        continue
                    touched = self.engine.process(
                        message.value or b"", self.clock(), message.key,
                        self._source(state.partition, message.offset))
                    state.applied_upto = message.offset + 1
                    state.anchor = (message.offset, message.timestamp or 0, message.value or b"")
                    self.events_applied += 1
                    state.newest_event_ms = max(state.newest_event_ms, message.timestamp or 0)
                    self.live_dirty |= touched
                    caught |= touched
                    for room in touched:
                        state.rooms.add(room)
                        self.room_partition.setdefault(room, state.partition)
                        self.books.setdefault(room, AlertBook(room))
                if await consumer.position(tp) >= offset:  # the rest has no message
                    state.applied_upto = max(state.applied_upto, offset)
        finally:
            await consumer.stop()
        return caught

    # ------------------------------------------------------------ publishing

    async def tick(self) -> None:
        """Wall-clock duties: close intervals of live rooms, refresh waits, publish."""
        now = self.clock()
        self.engine.tick(now)
        for room in self.engine.rooms.values():
            if room.live:
                room.refresh_current()
        await self.flush(force=True)

    async def flush_due(self) -> None:
        """The flush timer's flush: skipped when the agent flushed less than half a period ago.

        The agent flushes once ``FLUSH_SECONDS`` have passed since the last flush and the timer
        runs on its own period: under a steady feed a third of all flushes came a few
        milliseconds after another, each computing again every open interval record events
        had touched. The timer is for rooms no message arrives for, which it still flushes.

        No message applied since the latest flush: the worker has applied all it was given, so
        what rooms catching up held back (their records and live state go out once a second)
        goes out now (``settle``): a backfill that ends shows its last figures within a timer
        period, not up to a second later. While messages flow, the cadence stands.
        """
        idle = self.events_applied == self.applied_at_flush
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS / 2:
            await self.flush(settle=idle)
        elif idle and self.live_dirty:
            await self.flush(settle=True)

    async def flush(self, force: bool = False, wait: bool = False,
                    settle: bool = False) -> None:
        """Publish changed records, dead letters, live state and alert transitions.

        ``force`` publishes every room's live state; ``settle`` every changed room's records
        and live state, a room catching up too (``flush_due``). What a flush sends is
        acknowledged by the time the next flush starts (100 ms later), so the next flush checks
        it instead of this one waiting for a broker round trip while the agent stands still;
        a flush that published dead letters, or one asked to ``wait``, waits for its own as
        before, and then acknowledges the messages those dead letters came from (:meth:`hold`).
        """
        self.last_flush = time.monotonic()
        self.applied_at_flush = self.events_applied
        async with self.publish_lock:
            earlier, self.pending_sends = self.pending_sends, []
            # first: while the broker is down, sends fail here instead of piling up
            published = await self._acknowledged(earlier)
            # taken together, with no await between: every held message's dead letters are
            # in this flush (the engine hands over all rooms' dead letters at every flush)
            held, self.held = self.held, []
            if published and not held and self.checkpointing:
                # everything handed over before is on its topics, nothing waits for a dead
                # letter: the rooms' state now is a checkpoint (what it has not handed over
                # yet is in it)
                self._checkpoint()
            out = self.engine.flush(None if force or wait or settle else self._flush_due())
            # the open interval records just made, which live states show too: taken before
            # any await, while no other event can change the rooms
            computed = computed_records(self.engine.rooms, out.records)
            await self._publish(out)
            await self._publish_live(force, computed, settle)
            if wait or out.dead_letters or held:
                sends, self.pending_sends = self.pending_sends, []
                # (no producer yet or any more: nothing was published, nothing acknowledged)
                if await self._acknowledged(sends) and self.producer is not None:
                    for ack in held:
                        await ack()
                elif held and self.producer is not None:
                    self.held_unacknowledged += len(held)
                    log.warning("%d messages left unacknowledged: their dead letters are "
                                "published again when their partition is rebuilt", len(held))

    def _checkpoint(self) -> None:
        """Take the state of the partition whose checkpoint is most overdue; save it in a thread.

        Called by a flush once everything handed over before is acknowledged and no message
        waits for its dead letters. One partition at a time, spaced
        (``CHECKPOINT_SPACING_SECONDS``), so taking them (on the event loop, where no event
        changes the rooms meanwhile) pauses the loop for one partition at most, now and then;
        encoding and writing run in a thread.
        """
        now = time.monotonic()
        if now < self.checkpoint_not_before:
            return
        if self.checkpoint_writing or any(
                not state.ready.is_set() for state in self.partitions.values()):
            # One copy of a partition's state at a time, and none while a rebuild replays:
            # each copy is memory of its own on top of the rooms (a national week's rebuild
            # peaked at 2,041 MB with checkpoints of rebuilt partitions taken meanwhile, 1,697
            # MB without; 2,135 MB with them taken back to back once all were ready).
            return
        due = [state for state in self.partitions.values()
               if state.ready.is_set() and state.applied_upto and not state.sends_lost
               and now >= state.checkpoint_due and state.applied_upto != state.checkpointed_upto]
        if not due:
            return
        state = min(due, key=lambda s: s.checkpoint_due)
        if self.held_unacknowledged or self.engine.dead_letters_waiting(state.rooms):
            return
        anchor = state.anchor
        restored_anchor = state.anchor_restored
        if anchor is None and restored_anchor is None:
            return  # nothing applied that a rebuild could check the topic against
        if not state.checkpoint_due:  # the first since the rebuild: one period after it
            state.checkpoint_due = now + self.settings.checkpoint_seconds
            return
        taken_at = time.perf_counter()
        snapshot = checkpoint.take_state(self.engine, self.fingerprint, sorted(state.rooms))
        self.checkpoint_pause_seconds = time.perf_counter() - taken_at
        state.checkpoint_due = now + self.settings.checkpoint_seconds
        self.checkpoint_not_before = now + max(
            CHECKPOINT_SPACING_SECONDS,
            self.checkpoint_pause_seconds / self.settings.checkpoint_loop_share)
        self.checkpoint_writing.add(state.partition)
        asyncio.ensure_future(self._save_checkpoint(state, snapshot, state.applied_upto,
                                                    anchor, restored_anchor))

    async def _save_checkpoint(self, state: PartitionState, snapshot: checkpoint.Snapshot,
                               offset: int, anchor: tuple[int, int, bytes] | None,
                               restored_anchor: tuple[int, str] | None) -> None:
        """Encode and save a partition's checkpoint, away from the event loop."""
        started = time.monotonic()
        try:
            if anchor is not None:
                anchor_offset, digest = anchor[0], await asyncio.to_thread(
                    message_digest, anchor[1], anchor[2])
            else:
                assert restored_anchor is not None  # (_checkpoint takes none without either)
                anchor_offset, digest = restored_anchor
            blob = await asyncio.to_thread(checkpoint.encode, snapshot)
            await asyncio.to_thread(self.store.save_checkpoint, Checkpoint(
                self.settings.topic_events, state.partition, offset,
                format_time(datetime.now(UTC)), checkpoint.FORMAT_VERSION, self.fingerprint,
                blob, anchor_offset, digest))
        except Exception as exc:  # noqa: BLE001 - the store down: the next one may succeed
            self.checkpoints_failed += 1
            log.warning("partition %d: checkpoint at offset %d not saved (%s)",
                        state.partition, offset, exc)
            return
        finally:
            self.checkpoint_writing.discard(state.partition)
        self.checkpoints_saved += 1
        self.checkpoint_bytes = len(blob)
        state.checkpointed_upto = offset
        log.info("partition %d: checkpoint at offset %d saved (%d rooms, %.1f MB; the event "
                 "loop paused %.3f s to take it, %.3f s to encode and write)", state.partition,
                 offset, len(snapshot[3]), len(blob) / 1e6, self.checkpoint_pause_seconds,
                 time.monotonic() - started)

    def _flush_due(self) -> list[Room]:
        """The rooms whose records to publish now: live ones, and catching-up ones each second."""
        now = time.monotonic()
        sent = self.records_sent
        due = []
        for name, room in self.engine.rooms.items():
            if room.live or now - sent.get(name, 0.0) >= CATCH_UP_FLUSH_SECONDS:
                sent[name] = now
                due.append(room)
        return due

    async def _acknowledged(self, sends: list[asyncio.Future[Any]]) -> bool:
        """Wait for the broker's answers to ``sends``; log what failed; True if none did."""
        if not sends:
            return True
        if not all(f.done() for f in sends):  # as a rule they are: no need to yield
            await asyncio.wait(sends)
        failed = [e for e in map(_failure, sends) if e is not None]
        self.sends_failing = bool(failed)
        if failed:
            for state in [*self.partitions.values(), *self.suspended.values()]:
                state.sends_lost = True
            # Records are facts keyed by identity: the rebuild after the consumer group
            # rejoins publishes every record again, so nothing is lost for good.
            log.warning("broker unreachable: %d of %d sends not acknowledged (%s); "
                        "will publish again after reconnecting", len(failed), len(sends),
                        failed[0])
        return not failed

    async def _publish(self, out: Output) -> None:
        producer = self.producer
        if producer is None:
            return
        settings = self.settings
        finals = []
        messages = []
        for kind, key, record in out.records:
            messages.append((key.encode(), orjson.dumps({"kind": kind, "record": record})))
            if record.get("final"):
                finals.append((kind, record))
        if messages:
            await self._send_all(settings.topic_intervals, messages)
        if out.dead_letters:
            counts = self.dead_letters_by_reason
            for dead in out.dead_letters:
                counts[dead.reason] = counts.get(dead.reason, 0) + 1
            now = self.clock()
            await self._send_all(settings.topic_deadletter, (
                ((value["room"] or "").encode(), orjson.dumps(value))
                for value in (dead.to_dict(now) for dead in out.dead_letters)))
        if finals and self.history is not None:
            self.history.put(finals)

    async def _send_all(self, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> None:
        """Queue ``(key, value)`` messages for ``topic`` as one record batch per partition.

        The partitions are those ``producer.send`` would choose (the default partitioner on
        the key), and a partition's messages keep their order; a batch per partition instead
        of a future per message is what makes publishing cheap. Acknowledgements go to
        ``pending_sends``.
        """
        producer = self.producer
        assert producer is not None
        # the same list AIOKafkaProducer.send hands its partitioner
        partitions = list(await producer.partitions_for(topic))
        if (self.partition_counts.get(topic) != len(partitions)
                or len(self.partition_cache) > PARTITION_CACHE):
            self.partition_counts[topic] = len(partitions)
            self.partition_cache = {}
        cache = self.partition_cache
        count = len(partitions)
        batches: dict[int, Any] = {}
        for key, value in messages:
            partition = cache.get((topic, key))
            if partition is None:
                # AIOKafkaProducer's default partitioner, with a quicker murmur2
                partition = cache[(topic, key)] = partitions[(murmur2(key) & 0x7FFFFFFF) % count]
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                await self._send_batch(batch, topic, partition)
                batch = batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # a first one always fits
        for partition, batch in batches.items():
            await self._send_batch(batch, topic, partition)

    async def _send_batch(self, batch: Any, topic: str, partition: int) -> None:
        producer = self.producer
        assert producer is not None
        batch.close()  # complete: the sender takes it without lingering
        self.pending_sends.append(await producer.send_batch(batch, topic, partition=partition))

    async def _publish_live(self, force: bool,
                            computed: dict[str, Computed] | None = None,
                            settle: bool = False) -> None:
        """Publish the live state of each changed room (every room when ``force``).

        A live room publishes at most every ``LIVE_MIN_SECONDS``, one catching up every
        ``CATCH_UP_FLUSH_SECONDS`` unless ``settle``. Its live message carries, as
        Kafka headers, the times of the oldest event it shows for the first time (when
        produced, received, applied) and when it was published; the stages between them are
        counted in ``freshness`` (services/contract/freshness.py).
        """
        producer = self.producer
        if producer is None:
            return
        now = self.last_flush  # when this flush started
        rooms = list(self.engine.rooms) if force else list(self.live_dirty)
        pending = self.fresh_pending
        for name in rooms:
            room = self.engine.rooms.get(name)
            if room is None:
                pending.pop(name, None)  # dropped with its partition
                continue
            # A room catching up (a backfill, a replayed week) shows figures nobody watches
            # change by the tenth of a second: once a second is enough, and a live state per
            # flush cost a backfill a third of its throughput.
            if not force and not settle and now - self.live_sent.get(name, 0.0) < (
                    LIVE_MIN_SECONDS if room.live else CATCH_UP_FLUSH_SECONDS):
                continue
            partition = self.partitions.get(self.room_partition.get(name, -1))
            if partition is None or not partition.ready.is_set():
                continue
            self.live_dirty.discard(name)
            self.live_sent[name] = now
            book = self.books.setdefault(name, AlertBook(name))
            state, transitions = live_state(room, book, self._plan_lookup(),
                                            computed=(computed or {}).get(name))
            value = orjson.dumps(state)
            published_us = wall_us()
            headers = [(HEADER_PUBLISHED, b"%d" % published_us)]
            times = pending.pop(name, None)
            if times is not None:
                produced_us, received_us, applied_us = times
                headers += [(HEADER_FETCHED, b"%d" % received_us),
                            (HEADER_APPLIED, b"%d" % applied_us)]
                if produced_us:
                    headers.append((HEADER_PRODUCED, b"%d" % produced_us))
                    self.freshness.observe("fetch", (received_us - produced_us) / 1e6)
                self.freshness.observe("apply", (applied_us - received_us) / 1e6)
                self.freshness.observe("publish", (published_us - applied_us) / 1e6)
            self.pending_sends.append(await producer.send(
                self.settings.topic_live, value, key=name.encode(), headers=headers))
            if transitions and self.history is not None:
                self.history.put(("alert", alert) for alert in transitions)
            for alert in transitions:
                log.info("alert %s %s: %s", alert["state"], alert["id"], alert["message"])
                self.pending_sends.append(await producer.send(
                    self.settings.topic_alerts, orjson.dumps(alert), key=alert["id"].encode()))

    def _plan_lookup(self) -> PlanLookup | None:
        store = self.store
        if store is None or not hasattr(store, "current_plan"):
            return None

        def lookup(room: str, line: str, at_us: int) -> dict[str, Any] | None:
            key = (room, line, interval_start(at_us))
            cached = self.plan_cache.get(key)
            # a plan is looked up again after a minute; "no plan yet" after 10 s, so that a
            # plan saved by the forecaster shows soon after
            now = time.monotonic()
            if cached is not None and now - cached[0] < (60 if cached[1] is not None else 10):
                return cached[1]
            # A room catching up moves through a new interval at almost every live state (a
            # store query each: a fifth of the worker's time in a backfill), and plans are
            # made for intervals to come, not for its past: a line that had none a moment
            # ago is taken to have none for 10 s, as "no plan yet" of one interval is.
            caught = self.engine.rooms.get(room)
            catching_up = caught is not None and not caught.live
            if catching_up and now - self.plan_absent.get((room, line), -60.0) < 10:
                return None
            if self.history is not None and not self.history.available:
                # the store is down: the stream must not wait for a connection attempt
                return cached[1] if cached is not None else None
            from services.contract.events import from_us

            try:
                with self.store_lock:
                    row = store.current_plan(room, line, from_us(at_us))
            except Exception as exc:  # noqa: BLE001 - a store outage must not stop the stream
                log.warning("staffing plan lookup failed: %s", exc)
                row = None
            self.plan_cache[key] = (time.monotonic(), row)
            if len(self.plan_cache) > 4096:
                self.plan_cache.clear()
            if row is None and catching_up:
                self.plan_absent[(room, line)] = time.monotonic()
            elif row is not None:
                self.plan_absent.pop((room, line), None)
            return row

        return lookup

