"""The worker's history sink: final records and alert episodes into the store, outages survived.

The stream must not wait for the database: records are handed over without blocking and written
by a thread of their own. While the store is unreachable they wait in memory and, past a bound,
in spool files on disk (kept across restarts of the worker), and are written in the order they
came once the store answers again. Writes are idempotent upserts, so a record written twice
(a spool file re-read after a crash) changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from services.history.store import HistoryStore, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

KINDS = ("interval", "attendance", "handlers", "alert")
MEMORY_ITEMS = 50_000  # records held in memory before the rest go to disk
DISK_BYTES = 1 << 30  # spool files at most this big in total; past it, records are dropped
CHUNK = 500  # records per store call
RETRY_SECONDS = (0.5, 10.0)  # first and longest wait between attempts while the store is down
# what a malformed record raises (an alert transition without its room fails in episode_of)
BAD_RECORD = (StoreError, KeyError, TypeError, ValueError, AttributeError)


def episode_of(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert episode of an alert transition on ``pacesetter.alerts`` (TOPICS.md).

    The subject is the last part of the id (``room:rule:subject``); the figures are what the
    rule measured, with the line or incident it concerns.
    """
    alert_id = str(alert["id"])
    prefix = f"{alert['room']}:{alert['rule']}:"
    subject = alert_id[len(prefix):] if alert_id.startswith(prefix) else alert_id
    return {
        "id": alert_id, "room": alert["room"], "rule": alert["rule"], "subject": subject,
        "severity": alert.get("severity") or "warning", "started_at": alert["started_at"],
        "resolved_at": alert.get("resolved_at"), "message": alert.get("message") or "",
        "figures": {name: alert.get(name) for name in ("value", "threshold", "line", "incident")},
    }


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HistorySink:
    """Writes ``(kind, record)`` items to the store from a thread, queueing through outages.

    Args:
        store: the history store.
        spool_root: the folder for spool files (each process uses a folder of its own in it,
            and adopts the folders of processes of this host that are gone); None keeps
            everything in memory, unbounded.
        memory_items: items held in memory before spooling to disk.
        disk_bytes: the spool's size limit; items past it are dropped (counted, logged).
    """

    def __init__(self, store: HistoryStore, spool_root: str | Path | None = None,
                 memory_items: int = MEMORY_ITEMS, disk_bytes: int = DISK_BYTES) -> None:
        self.store = store
        self.memory_items = memory_items
        self.disk_bytes = disk_bytes
        self.memory: deque[tuple[str, dict[str, Any]]] = deque()
        self.cond = threading.Condition()
        self.written = 0
        self.skipped = 0
        self.dropped = 0
        self.available = True
        self.busy = False
        self._stopping = False
        self.spool: Path | None = None
        self._spool_files: deque[Path] = deque()
        self._spool_size = 0
        self._spool_out: Any = None
        self._spool_lines = 0
        self._sequence = 0
        self._lines_read = 0
        if spool_root is not None:
            self._open_spool(Path(spool_root))
        self._thread = threading.Thread(target=self._run, name="history-sink", daemon=True)
        self._thread.start()

    # -- handing records over (any thread) ----------------------------------------------------
    def put(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Queue items for the store; never blocks on the database.

        Items are ``("interval" | "attendance" | "handlers", record)`` or ``("alert", alert
        transition)``.
        """
        with self.cond:
            for item in items:
                if self._spool_files or self._spool_out is not None \
                        or len(self.memory) >= self.memory_items:
                    self._spill(item)
                else:
                    self.memory.append(item)
            self.cond.notify_all()

    @property
    def pending(self) -> int:
        """Items waiting for the store (in memory and on disk)."""
        with self.cond:
            return len(self.memory) + self._spool_lines

    def drain(self, timeout: float) -> bool:
        """Wait until every queued item is written; False if the store is down or time ran out."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.memory or self._spool_lines or self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.notify_all()
                self.cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what the store takes within ``timeout``; what is left stays in the spool."""
        self.drain(timeout)
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        self._thread.join(timeout)
        with self.cond:
            if self.memory and self.spool is not None:
                left = list(self.memory)
                self.memory.clear()
                for item in left:
                    self._spill(item)
            self._close_segment()
            log.info("history sink: %d records written, %d skipped as invalid, %d dropped "
                     "(spool full), %d left on disk", self.written, self.skipped, self.dropped,
                     self._spool_lines)
            if self.memory:
                log.error("history store %s unreachable at shutdown: %d records not stored",
                          self.store.url, len(self.memory))
            if self.spool is not None and not self._spool_files:
                with contextlib.suppress(OSError):  # nothing left: no folder left behind
                    self.spool.rmdir()

    # -- spool ------------------------------------------------------------------------------
    def _open_spool(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        self.spool = root / f"{host}-{os.getpid()}"
        self.spool.mkdir(exist_ok=True)
        # adopt the spools of processes of this host that ended before writing them all
        for other in sorted(root.glob(f"{host}-*")):
            pid = other.name.rsplit("-", 1)[-1]
            if other == self.spool or not pid.isdigit() or _process_alive(int(pid)):
                continue
            for file in sorted(other.glob("*.jsonl")):
                file.rename(self.spool / f"adopted-{other.name}-{file.name}")
            other.rmdir()
        for file in sorted(self.spool.glob("*.jsonl")):
            self._spool_files.append(file)
            self._spool_size += file.stat().st_size
            with file.open("rb") as f:
                self._spool_lines += sum(1 for _ in f)
        if self._spool_files:
            log.warning("history sink: %d records left on disk by an earlier run, writing them",
                        self._spool_lines)

    def _spill(self, item: tuple[str, dict[str, Any]]) -> None:
        if self.spool is None:
            self.memory.append(item)
            return
        line = orjson.dumps(item) + b"\n"
        if self._spool_size + len(line) > self.disk_bytes:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("history sink: spool full (%d bytes): %d records dropped",
                          self.disk_bytes, self.dropped)
            return
        if self._spool_out is None:
            self._sequence += 1
            path = self.spool / f"{time.time_ns():020d}-{self._sequence:06d}.jsonl"
            self._spool_out = path.open("ab")
            self._spool_files.append(path)
        self._spool_out.write(line)
        self._spool_size += len(line)
        self._spool_lines += 1

    def _close_segment(self) -> None:
        if self._spool_out is not None:
            self._spool_out.close()
            self._spool_out = None

    # -- the writer thread -------------------------------------------------------------------
    def _next_batch(self) -> tuple[list[tuple[str, dict[str, Any]]], Path | None]:
        """Items to write next: from memory first, then one spool file (and its path)."""
        path: Path | None = None
        with self.cond:
            while not self.memory and not self._spool_files and not self._stopping:
                self.cond.wait(0.5)
            if self.memory:
                batch = [self.memory.popleft() for _ in range(min(CHUNK, len(self.memory)))]
                self.busy = True
                return batch, None
            if self._spool_files:
                path = self._spool_files[0]
                if self._spool_out is not None and len(self._spool_files) == 1:
                    self._close_segment()  # what comes next starts a new file
                self.busy = True
        if path is None:
            return [], None
        items = []
        self._lines_read = 0
        with path.open("rb") as f:
            for line in f:
                self._lines_read += 1
                try:
                    kind, record = orjson.loads(line)
                    items.append((kind, record))
                except (orjson.JSONDecodeError, ValueError):  # a line cut by a crash
                    self.skipped += 1
        return items, path

    def _run(self) -> None:
        wait = RETRY_SECONDS[0]
        while True:
            batch, path = self._next_batch()
            if not batch and path is None:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()
                    if self._stopping:
                        return
                continue
            while True:
                try:
                    self._write(batch)
                    break
                except StoreUnavailable as exc:
                    if self.available:
                        log.warning("history sink: %s; queueing records until it returns", exc)
                    self.available = False
                    with self.cond:
                        self.busy = False
                        self.cond.notify_all()
                        if self._stopping:
                            if path is None:
                                self.memory.extendleft(reversed(batch))
                            return
                        self.cond.wait(wait)
                        self.busy = True
                    wait = min(wait * 2, RETRY_SECONDS[1])
            if not self.available:
                log.warning("history sink: store %s back: writing the queued records",
                            self.store.url)
            self.available, wait = True, RETRY_SECONDS[0]
            with self.cond:
                if path is not None:
                    self._spool_files.popleft()
                    self._spool_size -= path.stat().st_size
                    self._spool_lines -= self._lines_read
                    path.unlink()
                self.busy = False
                self.cond.notify_all()

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """Write each chunk's records in one transaction (its alert episodes in one more).

        A transaction has a fixed cost to the writer (a pooled connection checked out and
        pinged, BEGIN, commit: about ten rows' worth of CPU), so one serves every kind of a
        chunk. A chunk the store refuses is written kind by kind, then record by record,
        skipping the bad one(s).
        """
        for start in range(0, len(batch), CHUNK):
            chunk = batch[start:start + CHUNK]
            by_kind: dict[str, list[dict[str, Any]]] = {}
            for kind, record in chunk:
                by_kind.setdefault(kind, []).append(record)
            alerts = by_kind.pop("alert", None)
            if by_kind:
                try:
                    self.store.upsert_records(by_kind)
                except StoreUnavailable:
                    raise
                except BAD_RECORD:
                    for kind, records in by_kind.items():
                        self._write_isolating(kind, records)
            if alerts:
                self._write_isolating("alert", alerts)
            self.written += len(chunk)

    def _write_isolating(self, kind: str, records: list[dict[str, Any]]) -> None:
        """Write ``records``; if the store refuses them, one by one, skipping the bad ones."""
        try:
            self._write_kind(kind, records)
        except StoreUnavailable:
            raise
        except BAD_RECORD:
            for record in records:  # find the bad one(s): keep the others
                try:
                    self._write_kind(kind, [record])
                except StoreUnavailable:
                    raise
                except BAD_RECORD as exc:
                    self.skipped += 1
                    log.warning("history sink: skipped a %s record: %s", kind, exc)

    def _write_kind(self, kind: str, records: list[dict[str, Any]]) -> None:
        store = self.store
        if kind == "interval":
            store.upsert_intervals(records)
        elif kind == "attendance":
            store.upsert_attendance(records)
        elif kind == "handlers":
            store.upsert_handlers(records)
        elif kind == "alert":
            store.save_alert_episodes(episode_of(a) for a in records)
        else:
            raise StoreError(f"unknown record kind {kind!r}: expected one of {', '.join(KINDS)}")
