"""The soak's verdict (benchmarks/soak.py) from per-minute samples: what passes, what fails, why.

The soak itself runs for 20 minutes (`make soak`); its judgement is plain arithmetic on the
minutes it measured, checked here on samples made up for each case.
"""

from __future__ import annotations

from benchmarks.soak import Minute, verdict, windows  # a dataclass: imported, not loaded

RATE = 2000
EVENTS = RATE * 60


def minutes(n: int = 20, rss: dict[str, list[float]] | None = None,
            delay: float = 100.0, late: float | None = None, probes: int = 300) -> list[Minute]:
    """``n`` minutes of 300 probes each, delays ``delay`` ms (``late`` in the last 5 minutes)."""
    out = []
    for m in range(1, n + 1):
        sizes = {name: values[m - 1] for name, values in (rss or {}).items()} or {
            "broker": 100.0, "worker": 800.0, "api": 150.0, "driver": 90.0}
        d = late if late is not None and m > n - 5 else delay
        out.append(Minute(m, sizes, [d] * probes, probes, EVENTS))
    return out


def test_flat_memory_and_steady_freshness_pass() -> None:
    # the worker grows in the warm-up (its state fills), then stays within 5 %
    worker = [260.0 + 60 * m for m in range(10)] + [800.0 + 3 * m for m in range(10)]
    rss = {"worker": worker, "api": [150.0] * 20, "broker": [100.0] * 20, "driver": [90.0] * 20}
    result = verdict(minutes(rss=rss), warmup=10, rate=RATE)
    assert result["passed"], result["reasons"]
    assert result["reasons"] == []
    assert result["memory"]["worker"]["baseline_mb"] == 800.0  # minute 10
    assert result["memory"]["worker"]["end_mb"] == 827.0
    assert result["memory"]["worker"]["flat"]
    assert result["freshness"]["reference_minutes"] == [3, 7]
    assert result["freshness"]["last_minutes"] == [16, 20]
    assert result["probes_lost"] == 0


def test_memory_growing_after_the_warm_up_fails_naming_the_process() -> None:
    rss = {"worker": [800.0] * 10 + [800.0 + 5 * m for m in range(1, 11)],  # +6.25 %
           "api": [150.0] * 20}
    result = verdict(minutes(rss=rss), warmup=10, rate=RATE)
    assert not result["passed"]
    assert len(result["reasons"]) == 1
    assert result["reasons"][0].startswith("worker: RSS grew 6.2 %")
    assert not result["memory"]["worker"]["flat"]
    assert result["memory"]["api"]["flat"]


def test_growth_just_under_the_limit_passes_and_at_it_fails() -> None:
    under = {"api": [100.0] * 10 + [104.9] * 10}
    at = {"api": [100.0] * 10 + [105.0] * 10}
    assert verdict(minutes(rss=under), warmup=10, rate=RATE)["passed"]
    assert not verdict(minutes(rss=at), warmup=10, rate=RATE)["passed"]


def test_freshness_drift_fails_within_the_slack_passes() -> None:
    # reference p99 100 ms: the limit is 1.5 x 100 + 50 = 200 ms
    assert verdict(minutes(late=200.0), warmup=10, rate=RATE)["passed"]
    result = verdict(minutes(late=201.0), warmup=10, rate=RATE)
    assert not result["passed"]
    assert result["freshness"]["drift"]
    assert result["freshness"]["limit_ms"] == 200.0
    assert result["reasons"][0].startswith("freshness drifted: p99 201 ms in minutes 16-20")


def test_a_lost_probe_fails() -> None:
    samples = minutes()
    samples[12].delays_ms.pop()  # sent in minute 13, never seen
    result = verdict(samples, warmup=10, rate=RATE)
    assert not result["passed"]
    assert result["probes_lost"] == 1
    assert result["reasons"] == ["1 of 6000 probes never seen in the event stream"]


def test_a_slow_minute_and_dead_letters_fail() -> None:
    samples = minutes()
    samples[4].events = int(0.9 * EVENTS)
    result = verdict(samples, warmup=10, rate=RATE, dead_letters=3)
    assert not result["passed"]
    assert any("rate not reached" in r and "minute(s) 5" in r for r in result["reasons"])
    assert any(r.startswith("3 events dead-lettered") for r in result["reasons"])


def test_a_run_without_minutes_after_the_warm_up_is_not_a_pass() -> None:
    result = verdict(minutes(4), warmup=4, rate=RATE)
    assert not result["passed"]
    assert result["memory"] == {}
    assert result["reasons"][0].startswith("memory not judged")


def test_short_runs_compare_their_last_half_with_the_minutes_before() -> None:
    assert windows(20) == ([3, 4, 5, 6, 7], [16, 17, 18, 19, 20])
    assert windows(10) == ([3, 4, 5], [6, 7, 8, 9, 10])
    assert windows(4) == ([2], [3, 4])
    assert windows(2) == ([1], [2])
    result = verdict(minutes(4), warmup=2, rate=RATE)
    assert result["passed"], result["reasons"]
    assert result["freshness"]["reference_minutes"] == [2, 2]


def test_the_broker_growing_with_its_log_is_reported_not_judged() -> None:
    # the embedded broker keeps every record in memory: its RSS grows with the log
    rss = {"broker": [100.0 + 20 * m for m in range(20)], "worker": [800.0] * 20}
    result = verdict(minutes(rss=rss), warmup=10, rate=RATE)
    assert result["passed"], result["reasons"]
    assert result["memory"]["broker"] == {"baseline_mb": 280.0, "end_mb": 480.0,
                                          "growth_percent": 71.43, "flat": False,
                                          "judged": False}
    assert result["memory"]["worker"]["judged"]
