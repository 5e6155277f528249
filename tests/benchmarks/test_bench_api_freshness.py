"""bench_api.py's freshness arithmetic: lost probes count as infinite delays, and stage
percentiles come from the growth of the stage histograms. Fed numbers, no benchmark runs."""

from __future__ import annotations

import math
from types import ModuleType

import pytest

from tests.benchmarks.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("bench_api")


def test_a_lost_probe_is_an_infinite_delay_and_more_than_1_percent_lost_leaves_no_p99(
        bench: ModuleType) -> None:
    sent = [float(i) for i in range(100)]
    seen = [t + 0.1 for t in sent[:99]]  # the last probe never showed
    delays = bench.probe_delays(sent, seen)
    assert len(delays) == 100 and delays[-1] == math.inf
    assert bench.finite_ms(bench.percentile(delays, 0.99)) == pytest.approx(100.0)
    two_lost = bench.probe_delays(sent, seen[:98])
    assert bench.finite_ms(bench.percentile(two_lost, 0.99)) is None
    assert bench.finite_ms(max(two_lost)) is None


def test_stage_percentiles_come_from_what_the_histograms_counted_during_the_run(
        bench: ModuleType) -> None:
    before = {"publish": {0.05: 10.0, 0.1: 10.0, 0.2: 10.0, math.inf: 10.0}}
    # during the run: 50 publications under 50 ms, 50 between 100 and 200 ms
    after = {"publish": {0.05: 60.0, 0.1: 60.0, 0.2: 110.0, math.inf: 110.0},
             "sse": {0.001: 0.0, math.inf: 3.0}}
    stages = bench.stage_figures(before, after)
    assert stages["publish"]["count"] == 100
    assert stages["publish"]["p50_ms"] == pytest.approx(50.0)
    assert stages["publish"]["p99_ms"] == pytest.approx(198.0)
    assert stages["sse"]["p99_ms"] is None  # in the +Inf bucket: unbounded
    assert stages["fetch"] == {"count": 0, "p50_ms": None, "p99_ms": None}
