"""History kept per hour: imported as is, forecast per hour, staffed per quarter hour."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from forecasting import service
from forecasting.backtest import run_backtest
from forecasting.history import load_history
from forecasting.methods import PROFILE, forecast_calls
from forecasting.simple import SIMPLE_METHODS
from forecasting.synthetic import synthetic_intervals
from pacesetter.cli import main
from services.contract.settings import Settings
from services.history.store import HistoryStore
from services.planning.calendar import local_day_bounds

FIRST = datetime(2026, 10, 5, tzinfo=UTC)
DAYS = 30


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    """Room metro: line 999 exported per hour, line 101 per quarter hour (the room's profile)."""
    folder = tmp_path_factory.mktemp("hourly")
    hourly: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for r in synthetic_intervals("metro", "999", FIRST, DAYS, seed=41):
        hour = str(r["interval_start"])[:14] + "00:00Z"
        hourly[hour][0] += int(r["offered"])
        hourly[hour][1] += float(r["aht_seconds"] or 0) * int(r["offered"])
    path = folder / "hourly.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["room", "line", "interval_start", "interval_minutes", "offered",
                         "aht_seconds"])
        for start, (offered, weighted) in sorted(hourly.items()):
            writer.writerow(["metro", "999", start, 60, offered,
                             round(weighted / offered, 1) if offered else ""])
        writer.writerow(["metro", "999", "2026-11-03T10:15:00Z", 60, 3, ""])  # not on the hour
        writer.writerow(["metro", "999", "2026-11-03T10:00:00Z", 45, 3, ""])  # no such width
    url = f"sqlite:///{folder / 'h.db'}"
    assert main(["import", "intervals", str(path), "--store", url]) == 1
    with HistoryStore.open(url) as store:
        store.upsert_intervals(synthetic_intervals("metro", "101", FIRST, DAYS, seed=42))
    return url


def test_import_keeps_the_resolution_and_rejects_rows_off_it(store_url, capsys, tmp_path):
    with HistoryStore.open(store_url) as store:
        history = load_history(store, "metro", "999")
        assert history.step == pd.Timedelta(hours=1)
        assert history.known_days == pytest.approx(DAYS, abs=1)
    bad = tmp_path / "bad.csv"
    bad.write_text("room,line,interval_start,interval_minutes,offered\n"
                   "metro,999,2026-11-03T10:30:00Z,60,3\n"
                   "metro,999,2026-11-03T10:00:00Z,45,3\n")
    assert main(["import", "intervals", str(bad), "--store", f"sqlite:///{tmp_path}/b.db"]) == 1
    err = capsys.readouterr().err
    assert "line 2: column interval_start:" in err and "60-minute boundary" in err
    assert "line 3: column interval_minutes: 45 is not 15, 30 or 60" in err


def test_backtests_run_at_the_hour(store_url):
    with HistoryStore.open(store_url) as store:
        history = load_history(store, "metro", "999")
    result = run_backtest(history, weeks=1, methods=SIMPLE_METHODS + (PROFILE,))
    assert result["resolution_minutes"] == 60
    scores = result["methods"]
    assert scores[result["chosen"]]["wape"] <= scores[result["best_simple"]]["wape"]


def test_an_hourly_forecast_is_staffed_per_quarter_hour_by_the_rooms_profile(store_url):
    day = (FIRST + timedelta(days=DAYS)).date()
    start = local_day_bounds(day)[0]
    with HistoryStore.open(store_url) as store:
        outcome = service.forecast_outcome(store, Settings(), "metro", "999", start, 1,
                                           now=start, with_plan=True, method=PROFILE)
        history = load_history(store, "metro", "999", end=start)
        profile = load_history(store, "metro", "101", end=start)
    rows = outcome.plan_rows
    assert len(rows) == 96 and all(r["interval_end"] > r["interval_start"] for r in rows)
    calls = np.array([r["calls"] for r in rows])
    # The quarters of each hour add up to the hourly forecast.
    hourly = forecast_calls(PROFILE, history.series(), pd.date_range(
        start, periods=24, freq="1h"), region="GB-ENG").calls
    np.testing.assert_allclose(calls.reshape(24, 4).sum(axis=1), hourly, rtol=1e-3, atol=0.01)
    # Within an hour they follow the room's quarter-hour line, not an even split.
    quarter = profile.series()
    local = quarter.index.tz_convert("Europe/London")
    weekday = quarter[local.day_of_week < 5]
    shape = weekday.groupby(local[local.day_of_week < 5].hour * 4
                            + local[local.day_of_week < 5].minute // 15).mean().to_numpy()
    split = calls.reshape(24, 4) / calls.reshape(24, 4).sum(axis=1, keepdims=True)
    expected = shape.reshape(24, 4) / shape.reshape(24, 4).sum(axis=1, keepdims=True)
    assert np.abs(split - expected).max() < 0.05
    assert np.abs(split - 0.25).max() > 0.02
    assert all(r["calls_lower"] <= r["calls"] <= r["calls_upper"] for r in rows)
    assert all(r["required_handlers"] >= 1 for r in rows)
