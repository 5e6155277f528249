"""Heavy checks: 4-week backtests on eight weeks of simulated history, Erlang A by simulation."""

from __future__ import annotations

import heapq
from datetime import UTC, date, datetime

import numpy as np
import pytest

from forecasting import service
from forecasting.synthetic import synthetic_intervals
from services.history.store import HistoryStore
from services.planning.erlang import erlang_a

pytestmark = pytest.mark.slow
START = date(2026, 9, 26)


def simulator_records() -> list[dict]:
    """Eight weeks of one room from the control-room simulator, through the stream's engine."""
    import orjson

    from services.contract.settings import Settings
    from services.figures.report import compute_records
    from services.simulation.simulator import simulate_events

    events = (orjson.dumps(e) for e in simulate_events(rooms=1, days=56, start=START, seed=11))
    return list(compute_records(events, Settings(), wall_us=4_000_000_000_000_000).intervals
                .values())


def synthetic_records() -> list[dict]:
    first = datetime(2026, 9, 25, 23, tzinfo=UTC)
    return (synthetic_intervals("north", "999", first, 56, seed=31)
            + synthetic_intervals("north", "101", first, 56, seed=32))


SOURCES = ["synthetic", "simulator"]


@pytest.mark.parametrize("source", SOURCES)
def test_the_chosen_method_beats_the_seasonal_naive_on_four_held_out_weeks(source):
    records = simulator_records() if source == "simulator" else synthetic_records()
    with HistoryStore.open("sqlite:///:memory:") as store:
        store.upsert_intervals(records)
        for line in ("999", "101"):
            result = service.backtest(store, "north", line, weeks=4)
            scores = result["methods"]
            chosen = scores[result["chosen"]]
            print(source, line, {m: (s["wape"], s["mase"], s["coverage"])
                                 for m, s in scores.items()})
            assert len(result["origins"]) == 4
            assert chosen["wape"] < scores["seasonal_naive"]["wape"]
            assert chosen["mase"] < 1.0
            assert 0.8 <= chosen["coverage"] <= 0.98  # the 90 % interval is honest


def simulate_erlang_a(calls: float, interval: float, aht: float, handlers: int,
                      threshold: float, patience: float, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(interval / calls, n))
    service_times = rng.exponential(aht, n)
    patiences = rng.exponential(patience, n)
    free = [0.0] * handlers  # first-come first-served; abandoners never take a handler
    waits = np.empty(n)
    answered = np.zeros(n, dtype=bool)
    for i in range(n):
        start = max(arrivals[i], free[0])
        wait = start - arrivals[i]
        if wait > patiences[i]:
            waits[i] = patiences[i]
        else:
            heapq.heapreplace(free, start + service_times[i])
            waits[i] = wait
            answered[i] = True
    return {"p_wait": float((waits > 0).mean()), "abandonment": float(1 - answered.mean()),
            "service_level": float((answered & (waits < threshold)).mean()),
            "asa_seconds": float(waits[answered].mean()), "mean_wait_seconds": float(waits.mean())}


@pytest.mark.parametrize(("calls", "handlers", "patience"), [(100, 14, 300), (150, 14, 120)])
def test_erlang_a_agrees_with_a_simulated_queue(calls, handlers, patience):
    exact = erlang_a(calls, 1800, 180, handlers, 20, patience)
    simulated = simulate_erlang_a(calls, 1800, 180, handlers, 20, patience, 300_000, seed=4)
    for key, tolerance in (("p_wait", 0.01), ("abandonment", 0.004), ("service_level", 0.01),
                           ("asa_seconds", 0.6), ("mean_wait_seconds", 0.6)):
        assert simulated[key] == pytest.approx(exact[key], abs=tolerance), key

