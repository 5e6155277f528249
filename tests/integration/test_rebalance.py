"""Rebalances keep what they can: two workers, a third joins, then one is stopped.

Throughout, the records equal the oracle's; a partition that stays with its worker is not
rebuilt (read from the workers' /metrics); and rooms fed live while the third worker joins keep
publishing their live state when their partition did not move. The feed stops once the join
settled: a topic that never goes quiet cannot be read to its end for the oracle comparison.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from services.kafka.broker import ensure_topics
from services.kafka.ingest import Publisher
from services.simulation.simulator import simulate_events
from tests.chaos import hostile
from tests.integration.harness import (
    Process,
    owned,
    per_partition,
    produce_lines,
    read_records,
    read_topic,
    topic_env,
    wait_until,
)
from tests.integration.test_worker import expected, wait_for_oracle

pytestmark = pytest.mark.integration

PARTITIONS = 6
REBUILDS = "pacesetter_worker_rebuilds_total"
KEPT = "pacesetter_worker_partitions_kept_total"
LIVE_ROOMS = frozenset(f"steady{i}" for i in range(12))  # spread over the partitions
LINE = "101"


def settled(workers: list[Process]) -> bool:
    """Every partition owned by exactly one ready worker."""
    seen = [owned(w) for w in workers]
    return (all(w.readyz()[0] == 200 for w in workers) and all(seen)
            and sum(map(len, seen)) == PARTITIONS and set().union(*seen) == set(range(PARTITIONS)))


class LiveFeed:
    """One offered (and abandoned) call per live room every 0.25 s, stamped now, until
    stopped."""

    def __init__(self, bootstrap: str, topic: str):
        self.publisher = Publisher(bootstrap, topic, batch_events=1)
        self.stop = threading.Event()
        self.sent = dict.fromkeys(LIVE_ROOMS, 0)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            for room in sorted(LIVE_ROOMS):
                n += 1
                # abandoned at once: no call left waiting, whose growing wait would have its
                # interval record published again at every flush (no quiet topic to read)
                call = {"room": room, "at": at, "call": f"live-{n}"}
                events = [{"v": 1, "id": f"live-{n}", "type": "call.offered", "line": LINE,
                           **call},
                          {"v": 1, "id": f"live-{n}-a", "type": "call.abandoned", **call}]
                self.publisher.send_raw(room, orjson.dumps(events))
                self.sent[room] += 1
            self.stop.wait(0.25)
        self.publisher.close()


def live_offered(bootstrap: str, topic: str) -> dict[str, list[tuple[float, int]]]:
    """Per live room, every published live state as (publish time in s, offered on LINE)."""
    out: dict[str, list[tuple[float, int]]] = {}
    for m in sorted(read_records(bootstrap, topic, idle_seconds=0.5),
                    key=lambda m: (m.partition, m.offset)):
        room = m.key.decode() if m.key is not None else None
        if room in LIVE_ROOMS:
            figures = (orjson.loads(m.value).get("lines") or {}).get(LINE)
            if figures is not None:
                out.setdefault(room, []).append(
                    (m.timestamp / 1000, int(figures["rolling_60m"]["offered"])))
    return out


def test_two_workers_a_third_joins_then_one_stops_keeping_what_stayed(
        bootstrap: str, tmp_path: Path) -> None:
    env = topic_env(bootstrap, tmp_path, partitions=PARTITIONS)
    lines = hostile(list(simulate_events(rooms=4, days=0.2, seed=61)), 61)
    first, second, third = (lines[:len(lines) // 3], lines[len(lines) // 3:2 * len(lines) // 3],
                            lines[2 * len(lines) // 3:])
    topic = env["PACESETTER_TOPIC_EVENTS"]
    ensure_topics(bootstrap, [topic], PARTITIONS)
    produce_lines(bootstrap, topic, first)
    workers = [Process(["worker"], env, tmp_path / f"{name}.log") for name in ("a", "b")]
    feed: LiveFeed | None = None
    try:
        a, b = workers
        wait_until(lambda: settled([a, b]), 120, what="a and b sharing the partitions")
        wait_for_oracle(bootstrap, env, expected(first), 150, [a, b], LIVE_ROOMS)

        # a third worker joins while live rooms are fed
        feed = live = LiveFeed(bootstrap, topic)
        live.thread.start()
        wait_until(lambda: min(live.sent.values()) >= 4, 30, 0.2, what="the live feed")
        before = {i: owned(w) for i, w in enumerate(workers)}
        rebuilds = {i: per_partition(w, REBUILDS) for i, w in enumerate(workers)}
        kept = {i: per_partition(w, KEPT) for i, w in enumerate(workers)}
        joined = time.time()
        workers.append(Process(["worker"], env, tmp_path / "c.log"))
        c = workers[2]
        wait_until(lambda: settled(workers), 120, 0.5, what="a, b and c sharing the partitions")
        settled_at = time.time()
        stayed = {i: before[i] & owned(w) for i, w in enumerate(workers[:2])}
        assert any(stayed.values()), f"no partition stayed: {before} -> {owned(a)}, {owned(b)}"
        for i, w in enumerate(workers[:2]):
            now_rebuilt, now_kept = per_partition(w, REBUILDS), per_partition(w, KEPT)
            for p in stayed[i]:
                assert now_rebuilt[p] == rebuilds[i][p], (i, p, rebuilds[i], now_rebuilt)
                assert now_kept.get(p, 0) > kept[i].get(p, 0), (i, p, kept[i], now_kept)
        assert set(per_partition(c, REBUILDS)) == owned(c)  # the newcomer rebuilt what it took

        time.sleep(2)
        live.stop.set()  # (a steady feed never lets a topic reader see its end)
        live.thread.join(30)

        # live rooms whose partition stayed kept publishing while the group rebalanced
        partition_of = {k.decode(): p for k, _v, p, _o in read_topic(bootstrap, topic)
                        if k is not None and k.decode() in LIVE_ROOMS}
        untouched = {room for room, p in partition_of.items() if any(
            p in s for s in stayed.values())}
        assert untouched, f"no live room on a partition that stayed: {partition_of}, {stayed}"
        states = live_offered(bootstrap, env["PACESETTER_TOPIC_LIVE"])
        for room in sorted(untouched):
            during = [(t, n) for t, n in states.get(room, []) if joined <= t <= settled_at + 1]
            counts = [n for _t, n in during]
            assert len(set(counts)) >= 3 and counts == sorted(counts), (room, during)
            times = [joined] + [t for t, _n in during] + [settled_at]
            gap = max(later - earlier for earlier, later in zip(times, times[1:], strict=False))
            # a short pause for the group's join, never a wait for a rebuild of its own
            assert gap < 20, f"{room}: no live state for {gap:.1f} s during the rebalance"
        # every live call reached its room's live state, none lost in the moves
        wait_until(lambda: {room: states[-1][1] for room, states in live_offered(
            bootstrap, env["PACESETTER_TOPIC_LIVE"]).items()} == live.sent, 60,
            what="every live call counted in its room's live state")

        produce_lines(bootstrap, topic, second)
        wait_for_oracle(bootstrap, env, expected(first + second), 150, workers, LIVE_ROOMS)

        # one of the three stops: the other two keep theirs and take its partitions
        before = {i: owned(w) for i, w in enumerate(workers)}
        rebuilds = {i: per_partition(w, REBUILDS) for i, w in enumerate(workers)}
        kept = {i: per_partition(w, KEPT) for i, w in enumerate(workers)}
        gone = workers.pop(0)
        gone.stop()
        wait_until(lambda: settled(workers), 120, 0.5, what="b and c owning every partition")
        for i, w in enumerate(workers, start=1):
            now_rebuilt, now_kept = per_partition(w, REBUILDS), per_partition(w, KEPT)
            for p in before[i] & owned(w):
                assert now_rebuilt[p] == rebuilds[i][p], (i, p, rebuilds[i], now_rebuilt)
                assert now_kept.get(p, 0) > kept[i].get(p, 0), (i, p, kept[i], now_kept)
            for p in before[0] & owned(w):  # what a had was rebuilt by its new owner
                assert now_rebuilt[p] == rebuilds[i].get(p, 0) + 1, (i, p, now_rebuilt)
        produce_lines(bootstrap, topic, third)
        wait_for_oracle(bootstrap, env, expected(lines), 150, workers, LIVE_ROOMS)

    finally:
        if feed is not None:
            feed.stop.set()
            feed.thread.join(30)
        for w in workers:
            w.stop()
