"""The simple methods a scheduler would use, the smoothed profile, regions and resolutions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from forecasting.backtest import backtest_series, origins_for
from forecasting.methods import COMBINATION, PROFILE, forecast_calls, poisson_floor
from forecasting.simple import SIMPLE_METHODS, simple_forecasts, smoothed_profile
from services.contract.settings import SettingsError, load_settings
from services.planning.calendar import (
    LocalCalendar,
    is_bank_holiday,
    parse_room_regions,
    step_of,
    utc_range,
)


def weekly_series(start: str, weeks: int, step: str, zone: str, seed: int = 3) -> pd.Series:
    """Poisson counts with a local daily and weekly shape, at the given resolution."""
    index = pd.date_range(pd.Timestamp(start, tz=zone), periods=int(
        pd.Timedelta(weeks=weeks) / pd.Timedelta(step)), freq=step).tz_convert("UTC")
    local = index.tz_convert(zone)
    hours = local.hour + local.minute / 60
    rate = (6 + 4 * np.sin((hours - 9) / 24 * 2 * np.pi)) * np.where(local.day_of_week >= 5, 1.3, 1)
    rate = rate * pd.Timedelta(step) / pd.Timedelta(minutes=15)
    return pd.Series(np.random.default_rng(seed).poisson(rate).astype(float), index=index)


def test_same_slot_methods_average_the_same_local_interval_of_earlier_weeks():
    index = utc_range(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))
    weeks = (np.arange(len(index)) // (7 * 96)).astype(float)  # week k has k + 1 calls
    history = pd.Series(weeks + 1, index=index)
    target = utc_range(datetime(2026, 2, 2, tzinfo=UTC), datetime(2026, 2, 3, tzinfo=UTC))
    got = simple_forecasts(history, target, LocalCalendar(history.index), LocalCalendar(target))
    assert set(got) == set(SIMPLE_METHODS)
    assert got["seasonal_naive"][0] == 4
    assert got["mean_2w"][0] == pytest.approx(3.5) and got["median_3w"][0] == 3
    # Only four weeks are known: the 8-week mean is the mean of those four.
    assert got["mean_8w"][0] == pytest.approx(2.5)
    w = 0.8 ** np.arange(4)
    assert got["recency_0.8"][0] == pytest.approx(float((w * [4, 3, 2, 1]).sum() / w.sum()))


def test_the_smoothed_profile_forecasts_a_holiday_from_sundays():
    # 2026-05-04 (Monday) is the Early May bank holiday in England and Wales.
    history = weekly_series("2026-02-02", 13, "15min", "Europe/London")
    target = utc_range(datetime(2026, 5, 3, 23, tzinfo=UTC), datetime(2026, 5, 4, 23, tzinfo=UTC))
    hcal, tcal = LocalCalendar(history.index), LocalCalendar(target)
    assert tcal.holiday.all()
    holiday = smoothed_profile(history, target, hcal, tcal, smoothing=0)
    local = history.index.tz_convert("Europe/London")
    sundays = history[(local.day_of_week == 6) & (history.index >= history.index[-1]
                                                   - pd.Timedelta(weeks=12))]
    assert holiday.sum() == pytest.approx(sundays.sum() / 12, rel=0.02)


def test_regions_have_their_own_holidays_and_time_zones():
    assert is_bank_holiday(date(2026, 8, 31), "GB-ENG")
    assert not is_bank_holiday(date(2026, 8, 31), "GB-SCT")  # Scotland's is in early August
    assert is_bank_holiday(date(2026, 8, 3), "GB-SCT")
    assert is_bank_holiday(date(2026, 3, 17), "GB-NIR")  # St Patrick's Day
    assert is_bank_holiday(date(2026, 11, 26), "US-WA")  # Thanksgiving
    assert parse_room_regions("north:gb-eng, seattle:US-WA") == {"north": "GB-ENG",
                                                                "seattle": "US-WA"}
    settings = load_settings(room_regions="north:GB-SCT")
    assert settings.region("north") == "GB-SCT" and settings.region("south") == "GB-ENG"
    with pytest.raises(SettingsError, match="PACESETTER_ROOM_REGIONS"):
        load_settings(room_regions="north:FR-75")
    # Origins are the room's local midnights.
    origins = origins_for(datetime(2026, 1, 16, 8, tzinfo=UTC), 1, "US-WA")
    assert origins[0] == pd.Timestamp("2026-01-09T08:00:00Z")


@pytest.mark.parametrize("step", ["15min", "30min", "1h"])
def test_backtests_and_forecasts_work_at_the_resolution_of_the_history(step):
    series = weekly_series("2025-10-06", 8, step, "America/New_York")
    assert step_of(series.index) == pd.Timedelta(step)
    result = backtest_series(series, weeks=2, methods=SIMPLE_METHODS + (PROFILE,),
                             region_code="US-NY")
    assert result["resolution_minutes"] == pd.Timedelta(step) / pd.Timedelta(minutes=1)
    methods = result["methods"]
    assert methods[result["chosen"]]["wape"] <= methods[result["best_simple"]]["wape"]
    # On a steady Poisson series the profile's many weeks and blending beat one week ago.
    assert methods[PROFILE]["wape"] < 0.9 * methods["seasonal_naive"]["wape"]
    assert 0.8 <= methods[PROFILE]["coverage"] <= 0.97
    assert result["noise_floor"] < methods[PROFILE]["wape"]
    target = utc_range(series.index[-1] + pd.Timedelta(step),
                       series.index[-1] + pd.Timedelta(days=1), pd.Timedelta(step))
    fc = forecast_calls(COMBINATION, series, target, region="US-NY",
                        params=methods[COMBINATION]["params"])
    assert len(fc.calls) == len(target) and (fc.lower <= fc.calls).all()
    assert (fc.calls <= fc.upper).all() and fc.calls.sum() > 0


def test_the_poisson_floor_is_the_error_of_a_perfect_forecast_of_the_mean():
    rng = np.random.default_rng(5)
    lam = np.full(200_000, 3.0)
    actual = rng.poisson(lam).astype(float)
    floor = poisson_floor(lam, actual)
    assert floor == pytest.approx(np.abs(actual - lam).sum() / actual.sum(), rel=0.01)


def test_a_single_burst_is_capped_before_prophet_sees_it():
    from forecasting.prophet_model import tame_bursts

    series = weekly_series("2026-01-05", 4, "15min", "Europe/London")
    root = np.sqrt(series.to_numpy())
    burst = 1000
    root[burst] = np.sqrt(226.0)
    tamed = tame_bursts(root, LocalCalendar(series.index))
    assert tamed[burst] < np.sqrt(60)  # capped near its usual level
    others = np.arange(len(root)) != burst
    assert np.mean(tamed[others] != root[others]) < 0.01  # ordinary intervals untouched
