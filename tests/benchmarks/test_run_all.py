"""run_all.py's goal judging: a goal is met only when its figure meets the target and the run
held the goal's conditions; the note says which did not. Fed result dicts, no benchmark runs."""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

import pytest

from tests.benchmarks.conftest import load_benchmark


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    return load_benchmark("run_all")


def fresh(p99: float, rate: int, lost: int | None = 0) -> dict[str, Any]:
    figures: dict[str, Any] = {"p99_ms": p99, "target_events_per_second": rate,
                               "achieved_events_per_second": rate, "probes_sent": 100}
    if lost is not None:
        figures["probes_lost"] = lost
    return figures


def latency(p99: float) -> dict[str, Any]:
    return {"p99_ms": p99, "target_requests_per_second": 500, "failed": 0,
            "achieved_requests_per_second": 499.0}


def passing() -> dict[str, Any]:
    """Results of a full run that meets every goal."""
    return {
        "stream": {"stream_throughput": {"ratio_to_ceiling": 0.55,
                                         "worker_replay_events_per_second": 120_000,
                                         "worker_rebuild_from_checkpoint_events_per_second":
                                             900_000},
                   "recovery": {"restart_to_caught_up_seconds": 20}},
        "api": {"freshness": {"200": fresh(80, 200), "2000": fresh(200, 2000)},
                "latency": {"live": latency(10), "intervals": latency(30)}},
        "forecast": {"series": 86, "warm_seconds": 20, "cold_seconds": 50,
                     "warm_idle_seconds": 18, "cold_idle_seconds": 45,
                     "failed_series": {"cold": 0, "warm": 0},
                     "accuracy": {"nyc": {"improvement": 0.1, "chosen_coverage": 0.9},
                                  "seattle": {"improvement": 0.01, "chosen_coverage": 0.88}}},
        "history": {"latency": {db: {"intervals": {"p99_ms": 5}, "attendance": {"p99_ms": 5}}
                                for db in ("sqlite", "postgresql")}},
        "rebalance": {"days_per_room": 7, "join": {"unmoved_lag_seconds_p99": 0.5},
                      "worker_loss": {"workers": 3, "seconds_until_exact": 9.5,
                                      "exact": True}},
        "national": {"days": 7, "rooms": 43, "complete": True, "peak_rss_mb": 1500},
    }


def test_a_full_run_meeting_every_target_meets_every_goal(run_all: ModuleType) -> None:
    goals = run_all.goals(passing(), quick=False)
    assert {name for name, entry in goals.items() if not entry["met"]} == set()
    assert {"throughput", "rebuild", "freshness_200", "freshness_2000", "national_state",
            "worker_loss", "api_latency_live", "forecasting_staffing"} <= set(goals)
    assert goals["national_state"]["measured"] == 1500
    assert goals["worker_loss"]["measured"] == 9.5


@pytest.mark.parametrize(("path", "value", "goal_name"), [
    (("stream", "stream_throughput", "ratio_to_ceiling"), 0.49, "throughput"),
    (("stream", "stream_throughput", "worker_rebuild_from_checkpoint_events_per_second"),
     299_000, "rebuild"),
    (("api", "freshness", "2000", "p99_ms"), 250, "freshness_2000"),
    (("api", "freshness", "200", "p99_ms"), 251, "freshness_200"),
    (("api", "latency", "live", "p99_ms"), 50, "api_latency_live"),
    (("national", "peak_rss_mb"), 2048, "national_state"),
    (("rebalance", "worker_loss", "seconds_until_exact"), 15, "worker_loss"),
    (("forecast", "warm_seconds"), 31, "replan"),
    (("forecast", "cold_seconds"), 60, "reselection"),
])
def test_a_figure_past_its_target_is_not_met(run_all: ModuleType, path: tuple[str, ...],
                                             value: float, goal_name: str) -> None:
    results = passing()
    node = results
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    goals = run_all.goals(results, quick=False)
    assert goals[goal_name]["met"] is False
    assert [name for name, entry in goals.items() if not entry["met"]] == [goal_name]


def judged(run_all: ModuleType, change: Any, goal_name: str) -> dict[str, Any]:
    results = copy.deepcopy(passing())
    change(results)
    entry: dict[str, Any] = run_all.goals(results, quick=False)[goal_name]
    return entry


def test_lost_or_unreported_probes_fail_freshness(run_all: ModuleType) -> None:
    lost = judged(run_all, lambda r: r["api"]["freshness"].update({"2000": fresh(100, 2000, 3)}),
                  "freshness_2000")
    assert lost["met"] is False and "3 probes lost" in lost["note"]
    unknown = judged(run_all, lambda r: r["api"]["freshness"].update(
        {"200": fresh(100, 200, None)}), "freshness_200")
    assert unknown["met"] is False and "probes_lost not reported" in unknown["note"]


def test_a_freshness_rate_not_reached_fails(run_all: ModuleType) -> None:
    entry = judged(run_all, lambda r: r["api"]["freshness"]["2000"].update(
        {"achieved_events_per_second": 1500}), "freshness_2000")
    assert entry["met"] is False and "achieved 1500 events/s" in entry["note"]


def test_failed_requests_or_a_rate_not_reached_fail_api_latency(run_all: ModuleType) -> None:
    failed = judged(run_all, lambda r: r["api"]["latency"]["live"].update({"failed": 12}),
                    "api_latency_live")
    assert failed["met"] is False and "12 requests failed" in failed["note"]
    slow = judged(run_all, lambda r: r["api"]["latency"]["intervals"].update(
        {"achieved_requests_per_second": 300.0}), "api_latency_intervals")
    assert slow["met"] is False and "achieved 300 requests/s" in slow["note"]
    unreported = judged(run_all, lambda r: r["api"]["latency"]["live"].pop("failed"),
                        "api_latency_live")
    assert unreported["met"] is False and "failed requests not reported" in unreported["note"]
    other_rate = judged(run_all, lambda r: r["api"]["latency"]["live"].update(
        {"target_requests_per_second": 200}), "api_latency_live")
    assert other_rate["met"] is False and "not 500" in other_rate["note"]


def test_a_failed_forecast_series_or_fewer_series_fail(run_all: ModuleType) -> None:
    def failed_warm(r: dict[str, Any]) -> None:
        r["forecast"]["failed_series"]["warm"] = 1

    for name in ("forecasting_staffing", "replan"):
        entry = judged(run_all, failed_warm, name)
        assert entry["met"] is False and "1 series failed (warm run)" in entry["note"]
    assert judged(run_all, failed_warm, "reselection")["met"] is True
    fewer = judged(run_all, lambda r: r["forecast"].update({"series": 20}), "replan")
    assert fewer["met"] is False and "20 series, not 86" in fewer["note"]
    unreported = judged(run_all, lambda r: r["forecast"].pop("failed_series"), "reselection")
    assert unreported["met"] is False and "failed series not reported" in unreported["note"]


def test_national_memory_counts_only_on_a_week_of_43_rooms(run_all: ModuleType) -> None:
    day = judged(run_all, lambda r: r["national"].update({"days": 1}), "national_state")
    assert day["met"] is False and "1.0 days, not 7" in day["note"]
    rooms = judged(run_all, lambda r: r["national"].update({"rooms": 8}), "national_state")
    assert rooms["met"] is False and "8.0 rooms" in rooms["note"]
    partial = judged(run_all, lambda r: r["national"].update({"complete": False}),
                     "national_state")
    assert partial["met"] is False and "every event" in partial["note"]


def test_worker_loss_counts_only_on_a_week_per_room(run_all: ModuleType) -> None:
    entry = judged(run_all, lambda r: r["rebalance"].update({"days_per_room": 0.25}),
                   "worker_loss")
    assert entry["met"] is False and "not a week" in entry["note"]


def test_a_failed_benchmark_is_not_measured_and_not_met(run_all: ModuleType) -> None:
    results = passing()
    results["national"] = {"error": "exit code 1"}
    results["api"] = {"error": "timed out after 600 s"}
    goals = run_all.goals(results, quick=False)
    for name in ("national_state", "freshness_2000", "api_latency_live"):
        assert goals[name]["met"] is False and goals[name]["measured"] is None
        assert "not measured" in goals[name]["note"]
    assert goals["throughput"]["met"] is True


def test_a_quick_run_meets_no_goal(run_all: ModuleType) -> None:
    goals = run_all.goals(passing(), quick=True)
    assert all(entry["met"] is False for entry in goals.values())
    assert all("--quick" in entry["note"] for entry in goals.values())


def test_a_quick_run_lists_its_reasons_once(run_all: ModuleType) -> None:
    results = passing()
    results["national"]["days"] = 1
    entry = run_all.goals(results, quick=True)["national_state"]
    assert entry["met"] is False
    assert len(entry["not_met"]) == 2 and "--quick" in entry["not_met"][1]
    assert entry["note"].count("not met:") == 1


def test_the_rebuild_goal_is_the_rebuild_from_checkpoints_with_the_full_replay_beside_it(
        run_all: ModuleType) -> None:
    goal = run_all.goals(passing(), quick=False)["rebuild"]
    assert goal["met"] and goal["measured"] == 900_000
    assert "checkpoint" in goal["goal"]
    assert "120,000 events/s" in goal["note"]
    results = passing()
    del results["stream"]["stream_throughput"][
        "worker_rebuild_from_checkpoint_events_per_second"]
    assert not run_all.goals(results, quick=False)["rebuild"]["met"]  # a full replay is not it
