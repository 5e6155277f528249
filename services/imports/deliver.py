"""Where a run's sorted events go: a JSONL file, or the events topic in per-room batches."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO

from services.contract.settings import Settings
from services.kafka.ingest import BATCH_EVENTS, IngestError, Publisher


def write_jsonl(events: Iterable[tuple[str, bytes]], out: str | Path, append: bool = False) -> int:
    """Write events one a line (``-`` for standard output); returns how many."""
    import sys

    written = 0
    handle: IO[bytes]
    if str(out) == "-":
        handle = sys.stdout.buffer
        for _room, data in events:
            handle.write(data + b"\n")
            written += 1
        handle.flush()
        return written
    try:
        handle = open(out, "ab" if append else "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise IngestError(f"cannot write {out}: {exc.strerror}") from None
    with handle:
        for _room, data in events:
            handle.write(data + b"\n")
            written += 1
    return written


def publish(events: Iterable[tuple[str, bytes]], bootstrap: str, topic: str,
            batch_events: int = BATCH_EVENTS, settings: Settings | None = None) -> int:
    """Publish events in batches of one room, keyed by room, in the order given.

    ``settings`` say how to connect (TLS, SASL); without them, plaintext.

    Returns:
        How many events the broker acknowledged.

    Raises:
        IngestError: the broker did not acknowledge every event.
    """
    publisher = Publisher(bootstrap, topic, batch_events, settings=settings)
    pending: dict[str, list[bytes]] = {}
    total = 0
    try:
        for room, data in events:
            total += 1
            batch = pending.setdefault(room, [])
            batch.append(data)
            if len(batch) >= batch_events:
                publisher.send_raw(room, b"[" + b",".join(batch) + b"]", len(batch))
                del pending[room]
        for room, batch in pending.items():
            publisher.send_raw(room, b"[" + b",".join(batch) + b"]", len(batch))
    finally:
        publisher.close()
    if publisher.failed or publisher.acked != total:
        raise IngestError(f"the broker acknowledged {publisher.acked} of {total} events")
    return publisher.acked
