"""The API's read model: an in-memory view of the topics the stream worker publishes.

Every API replica reads all of ``pacesetter.intervals``, ``pacesetter.live`` and
``pacesetter.alerts`` from the beginning, without a consumer group (tansu's groups do not work
for every client, and a replica needs every partition anyway). Records are facts keyed by
identity, so the latest message for a key wins and reading a message twice changes nothing.

The consumer runs on its own thread and event loop: rebuilding a day of records after a restart
must not stall requests, and the app may be served from any loop (uvicorn, a test client).
Readers take a snapshot under a lock; server-sent-event subscribers are woken thread-safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.contract.events import format_time
from services.contract.freshness import HEADER_PUBLISHED, STAGES_API, StageHistograms, header_us
from services.contract.settings import Settings
from services.kafka.clients import security

log = logging.getLogger(__name__)

#: How long a subscriber's queue may grow before it is cut off (the browser reconnects).
SUBSCRIBER_QUEUE = 2000
PROBE_SECONDS = 5.0


def _parse_instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("z", "Z")).astimezone(UTC)
    except ValueError:
        return None


@dataclass
class Subscriber:
    """A server-sent-events client waiting for changes (optionally of one room)."""

    loop: asyncio.AbstractEventLoop
    # (event, data, when the read model received it in epoch microseconds, 0: not timed)
    queue: asyncio.Queue[tuple[str, Any, int]]
    room: str | None = None
    overflowed: bool = False


@dataclass
class _Stored:
    start: datetime
    record: dict[str, Any]


@dataclass
class Readiness:
    """Whether the read model has caught up, and if not, why not."""

    ready: bool
    reason: str


@dataclass
class _Tables:
    intervals: dict[tuple[str, str, str], _Stored] = field(default_factory=dict)
    attendance: dict[tuple[str, str, str], _Stored] = field(default_factory=dict)
    handlers: dict[tuple[str, str], _Stored] = field(default_factory=dict)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, set[str]] = field(default_factory=dict)
    newest: dict[str, datetime] = field(default_factory=dict)
    # bumped whenever a room's records of a kind change: keys of cached responses
    versions: dict[tuple[str, str], int] = field(default_factory=dict)


class ReadModel:
    """What the API serves, rebuilt from the published topics on every start.

    Use ``start()``/``stop()`` (or ``apply()`` directly, without Kafka). Query methods return
    copies, safe to serialise while the consumer keeps applying messages.
    """

    def __init__(self, settings: Settings, retention: timedelta | None = None) -> None:
        self.settings = settings
        self.retention = (retention if retention is not None
                          else timedelta(days=settings.read_model_days))
        self.topics = (settings.topic_intervals, settings.topic_live, settings.topic_alerts)
        self._lock = threading.RLock()
        self._t = _Tables()
        self._subscribers: list[Subscriber] = []
        self._ready = False
        self._reason = "starting: not connected to Kafka yet"
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._messages = 0
        self._applied_since_prune = 0
        # Acknowledgements come from the history store (every replica reads the same ones):
        # (alert id, started_at) -> {acknowledged_by, acknowledged_at, note}.
        self._acks: dict[tuple[str, str], dict[str, Any]] = {}
        #: Where alert episodes go as transitions arrive (the store's save_alert_episodes).
        self.episode_sink: Callable[[list[dict[str, Any]]], Any] | None = None
        self._pending_episodes: dict[tuple[str, str], dict[str, Any]] = {}
        self._since_ms = 0  # records published before this are not read (see _seek_horizon)
        #: live messages: published -> received here (read_model), -> written to SSE (sse)
        self.freshness = StageHistograms(STAGES_API)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ReadModel:
        """Start consuming on a background thread (returns at once)."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="readmodel", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming and wait for the thread."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the consumer thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until ready (for tests and the CLI); returns whether it became ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready:
                return True
            time.sleep(0.05)
        return self._ready

    def readiness(self) -> Readiness:
        """Ready once every partition was read to its end offsets and then fetched empty."""
        return Readiness(self._ready, "caught up" if self._ready else self._reason)

    @property
    def messages_applied(self) -> int:
        """Messages applied since start (including rebuilds)."""
        return self._messages

    def _set_state(self, ready: bool, reason: str) -> None:
        if ready != self._ready:
            if ready:
                log.info("read model caught up with %s (%d messages)", ", ".join(self.topics),
                         self._messages)
            else:
                log.warning("read model not ready: %s", reason)
        self._ready, self._reason = ready, reason

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._supervise())
        finally:
            if not self._stopping.is_set():
                self._set_state(False, "the read model stopped unexpectedly: see the log")
            loop.close()

    async def _supervise(self) -> None:
        """Consume forever; on any broker failure, report not-ready, back off and reconnect."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._consume()
                backoff = 0.5
            except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - reconnect
                self._set_state(False, f"Kafka at {self.settings.bootstrap_servers} "
                                       f"unreachable: {exc or type(exc).__name__}; reconnecting")
                log.warning("read model: %s; reconnecting in %.1f s", exc or type(exc).__name__,
                            backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def _ensure_topics(self) -> None:
        from services.kafka.broker import ensure_topics

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, lambda: ensure_topics(
                self.settings.bootstrap_servers, list(self.topics), self.settings.partitions,
                self.settings.replication_factor, self.settings.output_topic_configs(),
                settings=self.settings))
        except Exception as exc:  # noqa: BLE001 - may lack admin rights: wait for the worker
            log.info("read model could not create topics (%s); waiting for them", exc)

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import OffsetOutOfRangeError

        self._set_state(False, f"connecting to Kafka at {self.settings.bootstrap_servers}")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_list,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
            # how long the broker may hold a fetch: what a live message waits at most here
            fetch_max_wait_ms=self.settings.api_fetch_max_wait_ms,
            request_timeout_ms=10000,
            retry_backoff_ms=200,
            client_id="pacesetter-api",
            **security(self.settings).aiokafka(),
        )
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await consumer.stop()
            raise
        try:
            await self._ensure_topics()
            partitions: list[TopicPartition] = []
            for topic in self.topics:
                found = await self._partitions(consumer, topic)
                partitions += [TopicPartition(topic, p) for p in sorted(found)]
            consumer.assign(partitions)
            await self._seek_horizon(consumer, partitions)
            targets = await asyncio.wait_for(consumer.end_offsets(partitions), 15)
            with self._lock:
                self._t = _Tables()  # a fresh start: everything comes from the topics again
            self._messages = 0
            pending = set(partitions)
            reached: dict[TopicPartition, int] = {}
            self._set_state(False, "catching up: reading " + ", ".join(self.topics)
                            + f" ({len(partitions)} partitions)")
            last_probe = time.monotonic()
            live_topic = self.settings.topic_live
            while not self._stopping.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=200)
                except OffsetOutOfRangeError:
                    log.warning("read model: topics were truncated or recreated; rebuilding")
                    return
                since_ms = self._since_ms
                received_us = time.time_ns() // 1000
                for records in batch.values():
                    for msg in records:
                        # a broker may find offsets by time per record batch (tansu does):
                        # records of a batch published before the horizon are skipped here
                        if msg.timestamp is None or msg.timestamp >= since_ms:
                            if msg.topic == live_topic and self._ready:
                                self._received_live(msg, received_us)
                            else:
                                self._apply_message(msg.topic, msg.value)
                if self._pending_episodes:
                    await asyncio.get_running_loop().run_in_executor(None, self.flush_episodes)
                if pending:
                    now_ms = int(time.time() * 1000)
                    for tp in list(pending):
                        position = await consumer.position(tp)
                        target = targets.get(tp) or 0
                        highwater = consumer.highwater(tp)
                        if position > target:
                            pending.discard(tp)
                        elif (highwater is not None and position >= highwater
                              and tp not in batch and position < target):
                            # an end offset reported for records that never arrived (seen
                            # right after topics were recreated): the fetch says it's all
                            pending.discard(tp)
                        elif position == target:
                            # tansu's end offset can be the base offset of the last batch:
                            # only an empty fetch from here proves the partition is read.
                            polled = consumer.last_poll_timestamp(tp) or 0
                            if tp not in reached:
                                reached[tp] = now_ms
                            elif tp not in batch and polled > reached[tp]:
                                pending.discard(tp)
                    if pending:
                        self._reason = (f"catching up: {len(pending)} of {len(partitions)} "
                                        f"partitions not read to the end yet")
                    else:
                        self._set_state(True, "caught up")
                if time.monotonic() - last_probe > PROBE_SECONDS:
                    last_probe = time.monotonic()
                    await self._probe(consumer, partitions)
                if self._applied_since_prune > 5000:
                    self.prune()
        finally:
            # aiokafka's stop() can raise CancelledError (it awaits fetch tasks it has just
            # cancelled): swallowing only Exception here killed the read model's thread.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(consumer.stop(), 5)

    async def _seek_horizon(self, consumer: Any, partitions: list[Any]) -> None:
        """Start each partition at the first record published within the read model's horizon.

        Older records are in the history store: reading them at every start made start-up
        slower every week. A broker that cannot look offsets up by time is read from the start.
        """
        since_ms = int(time.time() * 1000) - int(self.retention.total_seconds() * 1000)
        self._since_ms = since_ms
        try:
            found = await asyncio.wait_for(
                consumer.offsets_for_times(dict.fromkeys(partitions, since_ms)), 15)
        except Exception as exc:  # noqa: BLE001 - correctness first: read everything
            log.warning("read model: cannot look offsets up by time (%s): reading from the start",
                        exc)
            await consumer.seek_to_beginning(*partitions)
            return
        ends = await asyncio.wait_for(consumer.end_offsets(partitions), 15)
        for tp in partitions:
            stamp = found.get(tp)
            # None: every record is older than the horizon
            consumer.seek(tp, stamp.offset if stamp is not None else ends[tp])

    async def _partitions(self, consumer: Any, topic: str) -> set[int]:
        deadline = time.monotonic() + 30
        while not self._stopping.is_set():
            # consumer.topics() fills a throwaway copy; the consumer's own metadata must be
            # refreshed to see a topic created after it started
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic)
            if found:
                return set(found)
            self._set_state(False, f"waiting for topic {topic} to exist")
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} does not exist")
            await self._sleep(0.5)
        return set()

    async def _probe(self, consumer: Any, partitions: list[Any]) -> None:
        """Ask the broker for offsets: the consumer alone retries silently when it is gone."""
        try:
            await asyncio.wait_for(consumer.end_offsets(partitions), PROBE_SECONDS)
        except Exception as exc:  # noqa: BLE001
            raise ConnectionError(f"broker probe failed ({exc or type(exc).__name__})") from exc

    # -- applying messages -----------------------------------------------------------------

    def _received_live(self, msg: Any, received_us: int) -> None:
        """Apply a live message as it arrives, timing it from when the worker published it."""
        published = header_us(msg.headers, HEADER_PUBLISHED)
        if published is None and msg.timestamp:
            published = msg.timestamp * 1000  # the producer's create time, in milliseconds
        if published is not None:
            self.freshness.observe("read_model", (received_us - published) / 1e6)
        self._apply_message(msg.topic, msg.value, received_us)

    def _apply_message(self, topic: str, value: bytes | None, received_us: int = 0) -> None:
        self._messages += 1
        if value is None:
            return
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.warning("read model: skipped a message on %s that is not JSON", topic)
            return
        try:
            self.apply(topic, data, received_us)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            log.warning("read model: skipped a malformed message on %s: %s", topic, exc)

    def apply(self, topic: str, data: Any, received_us: int = 0) -> None:
        """Apply one decoded message of ``topic`` (TOPICS.md shapes).

        ``received_us``: when a live message was received (epoch microseconds), so that the
        stream route can time its delivery to each client; 0 when not timed.
        """
        if topic == self.settings.topic_intervals:
            self._apply_record(data["kind"], data["record"])
        elif topic == self.settings.topic_live:
            self._apply_live(data, received_us)
        elif topic == self.settings.topic_alerts:
            self._apply_alert(data)

    def _apply_record(self, kind: str, record: dict[str, Any]) -> None:
        room = record["room"]
        start = _parse_instant(record["interval_start"])
        if not isinstance(room, str) or start is None:
            raise ValueError("record without room or interval_start")
        stored = _Stored(start, record)
        with self._lock:
            self._t.versions[(room, kind)] = self._t.versions.get((room, kind), 0) + 1
            if kind == "interval":
                self._t.intervals[(room, record["line"], record["interval_start"])] = stored
                self._t.lines.setdefault(room, set()).add(record["line"])
            elif kind == "attendance":
                self._t.attendance[(room, record["grade"], record["interval_start"])] = stored
                self._t.lines.setdefault(room, set())
            elif kind == "handlers":
                self._t.handlers[(room, record["interval_start"])] = stored
                self._t.lines.setdefault(room, set())
            else:
                raise ValueError(f"unknown kind {kind!r}")
            if start > self._t.newest.get(room, start - timedelta(seconds=1)):
                self._t.newest[room] = start
            self._applied_since_prune += 1
        self._publish(room, "interval", {"kind": kind, "record": record})

    def _apply_live(self, state: dict[str, Any], received_us: int = 0) -> None:
        room = state["room"]
        if not isinstance(room, str) or not isinstance(state.get("lines", {}), dict):
            raise ValueError("live state without room")
        with self._lock:
            self._t.live[room] = state
            self._t.lines.setdefault(room, set()).update(state.get("lines") or {})
        if self._subscribers and self._ready:
            self._publish(room, "live", self._live_with_acks(state), received_us)

    def _apply_alert(self, alert: dict[str, Any]) -> None:
        room = alert["room"]
        if not isinstance(alert["id"], str) or not isinstance(room, str):
            raise ValueError("alert without id or room")
        with self._lock:
            self._t.alerts[alert["id"]] = alert
            self._t.lines.setdefault(room, set())
            if self.episode_sink is not None:
                self._pending_episodes[(alert["id"], str(alert.get("started_at")))] = alert
        self._publish(room, "alert", self._with_ack(alert))

    # -- alert episodes and acknowledgements -----------------------------------------------------

    def flush_episodes(self) -> int:
        """Hand the alert transitions seen since the last flush to the episode sink.

        Saving is an idempotent upsert, so every replica may save what it sees; a failure is
        logged and the episodes are saved again when acknowledged.
        """
        with self._lock:
            pending, self._pending_episodes = list(self._pending_episodes.values()), {}
        sink = self.episode_sink
        if not pending or sink is None:
            return 0
        episodes = []
        for alert in pending:
            try:
                episodes.append(episode_of(alert))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("read model: alert not kept in the history: %s", exc)
        try:
            sink(episodes)
        except Exception as exc:  # noqa: BLE001 - the store may be down; the live view is not
            log.warning("read model: could not save %d alert episodes: %s", len(pending), exc)
            return 0
        return len(pending)

    def current_alert(self, alert_id: str) -> dict[str, Any] | None:
        """The latest transition of an alert id (its current or last episode)."""
        with self._lock:
            alert = self._t.alerts.get(alert_id)
        return None if alert is None else self._with_ack(alert)

    def firing_spans(self) -> dict[str, tuple[datetime, datetime]]:
        """Per room, the earliest and latest start of its firing alerts (what to ask the store)."""
        spans: dict[str, tuple[datetime, datetime]] = {}
        with self._lock:
            firing = [a for a in self._t.alerts.values() if a.get("state") == "firing"]
        for alert in firing:
            at = _parse_instant(alert.get("started_at"))
            if at is None:
                continue
            room = str(alert.get("room"))
            low, high = spans.get(room, (at, at))
            spans[room] = (min(low, at), max(high, at))
        return spans

    def acknowledge(self, episodes: Iterable[dict[str, Any]]) -> int:
        """Take acknowledgements of episodes (store rows); tells subscribers of new ones.

        Returns:
            How many acknowledgements were new to this read model.
        """
        changed = []
        with self._lock:
            for row in episodes:
                if not row.get("acknowledged_at"):
                    continue
                key = (str(row["id"]), _instant_text(row.get("started_at")))
                ack = {"acknowledged_by": row.get("acknowledged_by"),
                       "acknowledged_at": _instant_text(row.get("acknowledged_at")),
                       "note": row.get("note")}
                if self._acks.get(key) != ack:
                    self._acks[key] = ack
                    current = self._t.alerts.get(key[0])
                    if current is not None and _instant_text(current.get("started_at")) == key[1]:
                        changed.append(current)
        for alert in changed:
            self._publish(str(alert["room"]), "alert", self._with_ack(alert))
        return len(changed)

    def _with_ack(self, alert: dict[str, Any]) -> dict[str, Any]:
        ack = self._acks.get((str(alert.get("id")), _instant_text(alert.get("started_at"))))
        return {**alert, **(ack or NO_ACK)}

    def _live_with_acks(self, state: dict[str, Any]) -> dict[str, Any]:
        alerts = state.get("alerts")
        if not alerts:
            return state
        return {**state, "alerts": [self._with_ack(a) if isinstance(a, dict) else a
                                    for a in alerts]}

    def prune(self) -> None:
        """Forget records older than the retention (in each room's event time)."""
        with self._lock:
            self._applied_since_prune = 0
            horizon = {room: newest - self.retention for room, newest in self._t.newest.items()}
            for table in (self._t.intervals, self._t.attendance, self._t.handlers):
                old = [k for k, v in table.items() if v.start < horizon.get(k[0], v.start)]
                for key in old:
                    del table[key]  # type: ignore[arg-type]

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(self, room: str | None = None) -> Subscriber:
        """Register a subscriber on the calling event loop."""
        sub = Subscriber(asyncio.get_running_loop(), asyncio.Queue(SUBSCRIBER_QUEUE), room)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a subscriber."""
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(sub)

    def _publish(self, room: str, event: str, data: Any, received_us: int = 0) -> None:
        # Catching up replays history: dashboards load that over REST, not as a flood of events.
        if not self._ready:
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.room is None or sub.room == room:
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    sub.loop.call_soon_threadsafe(_offer, sub, (event, data, received_us))

    # -- queries -----------------------------------------------------------------------------

    def rooms(self) -> list[dict[str, Any]]:
        """Known rooms and their lines, sorted."""
        with self._lock:
            return [{"room": room, "lines": sorted(lines)}
                    for room, lines in sorted(self._t.lines.items())]

    def has_room(self, room: str) -> bool:
        """Whether the room appears in any published record or live state."""
        with self._lock:
            return room in self._t.lines

    def live(self, room: str) -> dict[str, Any] | None:
        """The latest live state of a room."""
        with self._lock:
            state = self._t.live.get(room)
            return None if state is None else self._live_with_acks(state)

    def live_states(self) -> list[dict[str, Any]]:
        """The latest live state of every room."""
        with self._lock:
            return [self._live_with_acks(self._t.live[r]) for r in sorted(self._t.live)]

    def version(self, room: str, kind: str) -> tuple[int, int]:
        """Changes whenever the room's records of ``kind`` change (or the model restarts)."""
        with self._lock:
            return (id(self._t), self._t.versions.get((room, kind), 0))

    def oldest_interval(self, room: str) -> datetime | None:
        """Start of the oldest interval still held in memory for a room."""
        with self._lock:
            newest = self._t.newest.get(room)
        return None if newest is None else newest - self.retention

    def intervals(self, room: str, line: str | None = None, start: datetime | None = None,
                  end: datetime | None = None) -> list[dict[str, Any]]:
        """Call interval records, oldest first (then by line), ``start ≤ interval_start < end``."""
        with self._lock:
            rows = [(v.start, k[1], v.record) for k, v in self._t.intervals.items()
                    if k[0] == room and (line is None or k[1] == line)
                    and _within(v.start, start, end)]
        return [r for _, _, r in sorted(rows, key=lambda x: (x[0], x[1]))]

    def intervals_since(self, since: dict[str, datetime],
                        lines: tuple[str, ...]) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Interval records of many rooms at once, ``interval_start ≥ since[room]``.

        One pass over the table, for pages that show every room (``intervals()`` per room
        would scan it once per room and line).
        """
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        with self._lock:
            for (room, line, _), stored in self._t.intervals.items():
                start = since.get(room)
                if start is not None and line in lines and stored.start >= start:
                    found.setdefault((room, line), []).append(stored.record)
        return found

    def attendance(self, room: str, grade: str | None = None, start: datetime | None = None,
                   end: datetime | None = None) -> list[dict[str, Any]]:
        """Attendance records, oldest first (then by grade)."""
        with self._lock:
            rows = [(v.start, k[1], v.record) for k, v in self._t.attendance.items()
                    if k[0] == room and (grade is None or k[1] == grade)
                    and _within(v.start, start, end)]
        return [r for _, _, r in sorted(rows, key=lambda x: (x[0], x[1]))]

    def handlers(self, room: str, start: datetime | None = None,
                 end: datetime | None = None) -> list[dict[str, Any]]:
        """Handler records, oldest first."""
        with self._lock:
            rows = [(v.start, v.record) for k, v in self._t.handlers.items()
                    if k[0] == room and _within(v.start, start, end)]
        return [r for _, r in sorted(rows, key=lambda x: x[0])]

    def alerts(self, room: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Alerts, newest first (by ``started_at``, then id)."""
        with self._lock:
            rows = [a for a in self._t.alerts.values()
                    if (room is None or a.get("room") == room)
                    and (state is None or a.get("state") == state)]
            rows = [self._with_ack(a) for a in rows]
        rows.sort(key=lambda a: str(a.get("id", "")), reverse=True)
        rows.sort(key=lambda a: _parse_instant(a.get("started_at"))
                  or datetime.min.replace(tzinfo=UTC), reverse=True)
        return rows


NO_ACK: dict[str, Any] = {"acknowledged_by": None, "acknowledged_at": None, "note": None}


def _instant_text(value: Any) -> str:
    """One spelling of an instant (text or datetime): keys from the topic and store match."""
    if isinstance(value, datetime):
        at: datetime | None = value.astimezone(UTC)
    else:
        at = _parse_instant(value)
    return str(value) if at is None else format_time(at)


def episode_of(alert: dict[str, Any]) -> dict[str, Any]:
    """The history store's episode of an alert transition (TOPICS.md alert record).

    Instants are aware datetimes, as the store's interface takes them.
    """
    ident = str(alert["id"])
    parts = ident.split(":", 2)
    subject = (parts[2] if len(parts) == 3 and parts[1] == alert.get("rule")
               else alert.get("incident") or alert.get("line") or "room")
    started = _parse_instant(alert["started_at"])
    if started is None:
        raise ValueError(f"alert {ident}: started_at is not an RFC 3339 time")
    resolved = (_parse_instant(alert.get("resolved_at")) or started
                if alert.get("state") == "resolved" else None)
    return {"id": ident, "room": alert["room"], "rule": alert["rule"], "subject": subject,
            "severity": alert.get("severity") or "warning", "started_at": started,
            "resolved_at": resolved,
            "message": alert.get("message"),
            "figures": {k: alert.get(k) for k in ("value", "threshold", "line", "incident")}}


def _within(at: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or at >= start) and (end is None or at < end)


def _offer(sub: Subscriber, item: tuple[str, Any, int]) -> None:
    try:
        sub.queue.put_nowait(item)
    except asyncio.QueueFull:
        sub.overflowed = True


def merge_by_key(older: Iterable[dict[str, Any]], newer: Iterable[dict[str, Any]],
                 key: tuple[str, ...], then: str = "line") -> list[dict[str, Any]]:
    """Records of both, the newer winning per key, oldest first, then by the field ``then``."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rec in list(older) + list(newer):
        merged[tuple(rec.get(k) for k in key)] = rec
    return sorted(merged.values(),
                  key=lambda r: (_parse_instant(r.get("interval_start"))
                                 or datetime.min.replace(tzinfo=UTC), str(r.get(then, ""))))
