"""A worker that takes over restores its partitions' checkpoints and replays only what follows.

Worker A applies a hostile day and saves a checkpoint of each partition in the history store;
more events come, A is killed without warning, more come; worker B restores the checkpoints,
replays only the messages after them, and the published records equal the oracle's. A worker
of other settings (another fingerprint) refuses them, replays everything, and is exact too.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from services.history.store import HistoryStore
from tests.integration.harness import per_partition, produce_lines, read_topic, wait_until
from tests.integration.test_worker import (
    dead_letter_reasons,
    expected,
    hostile_day,
    live_states,
    start_worker,
    wait_for_oracle,
)

pytestmark = pytest.mark.integration


def restored_offsets(worker, partitions: set[int]) -> dict[int, float]:
    found = per_partition(worker, "pacesetter_worker_rebuild_checkpoint_offset")
    return {p: v for p, v in found.items() if p in partitions}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's next offset after the messages the topic holds now."""
    ends: dict[int, int] = {}
    for _key, _value, partition, offset in read_topic(bootstrap, topic):
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def wait_checkpointed(worker, store: HistoryStore, topic: str, ends: dict[int, int]) -> None:
    """Until the store holds a checkpoint of every partition at or past its end offset."""
    def checkpointed() -> bool:
        assert worker.proc.poll() is None, worker.text()[-3000:]
        saved = {p: store.checkpoint(topic, p) for p in ends}
        return all(c is not None and c.next_offset >= ends[p] for p, c in saved.items())

    wait_until(checkpointed, 120, interval=1.0, what="a checkpoint of every partition")


def test_a_takeover_restores_the_checkpoints_and_stays_exact(bootstrap: str,
                                                            tmp_path: Path) -> None:
    from tests.integration.harness import topic_env

    env = {**topic_env(bootstrap, tmp_path, partitions=4), "PACESETTER_CHECKPOINT_SECONDS": "1",
           "PACESETTER_CHECKPOINT_LOOP_SHARE": "1"}
    topic = env["PACESETTER_TOPIC_EVENTS"]
    lines = hostile_day(seed=51, rooms=3, days=0.5)
    first, second = len(lines) * 3 // 5, len(lines) * 4 // 5
    want = expected(lines)
    produce_lines(bootstrap, topic, lines[:first])
    ends = end_offsets(bootstrap, topic)
    assert len(ends) > 1
    a = start_worker(env, tmp_path, "a")
    store = HistoryStore.open(env["PACESETTER_STORE_URL"])
    try:
        wait_checkpointed(a, store, topic, ends)
        wait_until(lambda: a.metrics().get(
            'pacesetter_worker_checkpoints_total{result="saved"}', 0) >= len(ends), 10,
            interval=0.5, what="/metrics to count them")  # (it shows a snapshot a second old)
        assert a.metrics()["pacesetter_worker_checkpoint_bytes"] > 0
        produce_lines(bootstrap, topic, lines[first:second], batch=20)
        time.sleep(0.3)
        a.kill(signal.SIGKILL)
        a.proc.wait(10)
    finally:
        a.stop()
    produce_lines(bootstrap, topic, lines[second:], batch=20)
    total = len(read_topic(bootstrap, topic))  # messages (each a batch of events)
    b = start_worker(env, tmp_path, "b")
    try:
        wait_for_oracle(bootstrap, env, want, 150, [b])
        # B rebuilt every partition holding events from its checkpoint, not from the start
        # (/metrics shows a snapshot up to a second old: the rebuild may be newer)
        wait_until(lambda: all(restored_offsets(b, set(ends)).get(p, -1) >= 0 for p in ends),
                   10, interval=0.5, what="/metrics to show the restored checkpoints")
        offsets = restored_offsets(b, set(ends))
        assert set(offsets) == set(ends)
        assert all(offsets[p] >= ends[p] for p in ends), (offsets, ends)
        metrics = b.metrics()
        assert metrics['pacesetter_worker_checkpoints_total{result="restored"}'] >= len(ends)
        assert metrics['pacesetter_worker_checkpoints_total{result="refused"}'] == 0
        assert metrics["pacesetter_worker_rebuild_messages_replayed_total"] <= total - sum(
            ends.values())
        # the live states count what the oracle counts
        live = live_states(bootstrap, env["PACESETTER_TOPIC_LIVE"])
        rejected: dict[str, int] = {}
        for room, watermark in want.watermarks.items():
            assert live[room]["watermark"] == watermark
            for reason, count in live[room]["totals"]["rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + count
        # (the oracle counts too the broken lines that name no room, which no live state shows)
        assert rejected["duplicate"] == want.rejected["duplicate"] > 0
        assert all(count <= want.rejected[reason] for reason, count in rejected.items())
        assert set(dead_letter_reasons(bootstrap, env["PACESETTER_TOPIC_DEADLETTER"])) == {
            reason for reason in want.rejected if reason != "duplicate"}
    finally:
        b.stop()
    # another worker of other settings (a line profile no event uses: the same figures)
    other = {**env, "PACESETTER_LINE_PROFILES": '{"777": {"threshold_seconds": 30}}'}
    c = start_worker(other, tmp_path, "c")
    try:
        wait_until(lambda: restored_offsets(c, set(ends)) == dict.fromkeys(ends, -1)
                   and c.metrics().get(
                       'pacesetter_worker_checkpoints_total{result="refused"}', 0) >= len(ends),
                   90, what="the checkpoints refused and every partition replayed")
        wait_for_oracle(bootstrap, env, want, 150, [c])
        # (/metrics shows a snapshot up to a second old: the records may be newer than it)
        wait_until(lambda: c.metrics().get(
            "pacesetter_worker_rebuild_messages_replayed_total", 0) >= total,
            10, interval=0.5, what="/metrics to show every message replayed")
    finally:
        c.stop()
        store.close()


def test_a_topic_made_again_under_the_same_name_is_not_taken_for_the_checkpointed_one(
        tmp_path: Path) -> None:
    """An embedded broker restarted (or a cluster rebuilt) has the same topic names, empty;
    events published again can grow a partition past a checkpoint's offset with messages the
    checkpoint never saw. Offsets alone would have the state continue from another stream."""
    from services.kafka.broker import EmbeddedBroker, free_port
    from tests.integration.harness import topic_env

    with EmbeddedBroker("127.0.0.1", free_port()) as first:
        env = {**topic_env(first.bootstrap, tmp_path, partitions=2),
               "PACESETTER_CHECKPOINT_SECONDS": "1", "PACESETTER_CHECKPOINT_LOOP_SHARE": "1"}
        topic = env["PACESETTER_TOPIC_EVENTS"]
        produce_lines(first.bootstrap, topic, hostile_day(seed=61, rooms=2, days=0.25),
                      batch=20)
        ends = end_offsets(first.bootstrap, topic)
        a = start_worker(env, tmp_path, "a")
        store = HistoryStore.open(env["PACESETTER_STORE_URL"])
        try:
            wait_checkpointed(a, store, topic, ends)
        finally:
            a.stop()
    # the same names on a new broker, and other events, one a message: past every checkpoint
    with EmbeddedBroker("127.0.0.1", free_port()) as second:
        env = {**env, "PACESETTER_BOOTSTRAP_SERVERS": second.bootstrap}
        lines = hostile_day(seed=62, rooms=2, days=0.25)
        want = expected(lines)
        produce_lines(second.bootstrap, topic, lines, batch=1)
        now_ends = end_offsets(second.bootstrap, topic)
        # the rooms' partitions grew past their checkpoints (a few broken lines, keyed by
        # nothing, went to others: those end short of theirs, which a rebuild saw already)
        saved = {p: store.checkpoint(topic, p) for p in ends}
        rooms_partitions = {p for p, end in ends.items() if end > 50}
        assert rooms_partitions and all(now_ends.get(p, 0) > saved[p].next_offset  # type: ignore[union-attr]
                                        for p in rooms_partitions), (ends, now_ends)
        b = start_worker(env, tmp_path, "b")
        try:
            wait_for_oracle(second.bootstrap, env, want, 150, [b])
            # (/metrics shows a snapshot up to a second old: the records may be newer than it)
            wait_until(lambda: b.metrics().get(
                'pacesetter_worker_checkpoints_total{result="refused"}', 0) >= len(ends)
                and restored_offsets(b, set(ends)) == dict.fromkeys(ends, -1), 10,
                interval=0.5, what="/metrics to show the checkpoints refused")
            assert b.metrics()['pacesetter_worker_checkpoints_total{result="restored"}'] == 0
        finally:
            b.stop()
            store.close()
