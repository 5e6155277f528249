"""Local calendar, baselines, Prophet fits and backtest measures on small series."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from forecasting.backtest import mase, naive_scale, run_backtest, wape
from forecasting.baselines import aht_profile, daily_profile, seasonal_naive
from forecasting.history import History, NotEnoughHistory, history_from_rows
from forecasting.methods import COMBINATION, METHODS, forecast_calls
from forecasting.synthetic import synthetic_intervals
from services.contract.errors import PacesetterError
from services.planning.calendar import (
    INTERVAL,
    LocalCalendar,
    is_bank_holiday,
    local_day_bounds,
    utc_range,
)


def day_intervals(day: date) -> pd.DatetimeIndex:
    """UTC starts of the quarter hours of a local date: 96, or 92 / 100 on clock-change days."""
    start, end = local_day_bounds(day)
    return pd.date_range(start, end, freq=INTERVAL, inclusive="left")


def rows_of(records):
    return [(r["interval_start"], r["offered"], r["answered"], r["abandoned"],
             r["aht_seconds"], r["asa_seconds"], r["queue_seconds"]) for r in records]


def synthetic_history(line: str, days: int, end: datetime, seed: int = 1) -> History:
    records = synthetic_intervals("north", line, end - timedelta(days=days), days, seed)
    return history_from_rows("north", line, rows_of(records))


def test_local_days_have_92_96_or_100_quarter_hours():
    assert len(day_intervals(date(2026, 3, 29))) == 92  # clocks go forward
    assert len(day_intervals(date(2026, 10, 25))) == 100  # clocks go back
    assert len(day_intervals(date(2026, 11, 21))) == 96
    summer = day_intervals(date(2026, 7, 1))
    assert summer[0] == pd.Timestamp("2026-06-30T23:00:00Z")


def test_bank_holidays_of_england_and_wales_are_rest_days():
    assert is_bank_holiday(date(2026, 12, 25)) and is_bank_holiday(date(2026, 12, 28))
    assert is_bank_holiday(date(2026, 8, 31))  # late summer: England and Wales, not Scotland
    assert not is_bank_holiday(date(2026, 8, 3))  # Scotland's summer holiday
    cal = LocalCalendar(day_intervals(date(2026, 12, 28)))
    assert cal.rest_day.all() and cal.holiday.all()
    assert not LocalCalendar(day_intervals(date(2026, 12, 29))).rest_day.any()


def test_seasonal_naive_takes_the_same_local_quarter_hour_a_week_earlier_across_a_clock_change():
    index = utc_range(datetime(2026, 10, 18, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC))
    history = pd.Series(np.arange(len(index), dtype=float), index=index)
    target = utc_range(datetime(2026, 10, 26, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC))
    forecast = seasonal_naive(history, target)
    # 26 Oct 10:00 UTC is 10:00 GMT; a week earlier 10:00 BST was 09:00 UTC on 19 Oct.
    at = target.get_loc(pd.Timestamp("2026-10-26T10:00:00Z"))
    assert forecast[at] == history[pd.Timestamp("2026-10-19T09:00:00Z")]
    # Beyond the history's last week, it repeats that week.
    later = utc_range(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))
    assert seasonal_naive(history, later)[0] == forecast[at]


def test_daily_profile_reproduces_a_perfectly_periodic_week():
    index = utc_range(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))
    cal = LocalCalendar(index)
    values = 5 + cal.slot % 7 + 3 * (cal.weekday == 4)
    history = pd.Series(values.astype(float), index=index)
    target = utc_range(datetime(2026, 2, 2, tzinfo=UTC), datetime(2026, 2, 9, tzinfo=UTC))
    expected = 5 + LocalCalendar(target).slot % 7 + 3 * (LocalCalendar(target).weekday == 4)
    np.testing.assert_allclose(daily_profile(history, target), expected)
    np.testing.assert_allclose(seasonal_naive(history, target), expected)


def test_wape_and_mase_by_hand():
    actual = np.array([10.0, 0.0, 30.0])
    forecast = np.array([12.0, 1.0, 27.0])
    assert wape(actual, forecast) == pytest.approx(6 / 40)
    assert mase(actual, forecast, scale=2.0) == pytest.approx(1.0)
    assert wape(np.zeros(3), forecast) is None
    index = utc_range(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 19, tzinfo=UTC))
    week = np.tile(np.arange(672, dtype=float), 2)
    week[672:] += 2.0
    assert naive_scale(pd.Series(week, index=index)) == pytest.approx(2.0)


def test_aht_profile_weights_by_answered_calls_and_knows_when_it_knows_nothing():
    index = utc_range(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 19, tzinfo=UTC))
    aht = np.full(len(index), 200.0)
    answered = np.full(len(index), 50.0)
    target = utc_range(datetime(2026, 1, 19, tzinfo=UTC), datetime(2026, 1, 20, tzinfo=UTC))
    assert aht_profile(index, aht, answered, target) == pytest.approx(np.full(96, 200.0))
    assert np.isnan(aht_profile(index, np.full(len(index), np.nan), answered, target)).all()


@pytest.fixture(scope="module")
def three_weeks():
    return synthetic_history("101", 21, datetime(2026, 11, 16, tzinfo=UTC), seed=4)


def test_every_method_forecasts_non_negative_calls_inside_their_interval(three_weeks):
    target = utc_range(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 18, tzinfo=UTC))
    for method in METHODS:
        fc = forecast_calls(method, three_weeks.series(), target)
        assert fc.calls.shape == (len(target),)
        assert (fc.lower >= 0).all() and (fc.calls >= 0).all()
        assert (fc.lower <= fc.calls + 1e-9).all() and (fc.calls <= fc.upper + 1e-9).all()
        # 101 is a daytime line: the forecast knows the night is quiet
        cal = LocalCalendar(target)
        assert fc.calls[cal.slot == 4 * 11].mean() > 3 * fc.calls[cal.slot == 4 * 4].mean()
    with pytest.raises(PacesetterError, match="not one of"):
        forecast_calls("tea_leaves", three_weeks.series(), target)


def test_prophet_is_deterministic_for_the_same_history(three_weeks):
    target = utc_range(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 17, tzinfo=UTC))
    first = forecast_calls("prophet", three_weeks.series(), target)
    second = forecast_calls("prophet", three_weeks.series(), target)
    np.testing.assert_allclose(first.calls, second.calls, rtol=1e-6)
    np.testing.assert_allclose(first.upper, second.upper, rtol=1e-6)


def test_a_backtest_compares_every_method_on_weekly_origins():
    history = synthetic_history("999", 23, datetime(2026, 11, 16, tzinfo=UTC), seed=9)
    result = run_backtest(history, weeks=1)
    assert result["origins"] == ["2026-11-09T00:00:00Z"]
    assert set(result["methods"]) == set(METHODS) | {COMBINATION}
    weights = result["methods"][COMBINATION]["params"]["weights"]
    assert len(weights) == 2 and sum(weights.values()) == pytest.approx(1.0, abs=1e-3)
    for scores in result["methods"].values():
        assert 0 < scores["wape"] < 1 and scores["mase"] > 0 and 0 <= scores["coverage"] <= 1
        assert len(scores["origins"]) == 1
    best = min(scores["wape"] for scores in result["methods"].values())
    assert result["methods"][result["chosen"]]["wape"] == best  # ties: either is the choice
    with pytest.raises(NotEnoughHistory, match="needs at least 43 days"):
        run_backtest(history, weeks=4)


def test_gaps_over_a_day_are_unknown_not_quiet():
    records = synthetic_intervals("north", "999", datetime(2026, 11, 1, tzinfo=UTC), 6, 2)
    kept = [r for r in records if not "2026-11-03" <= r["interval_start"] < "2026-11-05"]
    history = history_from_rows("north", "999", rows_of(kept))
    assert np.isnan(history.offered).sum() == 2 * 96
    assert history.known_days == pytest.approx(4.0)
    with pytest.raises(NotEnoughHistory, match="4.0 days .* at least 14 days"):
        history.require_days(14, "forecasting")
