"""Reading JSONL event files, validating them, pseudonymising callers and publishing to Kafka."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from services.contract.errors import PacesetterError
from services.contract.events import Event, InvalidEvent, encode_batch, iter_jsonl, parse_event
from services.contract.privacy import redact
from services.contract.settings import Settings
from services.kafka.clients import security

log = logging.getLogger(__name__)

BATCH_EVENTS = 200  # events per Kafka message: a Python consumer's cost is per message


class IngestError(PacesetterError):
    """A file or broker problem that stops an ingest run."""


def pseudonymise(number: str, key: bytes) -> str:
    """Keyed HMAC-SHA256 pseudonym of a calling number (digits and a leading '+' only)."""
    normalised = "".join(ch for ch in number if ch.isdigit() or ch == "+")
    digest = hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()
    return "k:" + digest[:32]


@dataclass
class LineResult:
    """One JSONL line: its number, its bytes, the event or the reason it was rejected."""

    number: int
    raw: bytes
    event: Event | None = None
    error: InvalidEvent | None = None


@dataclass
class FileCounts:
    """Counts of a pass over a file."""

    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    published: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def read_lines(path: str | Path) -> Iterator[bytes]:
    """Stream the lines of a file (``-`` for standard input) without loading it whole."""
    if str(path) == "-":
        import sys

        yield from sys.stdin.buffer
        return
    try:
        handle: IO[bytes] = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield from handle


def check_lines(
    lines: Iterable[bytes],
    caller_key: bytes | None = None,
    now_us: int | None = None,
    max_future_seconds: float = 86400.0,
) -> Iterator[LineResult]:
    """Validate JSONL lines one by one, reporting duplicate ids within a room.

    With ``caller_key``, raw numbers in ``caller`` are replaced by keyed pseudonyms first, so
    the raw number never leaves this function.
    """
    seen: set[tuple[str, str]] = set()
    for number, raw, decoded in iter_jsonl(lines):
        if isinstance(decoded, InvalidEvent):
            yield LineResult(number, raw, error=decoded)
            continue
        if caller_key is not None and isinstance(decoded, dict):
            caller = decoded.get("caller")
            if isinstance(caller, str) and caller and not caller.startswith("k:"):
                decoded["caller"] = pseudonymise(caller, caller_key)
                raw = orjson.dumps(decoded)
        try:
            event = parse_event(decoded, now_us=now_us, max_future_seconds=max_future_seconds)
        except InvalidEvent as exc:
            yield LineResult(number, redact(raw), error=exc)
            continue
        key = (event.room, event.id)
        if key in seen:
            err = InvalidEvent("id", f"duplicate {event.id!r}: it repeats an earlier event of "
                               f"room {event.room}", reason="duplicate")
            yield LineResult(number, raw, error=err)
            continue
        seen.add(key)
        yield LineResult(number, raw, event=event)


def validate_file(
    path: str | Path, report: Callable[[str], None], caller_key: bytes | None = None
) -> FileCounts:
    """Check a JSONL file against the contract; ``report`` receives ``line N: reason`` lines."""
    counts = FileCounts()
    for result in check_lines(read_lines(path), caller_key=caller_key):
        if result.error is not None:
            counts.invalid += 1
            if result.error.reason == "duplicate":
                counts.duplicates += 1
            counts.by_reason[result.error.reason] = counts.by_reason.get(result.error.reason, 0) + 1
            report(f"line {result.number}: {result.error}")
        else:
            counts.valid += 1
    return counts


class Publisher:
    """Publishes events to the events topic as per-room batches, keyed by room.

    kafka-python's producer is used (its consumer groups do not work on tansu, its producer
    does). One in-flight request per connection keeps a room's batches in order on retries.
    """

    def __init__(self, bootstrap: str, topic: str, batch_events: int = BATCH_EVENTS,
                 settings: Settings | None = None):
        from kafka import KafkaProducer

        self.topic = topic
        self.batch_events = batch_events
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            retries=5,
            max_in_flight_requests_per_connection=1,
            linger_ms=5,
            batch_size=1 << 20,
            max_request_size=8 << 20,
            compression_type=None,
            **(security(settings).kafka_python() if settings is not None else {}),
        )
        self.pending: dict[str, list[Event]] = {}
        self.futures: list[tuple[Any, int]] = []
        self.acked = 0
        self.failed = 0

    def add(self, event: Event) -> None:
        """Queue an event; a room's batch is sent when full."""
        batch = self.pending.setdefault(event.room, [])
        batch.append(event)
        if len(batch) >= self.batch_events:
            self._send(event.room)

    def send_raw(self, room: str, value: bytes, count: int = 1) -> None:
        """Send an already-encoded message value for ``room``."""
        self.futures.append((self.producer.send(self.topic, key=room.encode(), value=value), count))
        if len(self.futures) > 2000:
            self._collect(wait=False)

    def _send(self, room: str) -> None:
        batch = self.pending.pop(room, [])
        if batch:
            self.send_raw(room, encode_batch(batch), len(batch))

    def flush_pending(self) -> None:
        """Send every partly filled batch."""
        for room in list(self.pending):
            self._send(room)

    def _collect(self, wait: bool) -> None:
        keep = []
        for future, count in self.futures:
            if not wait and not future.is_done:
                keep.append((future, count))
                continue
            try:
                future.get(timeout=60)
                self.acked += count
            except Exception as exc:  # noqa: BLE001 - counted and reported, never swallowed
                self.failed += count
                log.error("broker did not acknowledge a batch of %d events: %s", count, exc)
        self.futures = keep

    def close(self) -> None:
        """Send everything, wait for every acknowledgement and close."""
        self.flush_pending()
        self.producer.flush(timeout=120)
        self._collect(wait=True)
        self.producer.close(timeout=10)


def replay_file(
    path: str | Path,
    bootstrap: str,
    topic: str,
    report: Callable[[str], None],
    speed: float | None = None,
    caller_key: bytes | None = None,
    progress: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    settings: Settings | None = None,
) -> FileCounts:
    """Publish a JSONL file's valid events; invalid lines are reported and not published.

    Args:
        path: the JSONL file.
        bootstrap: Kafka bootstrap servers.
        topic: the events topic.
        report: receives ``line N: reason`` for each invalid line.
        speed: ``None`` publishes as fast as possible; ``X`` paces by event time, X times real
            time (1 = real time).
        caller_key: key for ``--hash-callers``.
        progress: show a progress bar (on a terminal).
        sleep: injected for tests.
        settings: how to connect (TLS, SASL); without them, plaintext.
    """
    counts = FileCounts()
    try:  # before connecting: a missing file is the user's error, not a traceback
        size = Path(path).stat().st_size if str(path) != "-" else None
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror}") from None
    publisher = Publisher(bootstrap, topic, settings=settings)
    bar = None
    if progress and size:
        from tqdm import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc="replay", leave=False)
    first_at: int | None = None
    started = time.monotonic()
    try:
        for result in check_lines(read_lines(path), caller_key=caller_key):
            if bar is not None:
                bar.update(len(result.raw) + 1)
            if result.error is not None:
                counts.invalid += 1
                counts.by_reason[result.error.reason] = (
                    counts.by_reason.get(result.error.reason, 0) + 1
                )
                if result.error.reason == "duplicate":
                    counts.duplicates += 1
                report(f"line {result.number}: {result.error}")
                continue
            event = result.event
            assert event is not None
            counts.valid += 1
            if speed:
                if first_at is None:
                    first_at = event.at_us
                due = (event.at_us - first_at) / 1e6 / speed
                ahead = due - (time.monotonic() - started)
                if ahead > 0.02:
                    publisher.flush_pending()
                    sleep(ahead)
            publisher.add(event)
            if speed:
                publisher.flush_pending()
    finally:
        publisher.close()
        if bar is not None:
            bar.close()
    counts.published = publisher.acked
    if publisher.failed:
        raise IngestError(
            f"the broker did not acknowledge {publisher.failed} of {counts.valid} valid events"
        )
    return counts
