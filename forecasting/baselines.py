"""Baseline forecasts (seasonal naive, daily total × intraday profile) and the AHT profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from services.planning.calendar import SLOTS_PER_DAY, LocalCalendar, step_of

WEEK = pd.Timedelta(days=7)
PROFILE_WEEKS = 8
TOTAL_WEEKS = 4
AHT_WEEKS = 4
AHT_PRIOR_CALLS = 30.0


def _local_lookup(history: pd.Series, cal: LocalCalendar) -> pd.Series:
    # Wall-clock keys: the repeated hour of an autumn clock change holds two intervals per key.
    series = pd.Series(history.to_numpy(dtype=float), index=cal.local)
    return series.groupby(level=0).mean()


def seasonal_naive(history: pd.Series, target: pd.DatetimeIndex,
                   history_cal: LocalCalendar | None = None) -> np.ndarray:
    """The same local quarter hour one week earlier (or the latest known week before it).

    Args:
        history: calls per UTC interval (NaN where unknown).
        target: UTC interval starts to forecast.
        history_cal: the history's calendar, when already computed.

    Returns:
        Forecast calls per target interval (NaN where no earlier week is known).
    """
    cal = history_cal or LocalCalendar(history.index)
    lookup = _local_lookup(history, cal).dropna()
    target_local = LocalCalendar(target, cal.region).local
    result = np.full(len(target), np.nan)
    last = lookup.index.max()
    for weeks in range(1, 60):
        todo = np.isnan(result)
        if not todo.any():
            break
        back = target_local[todo] - weeks * WEEK
        usable = back <= last
        if not usable.any():
            continue
        values = lookup.reindex(back[usable]).to_numpy()
        positions = np.flatnonzero(todo)[usable]
        result[positions] = values
    return result


def _day_table(history: pd.Series, cal: LocalCalendar) -> pd.DataFrame:
    """Per local date: total calls, whether every interval is known, weekday, holiday."""
    frame = pd.DataFrame({
        "date": cal.dates, "calls": history.to_numpy(dtype=float), "slot": cal.slot,
        "weekday": cal.weekday, "holiday": cal.holiday,
    })
    days = frame.groupby("date").agg(
        calls=("calls", "sum"), known=("calls", "count"), intervals=("calls", "size"),
        weekday=("weekday", "first"), holiday=("holiday", "first"))
    # A day is usable only when complete: first and last days of a history are partial.
    per_day = pd.Timedelta(days=1) / step_of(history.index)
    days["complete"] = (days["known"] == days["intervals"]) & (
        days["intervals"] >= per_day * 23 / 24)
    return days


def _day_key(weekday: np.ndarray, holiday: np.ndarray) -> np.ndarray:
    # Bank holidays behave like Sundays in police demand; key 6 is Sunday.
    return np.where(holiday, 6, weekday)


def daily_profile(history: pd.Series, target: pd.DatetimeIndex,
                  history_cal: LocalCalendar | None = None) -> np.ndarray:
    """Daily total × intraday profile.

    The total of a target day is the mean total of the last four complete days of the same
    kind (weekday; bank holidays count as Sundays); its intraday profile is the share of
    each local quarter hour over the last eight such days.

    Returns:
        Forecast calls per target interval (NaN when no day of that kind is known).
    """
    cal = history_cal or LocalCalendar(history.index)
    days = _day_table(history, cal)
    complete = days[days["complete"]]
    keys = _day_key(complete["weekday"].to_numpy(), complete["holiday"].to_numpy())
    values = history.to_numpy(dtype=float)
    hist_keys = _day_key(cal.weekday, cal.holiday)
    complete_dates = complete.index.to_numpy()

    totals = np.full(7, np.nan)
    profiles = np.full((7, SLOTS_PER_DAY), np.nan)
    for key in range(7):
        dates = complete_dates[keys == key]
        if dates.size == 0:
            continue
        totals[key] = complete["calls"].to_numpy()[keys == key][-TOTAL_WEEKS:].mean()
        chosen = dates[-PROFILE_WEEKS:]
        mask = np.isin(cal.dates, chosen) & (hist_keys == key)
        counts = np.bincount(cal.slot[mask], weights=values[mask], minlength=SLOTS_PER_DAY)
        if counts.sum() > 0:
            profiles[key] = counts / counts.sum()
    target_cal = LocalCalendar(target, cal.region)
    target_keys = _day_key(target_cal.weekday, target_cal.holiday)
    forecast: np.ndarray = totals[target_keys] * profiles[target_keys, target_cal.slot]
    return forecast


def noise_sd(history: pd.Series, weeks: int = 4) -> float:
    """Spread of demand in square-root space (the scale of one interval's noise).

    From week-on-week differences of ``√calls`` over the last ``weeks`` weeks: each
    difference holds two independent noises, so its variance is halved.
    """
    per_day = int(round(pd.Timedelta(days=1) / step_of(history.index)))
    recent = history.iloc[-(weeks + 1) * 7 * per_day:]
    root = np.sqrt(recent.clip(lower=0))
    diff = (root - root.shift(7 * per_day)).dropna()
    if diff.size < per_day:
        return 0.5  # √Poisson has sd ≈ 0.5 whatever the mean
    return float(np.sqrt(np.mean(diff.to_numpy() ** 2) / 2.0))


def sqrt_interval(calls: np.ndarray, sd: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """A prediction interval around point forecasts with noise ``sd`` in √ space."""
    z = float(norm.ppf(0.5 + width / 2.0))
    root = np.sqrt(np.clip(calls, 0, None))
    lower = np.clip(root - z * sd, 0, None) ** 2
    upper = (root + z * sd) ** 2
    return lower, upper


def aht_profile(index: pd.DatetimeIndex, aht_seconds: np.ndarray, answered: np.ndarray,
                target: pd.DatetimeIndex) -> np.ndarray:
    """AHT per target interval: the answered-weighted mean by day type and quarter hour.

    Uses the last four weeks. Each quarter hour's mean is shrunk towards its hour's mean
    (and that towards the day type's) with the weight of 30 calls, so quiet night intervals
    do not swing on a handful of calls.

    Returns:
        AHT seconds per target interval; NaN when the history has no handling times.
    """
    keep = index >= index[-1] - pd.Timedelta(weeks=AHT_WEEKS)
    cal = LocalCalendar(index[keep])
    aht = aht_seconds[keep]
    weight = np.where(np.isfinite(aht), np.nan_to_num(answered[keep]), 0.0)
    weighted = np.where(weight > 0, np.nan_to_num(aht) * weight, 0.0)
    if weight.sum() <= 0:
        return np.full(len(target), np.nan)
    rest = cal.rest_day.astype(int)
    overall = weighted.sum() / weight.sum()

    def grouped(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.bincount(keys, weights=weighted, minlength=size),
                np.bincount(keys, weights=weight, minlength=size))

    type_sum, type_n = grouped(rest, 2)
    type_mean = (type_sum + AHT_PRIOR_CALLS * overall) / (type_n + AHT_PRIOR_CALLS)
    hour = cal.slot // 4
    hour_sum, hour_n = grouped(rest * 24 + hour, 48)
    hour_mean = (hour_sum + AHT_PRIOR_CALLS * np.repeat(type_mean, 24)) / (
        hour_n + AHT_PRIOR_CALLS)
    slot_sum, slot_n = grouped(rest * SLOTS_PER_DAY + cal.slot, 2 * SLOTS_PER_DAY)
    slot_prior = np.repeat(hour_mean, 4)
    slot_mean = (slot_sum + AHT_PRIOR_CALLS * slot_prior) / (slot_n + AHT_PRIOR_CALLS)
    target_cal = LocalCalendar(target)
    return slot_mean[target_cal.rest_day.astype(int) * SLOTS_PER_DAY + target_cal.slot]
