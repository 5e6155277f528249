"""Rebalances keep what they can: a partition that stays with its worker is not rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.kafka.broker import ensure_topics
from services.simulation.simulator import simulate_events
from tests.chaos import hostile
from tests.integration.harness import Process, produce_lines, topic_env, wait_until
from tests.integration.test_worker import expected, wait_for_oracle

pytestmark = pytest.mark.integration

PARTITIONS = 4


def owned(worker: Process) -> set[int]:
    """The partitions a worker owns now, from its /metrics."""
    prefix = 'pacesetter_worker_partition_owned{partition="'
    return {int(k[len(prefix):-2]) for k, v in worker.metrics().items()
            if k.startswith(prefix) and v == 1}


def counts(worker: Process, name: str) -> dict[int, float]:
    """A per-partition counter of a worker's /metrics."""
    prefix = f'{name}{{partition="'
    return {int(k[len(prefix):-2]): v for k, v in worker.metrics().items()
            if k.startswith(prefix)}


def settled(workers: list[Process]) -> bool:
    """Every partition owned by exactly one ready worker."""
    seen = [owned(w) for w in workers]
    return (all(w.readyz()[0] == 200 for w in workers) and all(seen)
            and sum(map(len, seen)) == PARTITIONS and set().union(*seen) == set(range(PARTITIONS)))


def test_partitions_kept_through_a_join_and_a_leave_are_not_rebuilt(
        bootstrap: str, tmp_path: Path) -> None:
    env = topic_env(bootstrap, tmp_path, partitions=PARTITIONS)
    lines = hostile(list(simulate_events(rooms=6, days=0.25, seed=61)), 61)
    first, second, third = lines[:len(lines) // 3], lines[len(lines) // 3:2 * len(lines) // 3], \
        lines[2 * len(lines) // 3:]
    topic = env["PACESETTER_TOPIC_EVENTS"]
    ensure_topics(bootstrap, [topic], PARTITIONS)
    a = Process(["worker"], env, tmp_path / "a.log")
    b: Process | None = None
    try:
        produce_lines(bootstrap, topic, first)
        wait_for_oracle(bootstrap, env, expected(first), 150, [a])
        wait_until(lambda: settled([a]), 60, what="worker a owning every partition")
        assert counts(a, "pacesetter_worker_rebuilds_total") == dict.fromkeys(range(PARTITIONS), 1)

        b = Process(["worker"], env, tmp_path / "b.log")
        wait_until(lambda: settled([a, b]), 120, what="a and b sharing the partitions")
        stayed = owned(a)
        rebuilds = counts(a, "pacesetter_worker_rebuilds_total")
        assert stayed and all(rebuilds[p] == 1 for p in stayed), (stayed, rebuilds)
        kept = counts(a, "pacesetter_worker_partitions_kept_total")
        assert all(kept.get(p, 0) >= 1 for p in stayed), (stayed, kept)
        produce_lines(bootstrap, topic, second)
        wait_for_oracle(bootstrap, env, expected(first + second), 150, [a, b])

        b.stop()
        wait_until(lambda: settled([a]), 120, what="a owning every partition again")
        rebuilds = counts(a, "pacesetter_worker_rebuilds_total")
        # what a kept all along was never rebuilt; what b had was rebuilt once more
        assert all(rebuilds[p] == 1 for p in stayed), (stayed, rebuilds)
        assert all(rebuilds[p] == 2 for p in set(range(PARTITIONS)) - stayed), rebuilds
        produce_lines(bootstrap, topic, third)
        wait_for_oracle(bootstrap, env, expected(lines), 150, [a])
    finally:
        if b is not None:
            b.stop()
        a.stop()
