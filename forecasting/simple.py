"""What a scheduler would do by hand: the same interval of the last few weeks.

Every method here reads the history by local wall-clock time, so it works at the resolution of
the history (15 minutes, 30 minutes, an hour) and through clock changes. The same-slot methods
are the yardstick a forecast must beat; the smoothed profile is the cheap model that beats them:
more weeks (less noise), public holidays forecast as Sundays and kept out of the weekday
averages, and neighbouring intervals blended (demand does not jump between adjacent intervals,
noise does).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from forecasting.baselines import WEEK, seasonal_naive
from services.planning.calendar import LocalCalendar

SAME_SLOT_WEEKS = tuple(range(2, 9))
RECENCY_DECAYS = (0.9, 0.8, 0.7)
RECENCY_WEEKS = 8
PROFILE_WEEKS = 12
PROFILE_SMOOTHING = 0.25  # weight of each neighbouring interval


def mean_name(weeks: int) -> str:
    """The method name of the same-slot mean of ``weeks`` weeks."""
    return f"mean_{weeks}w"


def median_name(weeks: int) -> str:
    """The method name of the same-slot median of ``weeks`` weeks."""
    return f"median_{weeks}w"


def recency_name(decay: float) -> str:
    """The method name of the recency-weighted same-slot mean with weight ``decay``^k."""
    return f"recency_{decay:g}"


SEASONAL_NAIVE = "seasonal_naive"
SIMPLE_METHODS: tuple[str, ...] = (
    (SEASONAL_NAIVE,)
    + tuple(mean_name(n) for n in SAME_SLOT_WEEKS)
    + tuple(median_name(n) for n in SAME_SLOT_WEEKS)
    + tuple(recency_name(d) for d in RECENCY_DECAYS)
)
SIMPLE_DESCRIPTIONS: dict[str, str] = {
    SEASONAL_NAIVE: "seasonal naive (same interval a week earlier)",
    **{mean_name(n): f"same-interval mean of the last {n} weeks" for n in SAME_SLOT_WEEKS},
    **{median_name(n): f"same-interval median of the last {n} weeks" for n in SAME_SLOT_WEEKS},
    **{recency_name(d): f"recency-weighted mean of {RECENCY_WEEKS} weeks (weights {d:g}^k)"
       for d in RECENCY_DECAYS},
}


def _lookup(history: pd.Series, cal: LocalCalendar, skip_holidays: bool) -> pd.Series:
    values = history.to_numpy(dtype=float, copy=True)
    if skip_holidays:
        values[cal.holiday] = np.nan
    # Wall-clock keys: the repeated hour of an autumn clock change holds two intervals per key.
    return pd.Series(values, index=cal.local).groupby(level=0).mean()


def same_slot_lags(history: pd.Series, target_local: pd.DatetimeIndex, weeks: int,
                   cal: LocalCalendar, skip_holidays: bool = False) -> np.ndarray:
    """Calls at the same local time 1 … ``weeks`` weeks before each target (weeks × targets).

    NaN where the history does not reach (a forecast more than a week ahead, a gap).
    """
    lookup = _lookup(history, cal, skip_holidays)
    return np.vstack([lookup.reindex(target_local - k * WEEK).to_numpy()
                      for k in range(1, weeks + 1)])


def _nan_stat(stat: str, values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN columns stay NaN
        if stat == "median":
            result: np.ndarray = np.nanmedian(values, axis=0)
            return result
        if weights is None:
            return np.asarray(np.nanmean(values, axis=0))
        known = np.isfinite(values)
        w = np.where(known, weights[:, None], 0.0)
        total = w.sum(axis=0)
        return np.where(total > 0, np.nansum(np.where(known, values, 0.0) * w, axis=0)
                        / np.where(total > 0, total, 1.0), np.nan)


def _fill(forecast: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    out = np.where(np.isfinite(forecast), forecast, fallback)
    return np.clip(np.nan_to_num(out), 0, None)


def simple_forecasts(history: pd.Series, target: pd.DatetimeIndex, history_cal: LocalCalendar,
                     target_cal: LocalCalendar) -> dict[str, np.ndarray]:
    """Every simple method's forecast of the target intervals, from one read of the history.

    Returns:
        ``{method name: calls per target interval}``; where a method has no known week (a gap,
        a target beyond its reach) the seasonal naive fills in; never negative or NaN.
    """
    naive = seasonal_naive(history, target, history_cal)
    lags = same_slot_lags(history, target_cal.local, max(SAME_SLOT_WEEKS[-1], RECENCY_WEEKS),
                          history_cal)
    result = {SEASONAL_NAIVE: _fill(naive, np.zeros(len(target)))}
    for n in SAME_SLOT_WEEKS:
        result[mean_name(n)] = _fill(_nan_stat("mean", lags[:n]), result[SEASONAL_NAIVE])
        result[median_name(n)] = _fill(_nan_stat("median", lags[:n]), result[SEASONAL_NAIVE])
    for decay in RECENCY_DECAYS:
        weights = decay ** np.arange(RECENCY_WEEKS, dtype=float)
        result[recency_name(decay)] = _fill(
            _nan_stat("mean", lags[:RECENCY_WEEKS], weights), result[SEASONAL_NAIVE])
    return result


def smoothed_profile(history: pd.Series, target: pd.DatetimeIndex, history_cal: LocalCalendar,
                     target_cal: LocalCalendar, weeks: int = PROFILE_WEEKS,
                     smoothing: float = PROFILE_SMOOTHING) -> np.ndarray:
    """Same-interval mean of ``weeks`` weeks, holidays as Sundays, blended with its neighbours.

    Public holidays of the room's region are left out of the weekday averages (a Christmas Day
    would lift every later Wednesday) and a holiday is forecast from the Sundays before it.
    Each interval's mean is then blended with the two adjacent intervals' (weights
    ``smoothing``, ``1 − 2·smoothing``, ``smoothing``), which halves the noise of a
    12-week mean at the cost of a little of the peaks' sharpness.

    Returns:
        Calls per target interval; never negative or NaN.
    """
    local = target_cal.local
    # Days back to the Sunday before each target (Monday 1 … Sunday 7).
    to_sunday = pd.to_timedelta(target_cal.weekday + 1, unit="D")
    keys = pd.DatetimeIndex(np.where(target_cal.holiday, (local - to_sunday + WEEK).values,
                                     local.values))
    lags = same_slot_lags(history, keys, weeks, history_cal, skip_holidays=True)
    mean = _nan_stat("mean", lags)
    fallback = seasonal_naive(history, target, history_cal)
    mean = _fill(mean, _fill(fallback, np.zeros(len(target))))
    if smoothing <= 0 or len(mean) < 3:
        return mean
    padded = np.concatenate([mean[:1], mean, mean[-1:]])
    return np.asarray(smoothing * padded[:-2] + (1 - 2 * smoothing) * padded[1:-1]
                      + smoothing * padded[2:])
