"""Erlang C and Erlang A: worked examples, internal consistency and agreement with pyworkforce."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecasting.service import what_if
from services.contract.errors import PacesetterError
from services.planning.erlang import (
    QueueInputError,
    erlang_a,
    erlang_a_many,
    erlang_c,
    erlang_c_many,
    required_handlers,
    required_handlers_many,
)

WHAT_IF_KEYS = {"model", "offered_load_erlangs", "p_wait", "service_level", "asa_seconds",
                "mean_wait_seconds", "abandonment", "occupancy"}


def test_erlang_c_reproduces_the_worked_example_of_metrics_md():
    # 100 calls per 30 min, AHT 180 s, 14 handlers, SL at 20 s.
    result = erlang_c(100, 1800, 180, 14, 20)
    assert set(result) == WHAT_IF_KEYS
    assert result["model"] == "erlang_c"
    assert result["offered_load_erlangs"] == pytest.approx(10.0)
    assert round(result["p_wait"], 4) == 0.1741
    assert round(result["service_level"], 4) == 0.8884
    assert round(result["asa_seconds"], 2) == 7.84
    assert round(result["occupancy"], 4) == 0.7143
    # API.md's six-decimal figures
    assert round(result["p_wait"], 6) == 0.174132
    assert round(result["service_level"], 6) == 0.888350
    assert round(result["asa_seconds"], 6) == 7.835937
    assert result["mean_wait_seconds"] == result["asa_seconds"]
    assert result["abandonment"] is None


def test_erlang_a_reproduces_the_worked_example_with_five_minutes_patience():
    result = erlang_a(100, 1800, 180, 14, 20, 300)
    assert set(result) == WHAT_IF_KEYS
    assert result["model"] == "erlang_a"
    assert round(result["p_wait"], 6) == 0.145260
    assert round(result["abandonment"], 6) == 0.013984
    assert round(result["occupancy"], 6) == 0.704297
    assert round(result["mean_wait_seconds"] / 60, 6) == 0.069919
    assert round(result["mean_wait_seconds"], 3) == 4.195


def test_what_if_answers_in_the_api_shape_rounded_to_six_places():
    c = what_if(100, 1800, 180, 14, 20)
    assert c == {"model": "erlang_c", "offered_load_erlangs": 10.0, "p_wait": 0.174132,
                 "service_level": 0.88835, "asa_seconds": 7.835937,
                 "mean_wait_seconds": 7.835937, "abandonment": None, "occupancy": 0.714286}
    a = what_if(100, 1800, 180, 14, 20, patience_seconds=300)
    assert a["model"] == "erlang_a"
    assert (a["p_wait"], a["abandonment"], a["occupancy"]) == (0.14526, 0.013984, 0.704297)


def test_erlang_a_obeys_littles_law_for_abandonment():
    # P(abandon) = θ · E[wait of all arrivals] with exponential patience.
    for calls, handlers, patience in ((100, 14, 300), (300, 52, 60), (40, 5, 120), (900, 160, 30)):
        r = erlang_a(calls, 900, 180, handlers, 20, patience)
        assert r["abandonment"] == pytest.approx(r["mean_wait_seconds"] / patience, rel=1e-9)
        answered = 1 - r["abandonment"]
        assert r["occupancy"] == pytest.approx(r["offered_load_erlangs"] * answered / handlers)
        assert 0 <= r["service_level"] <= 1 - r["abandonment"] + 1e-12


def test_erlang_a_with_endless_patience_is_erlang_c():
    c = erlang_c(100, 1800, 180, 14, 20)
    a = erlang_a(100, 1800, 180, 14, 20, patience_seconds=1e9)
    for key in ("p_wait", "service_level", "asa_seconds", "occupancy"):
        assert a[key] == pytest.approx(c[key], rel=1e-5), key
    assert a["abandonment"] < 1e-7


def test_erlang_a_is_stable_even_when_handlers_are_fewer_than_the_load():
    r = erlang_a(200, 900, 300, 50, 60, 120)  # A = 66.7 Erlangs > 50 handlers
    # At most N of the A Erlangs can be carried: at least 1 − N/A of callers abandon.
    assert 1 - 50 / r["offered_load_erlangs"] <= r["abandonment"] < 1
    assert 0.8 < r["p_wait"] < 1
    assert r["occupancy"] <= 1.0


@pytest.mark.parametrize("handlers", [300, 800])
def test_large_rooms_are_numerically_stable(handlers):
    calls = handlers * 0.9 * 900 / 240  # 90 % of the handlers' capacity
    c = erlang_c(calls, 900, 240, handlers, 10)
    a = erlang_a(calls, 900, 240, handlers, 10, 180)
    for r in (c, a):
        assert all(math.isfinite(r[k]) for k in ("p_wait", "service_level", "asa_seconds"))
        assert 0 <= r["p_wait"] <= 1 and 0 <= r["service_level"] <= 1
    assert a["p_wait"] < c["p_wait"]  # abandons shorten the queue
    n = required_handlers(calls, 900, 240, 10, 0.9, 0.95)
    assert handlers * 0.9 < n < handlers * 1.1


def test_unstable_erlang_c_reports_an_unbounded_queue_without_crashing():
    r = erlang_c(100, 900, 180, 20, 20)  # A = 20 = N
    assert (r["p_wait"], r["service_level"], r["asa_seconds"]) == (1.0, 0.0, None)
    assert r["occupancy"] == 1.0


def test_no_calls_means_no_waiting():
    r = erlang_c(0, 900, 180, 3, 20)
    assert (r["p_wait"], r["service_level"], r["asa_seconds"], r["occupancy"]) == (0, 1, 0, 0)
    assert required_handlers(0, 900, 180, 20, 0.8, 0.85) == 0


@pytest.mark.parametrize("kwargs", [
    {"calls": -1}, {"aht_seconds": 0}, {"handlers": 2.5}, {"interval_seconds": 0},
    {"handlers": -1}, {"calls": float("nan")}, {"threshold_seconds": -5},
])
def test_impossible_inputs_raise_a_domain_error_naming_the_parameter(kwargs):
    args = {"calls": 100, "interval_seconds": 1800, "aht_seconds": 180, "handlers": 14,
            "threshold_seconds": 20} | kwargs
    with pytest.raises(QueueInputError) as caught:
        erlang_c(**args)
    assert isinstance(caught.value, PacesetterError)
    assert next(iter(kwargs)) in str(caught.value)
    with pytest.raises(QueueInputError):
        erlang_a(**args, patience_seconds=300)
    with pytest.raises(QueueInputError, match="patience_seconds"):
        erlang_a(100, 1800, 180, 14, 20, patience_seconds=0)


def test_required_handlers_is_the_smallest_count_meeting_target_and_occupancy():
    n = required_handlers(100, 1800, 180, 20, 0.80, 0.85)
    assert n == 14
    assert erlang_c(100, 1800, 180, n, 20)["service_level"] >= 0.80
    below = erlang_c(100, 1800, 180, n - 1, 20)
    assert below["service_level"] < 0.80 or below["occupancy"] > 0.85
    # Occupancy can be the binding constraint: a lax SL target, a strict occupancy cap.
    assert required_handlers(100, 1800, 180, 20, 0.30, 0.60) == math.ceil(10 / 0.60)
    # Erlang A needs no more handlers than Erlang C: abandons lighten the load.
    assert required_handlers(100, 1800, 180, 20, 0.8, 0.85, patience_seconds=300) <= n


def test_vectorised_requirements_equal_the_scalar_ones():
    rng = np.random.default_rng(5)
    calls = np.concatenate([[0.0, 0.2, 3.0], rng.uniform(0, 400, 60)])
    aht = rng.uniform(120, 420, calls.size)
    many = required_handlers_many(calls, 900, aht, 10, 0.9, 0.85)
    one = [required_handlers(c, 900, a, 10, 0.9, 0.85) for c, a in zip(calls, aht, strict=True)]
    assert many.tolist() == one
    figures = erlang_c_many(calls, 900, aht, many, 10)
    for i in range(3, calls.size):
        scalar = erlang_c(float(calls[i]), 900, float(aht[i]), int(many[i]), 10)
        assert figures["p_wait"][i] == pytest.approx(scalar["p_wait"], rel=1e-9)
        assert figures["service_level"][i] == pytest.approx(scalar["service_level"], rel=1e-9)
        assert figures["asa_seconds"][i] == pytest.approx(scalar["asa_seconds"], rel=1e-9)
    a_many = erlang_a_many(calls, 900, aht, many, 200)
    for i in range(1, calls.size):
        scalar = erlang_a(float(calls[i]), 900, float(aht[i]), int(many[i]), 10, 200)
        for key in ("p_wait", "abandonment", "mean_wait_seconds", "occupancy"):
            assert a_many[key][i] == pytest.approx(scalar[key], rel=1e-7, abs=1e-15), key


# pyworkforce (a peer implementation) takes minutes, and its "asa" is the SL threshold.
GRID = [(transactions, aht_min, interval_min, threshold_s)
        for transactions in (8, 45, 100, 320, 1200)
        for aht_min in (2.0, 3.0, 6.5)
        for interval_min in (15, 30)
        for threshold_s in (10, 20, 60)]


@pytest.mark.parametrize(("transactions", "aht_min", "interval_min", "threshold_s"), GRID)
def test_erlang_c_agrees_with_pyworkforce(transactions, aht_min, interval_min, threshold_s):
    queuing = pytest.importorskip("pyworkforce.queuing")
    peer = queuing.ErlangC(transactions=transactions, aht=aht_min, asa=threshold_s / 60,
                           interval=interval_min)
    load = transactions / interval_min * aht_min
    for handlers in range(math.floor(load) + 1, math.floor(load) + 12):
        ours = erlang_c(transactions, interval_min * 60, aht_min * 60, handlers, threshold_s)
        p_wait = peer.waiting_probability(handlers)
        assert ours["p_wait"] == pytest.approx(p_wait, rel=1e-9, abs=1e-14)
        assert ours["service_level"] == pytest.approx(peer.service_level(handlers), rel=1e-9)
        assert ours["occupancy"] == pytest.approx(peer.achieved_occupancy(handlers), rel=1e-12)
        # pyworkforce has no ASA: the textbook formula on its P(wait).
        asa = p_wait * aht_min * 60 / (handlers - load)
        assert ours["asa_seconds"] == pytest.approx(asa, rel=1e-9, abs=1e-12)
    for target, max_occ in ((0.8, 0.85), (0.9, 1.0), (0.95, 0.9)):
        theirs = peer.required_positions(service_level=target, max_occupancy=max_occ)
        ours_n = required_handlers(transactions, interval_min * 60, aht_min * 60, threshold_s,
                                   target, max_occ)
        # pyworkforce starts its search at round(A + 1), so it can overshoot by one.
        assert ours_n <= theirs["raw_positions"] <= ours_n + 1
        if ours_n < theirs["raw_positions"]:
            assert round(load + 1) > ours_n


def test_absurd_overload_is_refused_instead_of_exhausting_memory():
    # 100,000 calls a minute, a day's handling each: the queue would hold millions.
    with pytest.raises(QueueInputError, match="beyond what Erlang A"):
        erlang_a(100_000, 60, 86_400, 10_000, 600, 86_400)
    assert erlang_c(100_000, 60, 86_400, 10_000, 600)["p_wait"] == 1.0
