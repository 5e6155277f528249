"""The worker seen from outside: /metrics, /healthz and /readyz on a port of its own.

The server runs in a thread, not on the worker's event loop: a stalled loop must still be
seen (``pacesetter_worker_event_loop_stall_seconds``, /healthz 503) rather than silence the
endpoint that would report it. The loop refreshes what it owns once a second; figures that
must keep moving when the loop does not (stall, lag in seconds) are computed at scrape time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from streams.worker import StreamWorker

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
BEAT_SECONDS = 0.25
STALL_NOT_LIVE_SECONDS = 30.0  # /healthz fails: a supervisor should restart the worker
STALL_NOT_READY_SECONDS = 5.0


@dataclass
class Snapshot:
    """What the event loop last saw, for the server thread (replaced whole, never mutated)."""

    owned: list[int] = field(default_factory=list)
    rebuilding: list[int] = field(default_factory=list)
    rebuild_messages: dict[int, int] = field(default_factory=dict)
    rebuild_seconds: dict[int, float] = field(default_factory=dict)
    rebuilds: dict[int, int] = field(default_factory=dict)
    kept: dict[int, int] = field(default_factory=dict)
    restored_offset: dict[int, int | None] = field(default_factory=dict)
    checkpointed_upto: dict[int, int | None] = field(default_factory=dict)
    checkpoints: dict[str, int] = field(default_factory=dict)
    checkpoint_pause_seconds: float = 0.0
    checkpoint_bytes: int = 0
    lag_messages: dict[int, int] = field(default_factory=dict)
    newest_event_ms: dict[int, int] = field(default_factory=dict)
    events_applied: int = 0
    rebuild_messages_total: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    connected: bool = False
    fetch_max_wait_ms: int | None = None
    started: bool = False


class WorkerObserver(Collector):
    """Collects the worker's metrics and serves them with its health and readiness."""

    def __init__(self, worker: StreamWorker, fetch_wait: Callable[[], int | None] = lambda: None,
                 clock: Callable[[], float] = time.time):
        self.worker = worker
        self.fetch_wait = fetch_wait
        self.clock = clock
        self.snapshot = Snapshot()
        self.last_beat = time.monotonic()
        self.last_commit: float | None = None  # wall clock of the last successful commit
        self.started_at = clock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.server: ThreadingHTTPServer | None = None
        self.tasks: list[asyncio.Task[None]] = []

    # ---------------------------------------------------------------- loop side

    def listen(self, host: str, port: int) -> None:
        """Serve on ``host:port`` from now on (before the event loop runs, to fail early).

        Raises:
            OSError: the port cannot be bound.
        """
        self.server = serve(self, host, port)

    async def start(self) -> None:
        """Refresh from the event loop."""
        self.tasks = [asyncio.ensure_future(self._beat()),
                      asyncio.ensure_future(self._refresh_forever())]

    async def stop(self) -> None:
        """Stop serving and refreshing."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def committed(self) -> None:
        """Note a successful offset commit (called by Faust's commit sensor)."""
        self.last_commit = self.clock()

    async def _beat(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            await asyncio.sleep(BEAT_SECONDS)

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - a metric must not stop the worker
                log.warning("worker metrics not refreshed: %s", exc)
            await asyncio.sleep(REFRESH_SECONDS)

    async def refresh(self) -> None:
        """Take a new snapshot of the worker (from the event loop)."""
        worker = self.worker
        states = list(worker.partitions.values())
        highwater = worker.highwater
        lag = {}
        for state in states:
            end = highwater(state.partition)
            if end is not None:
                lag[state.partition] = max(0, end - state.applied_upto)
        self.snapshot = Snapshot(
            owned=sorted(s.partition for s in states),
            rebuilding=sorted(s.partition for s in states if not s.ready.is_set()),
            rebuild_messages={s.partition: s.rebuild_messages for s in states},
            rebuild_seconds={s.partition: s.rebuild_seconds() for s in states},
            rebuilds=dict(worker.rebuilds),
            kept=dict(worker.kept),
            restored_offset={s.partition: s.restored_offset for s in states},
            checkpointed_upto={s.partition: s.checkpointed_upto for s in states},
            checkpoints={"saved": worker.checkpoints_saved, "failed": worker.checkpoints_failed,
                         "restored": worker.checkpoints_restored,
                         "refused": worker.checkpoints_refused},
            checkpoint_pause_seconds=worker.checkpoint_pause_seconds,
            checkpoint_bytes=worker.checkpoint_bytes,
            lag_messages=lag,
            newest_event_ms={s.partition: s.newest_event_ms for s in states},
            events_applied=worker.events_applied,
            rebuild_messages_total=worker.rebuild_messages_total,
            dead_letters=dict(worker.dead_letters_by_reason),
            connected=await worker.broker_connected(),
            fetch_max_wait_ms=self.fetch_wait(),
            started=worker.producer is not None,
        )

    # -------------------------------------------------------------- thread side

    def stall_seconds(self) -> float:
        """How long the event loop has not run its heartbeat beyond its period."""
        return max(0.0, time.monotonic() - self.last_beat - BEAT_SECONDS)

    def lag_seconds(self, snap: Snapshot) -> dict[int, float]:
        """Per partition: 0 when nothing waits, else how old the newest applied message is."""
        now_ms = self.clock() * 1000
        out = {}
        for partition in snap.owned:
            waiting = snap.lag_messages.get(partition, 0) > 0 or partition in snap.rebuilding
            newest = snap.newest_event_ms.get(partition) or 0
            out[partition] = max(0.0, (now_ms - newest) / 1000) if waiting and newest else 0.0
        return out

    def not_ready(self) -> list[str]:
        """Why the worker is not ready (empty: ready)."""
        snap = self.snapshot
        why = []
        if not snap.started:
            why.append("starting: the producer is not connected yet")
        if not snap.connected:
            why.append("disconnected: the Kafka broker does not answer")
        if snap.rebuilding:
            why.append("rebuilding partitions " + ", ".join(map(str, snap.rebuilding)))
        stall = self.stall_seconds()
        if stall > STALL_NOT_READY_SECONDS:
            why.append(f"event loop stalled for {stall:.0f} s")
        return why

    def alive(self) -> bool:
        """Whether the event loop runs (else a supervisor should restart the worker)."""
        return self.stall_seconds() < STALL_NOT_LIVE_SECONDS

    def collect(self) -> Iterator[Metric]:
        """The metric families, from the latest snapshot and the clocks."""
        snap = self.snapshot

        def gauge(name: str, text: str, value: float | None = None,
                  labels: list[str] | None = None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, text, labels=labels)
            if value is not None:
                family.add_metric([], value)
            return family

        yield gauge("pacesetter_worker_partitions_owned", "Events partitions this worker owns",
                    len(snap.owned))
        yield gauge("pacesetter_worker_partitions_rebuilding",
                    "Owned partitions still being rebuilt from the events topic",
                    len(snap.rebuilding))
        messages = gauge("pacesetter_worker_rebuild_messages",
                         "Messages replayed by the partition's latest rebuild (so far)",
                         labels=["partition"])
        seconds = gauge("pacesetter_worker_rebuild_seconds",
                        "Seconds the partition's latest rebuild took (so far)",
                        labels=["partition"])
        for partition in snap.owned:
            messages.add_metric([str(partition)], snap.rebuild_messages.get(partition, 0))
            seconds.add_metric([str(partition)], snap.rebuild_seconds.get(partition, 0.0))
        yield messages
        yield seconds
        rebuilds = CounterMetricFamily("pacesetter_worker_rebuilds",
                                       "Rebuilds started, by partition", labels=["partition"])
        for partition, count in sorted(snap.rebuilds.items()):
            rebuilds.add_metric([str(partition)], count)
        yield rebuilds
        kept = CounterMetricFamily(
            "pacesetter_worker_partitions_kept",
            "Partitions assigned back after a rebalance and resumed without a rebuild",
            labels=["partition"])
        for partition, count in sorted(snap.kept.items()):
            kept.add_metric([str(partition)], count)
        yield kept
        restored = gauge(
            "pacesetter_worker_rebuild_checkpoint_offset",
            "Offset of the checkpoint the partition's latest rebuild restored (-1: it replayed "
            "the whole events topic)", labels=["partition"])
        saved = gauge("pacesetter_worker_checkpoint_offset",
                      "Offset of the partition's latest checkpoint saved (-1: none yet)",
                      labels=["partition"])
        for partition in snap.owned:
            offset = snap.restored_offset.get(partition)
            restored.add_metric([str(partition)], -1 if offset is None else offset)
            offset = snap.checkpointed_upto.get(partition)
            saved.add_metric([str(partition)], -1 if offset is None else offset)
        yield restored
        yield saved
        checkpoints = CounterMetricFamily(
            "pacesetter_worker_checkpoints",
            "Checkpoints of partitions' rooms: saved, failed (not saved), restored by a "
            "rebuild, refused by one (another format or settings)", labels=["result"])
        for result, count in sorted(snap.checkpoints.items()):
            checkpoints.add_metric([result], count)
        yield checkpoints
        yield gauge("pacesetter_worker_checkpoint_pause_seconds",
                    "Seconds the event loop paused to take the latest checkpoint",
                    snap.checkpoint_pause_seconds)
        yield gauge("pacesetter_worker_checkpoint_bytes", "Size of the latest checkpoint saved",
                    snap.checkpoint_bytes)
        owned = gauge("pacesetter_worker_partition_owned", "1 for each partition owned now",
                      labels=["partition"])
        for partition in snap.owned:
            owned.add_metric([str(partition)], 1.0)
        yield owned
        lag = gauge("pacesetter_worker_lag_messages",
                    "Messages of the partition not applied yet (end offset minus position)",
                    labels=["partition"])
        for partition, count in sorted(snap.lag_messages.items()):
            lag.add_metric([str(partition)], count)
        yield lag
        lag_s = gauge("pacesetter_worker_lag_seconds",
                      "Age of the newest applied message while others wait (0: caught up)",
                      labels=["partition"])
        for partition, value in sorted(self.lag_seconds(snap).items()):
            lag_s.add_metric([str(partition)], value)
        yield lag_s
        applied = CounterMetricFamily("pacesetter_worker_events_applied",
                                      "Events-topic messages applied as they arrived")
        applied.add_metric([], snap.events_applied)
        yield applied
        replayed = CounterMetricFamily("pacesetter_worker_rebuild_messages_replayed",
                                       "Events-topic messages replayed by rebuilds")
        replayed.add_metric([], snap.rebuild_messages_total)
        yield replayed
        dead = CounterMetricFamily("pacesetter_worker_dead_letters",
                                   "Dead letters published, by reason", labels=["reason"])
        for reason, count in sorted(snap.dead_letters.items()):
            dead.add_metric([reason], count)
        yield dead
        yield gauge("pacesetter_worker_broker_connected",
                    "1 while the Kafka broker answers this worker, else 0",
                    1.0 if snap.connected else 0.0)
        since = self.last_commit if self.last_commit is not None else self.started_at
        yield gauge("pacesetter_worker_last_commit_age_seconds",
                    "Seconds since the last successful offset commit (or since start)",
                    max(0.0, self.clock() - since))
        yield gauge("pacesetter_worker_event_loop_stall_seconds",
                    "Seconds the event loop has not run beyond its heartbeat period",
                    self.stall_seconds())
        yield gauge("pacesetter_worker_ready", "1 when /readyz answers 200, else 0",
                    0.0 if self.not_ready() else 1.0)
        yield self.worker.freshness.family(
            "pacesetter_worker_freshness_seconds",
            "Per live message, the oldest event it shows for the first time: produced to "
            "received (fetch), received to applied (apply), applied to published (publish)")
        if snap.fetch_max_wait_ms is not None:
            yield gauge("pacesetter_worker_fetch_max_wait_ms",
                        "The fetch wait the running group consumer uses",
                        snap.fetch_max_wait_ms)


def serve(observer: WorkerObserver, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz from a daemon thread.

    Raises:
        OSError: the port cannot be bound.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(observer.registry),
                             "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/healthz":
                alive = observer.alive()
                self._answer(200 if alive else 503, b"ok\n" if alive else
                             f"event loop stalled for {observer.stall_seconds():.0f} s\n".encode())
            elif path == "/readyz":
                why = observer.not_ready()
                self._answer(503 if why else 200,
                             ("; ".join(why) if why else "ready").encode() + b"\n")
            else:
                self._answer(404, b"not found: /metrics, /healthz, /readyz\n")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8"
                    ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
            """Scrapes every few seconds are not worth a log line."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
