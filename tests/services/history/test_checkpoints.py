"""Checkpoints in the history store: one per events partition, the latest written wins."""

from __future__ import annotations

import pytest

from services.history.store import Checkpoint, HistoryStore


@pytest.fixture
def store(store_url):
    """A fresh store on SQLite, then on the session's PostgreSQL server."""
    opened = HistoryStore.open(store_url, upgrade=True)
    yield opened
    opened.close()


def taken(partition: int, offset: int, state: bytes, fingerprint: str = "f1") -> Checkpoint:
    # the newest message applied: the one before the offset, with its time and digest
    return Checkpoint("events", partition, offset, "2026-12-03T16:00:00Z", 1, fingerprint, state,
                      offset - 1, f"{1_764_777_600_000 + offset}:{offset:032x}")


def test_a_partition_keeps_its_latest_checkpoint_whole(store) -> None:
    assert store.checkpoint("events", 0) is None
    big = bytes(range(256)) * 40_000  # ten megabytes, every byte value
    store.save_checkpoint(taken(0, 1_000, b"old"))
    store.save_checkpoint(taken(1, 7, b"other partition"))
    store.save_checkpoint(taken(0, 2**40, big, fingerprint="f2"))
    assert store.checkpoint("events", 0) == taken(0, 2**40, big, fingerprint="f2")
    assert store.checkpoint("events", 1) == taken(1, 7, b"other partition")
    assert store.checkpoint("other-events", 0) is None
