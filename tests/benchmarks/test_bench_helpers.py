"""The measuring parts of bench_national.py and bench_rebalance.py, on small inputs: what they
read from /proc, what they charge to each kind of state, and when they call rooms exact."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest

from tests import oracle
from tests.benchmarks.conftest import load_benchmark


@pytest.fixture(scope="module")
def national() -> ModuleType:
    return load_benchmark("bench_national")


@pytest.fixture(scope="module")
def rebalance() -> ModuleType:
    return load_benchmark("bench_rebalance")


def test_memory_is_read_from_proc_and_peak_is_at_least_resident(national: ModuleType) -> None:
    figures = national.memory_mb(os.getpid())
    assert 0 < figures["VmRSS"] <= figures["VmHWM"]
    assert national.memory_mb(2**22 + 12345) == {}  # a process that is gone: nothing


def test_each_object_is_charged_once(national: ModuleType) -> None:
    shared = "x" * 1000
    counted: set[int] = set()
    first = national.deep_size([shared], counted)
    second = national.deep_size((shared, shared), counted)
    assert first > 1000 > second > 0


def test_breakdown_holds_an_id_per_event_and_charges_every_kind(national: ModuleType) -> None:
    figures = national.breakdown(rooms=2, days=0.05, seed=3, scale=1.0)
    assert figures["events"] > 500 and figures["rooms"] == 2
    assert figures["held"]["seen ids"] == figures["events"]  # no duplicates simulated
    assert figures["held"]["calls"] > 0 and figures["state_mb"]["calls"] > 0
    assert figures["total_mb"] == pytest.approx(sum(figures["state_mb"].values()), abs=0.2)


class FakeWatcher:
    def __init__(self, latest: dict[tuple[str, str], tuple[Any, int]]):
        self.latest = latest

    def snapshot(self) -> dict[tuple[str, str], tuple[Any, int]]:
        return dict(self.latest)


def test_rooms_are_exact_from_the_last_change_of_their_records(rebalance: ModuleType) -> None:
    want = oracle.OracleResult(
        intervals={"a|999|t1": {"offered": 3}, "a|999|t2": {"offered": 1},
                   "b|999|t1": {"offered": 7}},
        handlers={"a|h1|t1": {"busy": 2.5}})
    latest: dict[tuple[str, str], tuple[Any, int]] = {
        ("interval", "a|999|t1"): ({"offered": 3}, 1_000),
        ("interval", "a|999|t2"): ({"offered": 1}, 5_000),
        ("interval", "b|999|t1"): ({"offered": 6}, 9_000),  # room b is not asked about
        ("handlers", "a|h1|t1"): ({"busy": 2.5}, 2_000)}
    assert rebalance.exact_since(FakeWatcher(latest), want, {"a"}) == (5_000, None)
    since, difference = rebalance.exact_since(FakeWatcher(latest), want, {"a", "b"})
    assert since is None and "offered: 6 != 7" in difference
    missing = {k: v for k, v in latest.items() if k != ("interval", "a|999|t2")}
    since, difference = rebalance.exact_since(FakeWatcher(missing), want, {"a"})
    assert since is None and "1 keys differ" in difference


def test_the_tail_is_the_last_simulated_half_hour(rebalance: ModuleType) -> None:
    events = [{"i": i} for i in range(48 * 100)]  # one day
    cut = rebalance.split_tail(events, 1.0)
    assert len(events) - cut == 100
    assert rebalance.split_tail(events[:10], 1.0) == 10 - rebalance.ROOMS


def test_rooms_go_to_the_partition_the_producers_choose(rebalance: ModuleType) -> None:
    from aiokafka.partitioner import DefaultPartitioner  # its own murmur2, as Java's

    parts = list(range(rebalance.PARTITIONS))
    for room in ("north", "south", "room-5", "live3"):
        chosen = DefaultPartitioner()(room.encode(), parts, parts)
        assert rebalance.partition_of(room) == chosen


def test_the_rebuild_from_checkpoints_is_read_from_the_worker_log() -> None:
    stream = load_benchmark("bench_stream")
    log = (
        "[t] partition 1 rebuilt: 0 messages, 1 rooms in 1.26 s (committed offset 613; start-up "
        "1.260 s, then replay and publication 0.000 s; process CPU 1.583 to 2.365 s); from the "
        "checkpoint at offset 613: start-up 0.074 s, then read and restored in 0.452 s, done "
        "1.186 s after the read began\n"
        "[t] partition 2 rebuilt: 9 messages, 2 rooms in 1.38 s (committed offset 1193; start-up "
        "1.380 s, then replay and publication 0.000 s; process CPU 1.586 to 2.408 s); from the "
        "checkpoint at offset 1190: start-up 0.069 s, then read and restored in 0.840 s, done "
        "1.311 s after the read began\n"
        "[t] partition 3 rebuilt: 4 messages, 0 rooms in 0.7 s (committed offset 0; start-up "
        "0.6 s, then replay and publication 0.1 s; process CPU 1.6 to 1.9 s); full replay\n"
        "[t] partition 2: checkpoint at offset 1000 saved (2 rooms, 9.5 MB; the event loop "
        "paused 0.500 s to take it, 0.2 s to encode and write)\n"
        "[t] partition 2: checkpoint at offset 1193 saved (2 rooms, 10.9 MB; the event loop "
        "paused 0.646 s to take it, 0.238 s to encode and write)\n"
    )
    partitions, seconds = stream.checkpoint_rebuild_seconds(log)
    # from the first read (0.069 s) to the last partition done (0.069 + 1.311 s)
    assert partitions == 2 and seconds == pytest.approx(1.311)
    assert stream.checkpoints_saved(log) == {2: (1193, 10.9, 0.646)}
    assert stream.checkpoint_rebuild_seconds("full replay") == (0, 0.0)
