"""bench_broker.py's windows: the delays of the records sent in a window, and the broker's CPU."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from tests.benchmarks.conftest import load_benchmark


@pytest.fixture(scope="module")
def broker_bench() -> ModuleType:
    return load_benchmark("bench_broker")


def test_a_window_holds_the_records_sent_in_it_whenever_they_arrived(
        broker_bench: ModuleType) -> None:
    # (sent, delay): one before the window, 100 in it (the last one slow), one after it
    delays = [(9.9, 5.0)] + [(10.0 + i / 100, 0.010) for i in range(99)] + [(10.995, 2.0)]
    delays.append((15.0, 7.0))
    row = broker_bench.window(delays, 10.0, 15.0, None, 0.0)
    assert row["records"] == 100
    assert row["p50_ms"] == pytest.approx(10.0)
    assert row["p99_ms"] == pytest.approx(10.0)
    assert row["max_ms"] == pytest.approx(2000.0)
    assert row["broker_cores"] is None  # no broker of ours to read


def test_the_broker_share_is_cpu_seconds_over_the_window(broker_bench: ModuleType) -> None:
    pid = os.getpid()
    mark = broker_bench.cpu_seconds(pid)
    row = broker_bench.window([], 0.0, 1e9, pid, mark)
    assert row["records"] == 0 and row["p99_ms"] is None
    assert row["broker_cores"] == 0.0  # this process over a very long window
