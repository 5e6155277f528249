"""The forecasting methods: the simple ones a scheduler uses, the models, and combinations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecasting.baselines import daily_profile, noise_sd, sqrt_interval
from forecasting.prophet_model import INTERVAL_WIDTH, UNCERTAINTY_SAMPLES, prophet_forecast
from forecasting.simple import (
    SIMPLE_DESCRIPTIONS,
    SIMPLE_METHODS,
    simple_forecasts,
    smoothed_profile,
)
from services.contract.errors import PacesetterError
from services.planning.calendar import DEFAULT_REGION, LocalCalendar

PROPHET = "prophet"
DAILY_PROFILE = "daily_profile"
PROFILE = "smoothed_profile"
COMBINATION = "combination"
MODELS = (DAILY_PROFILE, PROFILE, PROPHET)
# The methods a backtest compares; the combination is built from their backtest forecasts.
METHODS: tuple[str, ...] = SIMPLE_METHODS + MODELS
DESCRIPTIONS = {
    **SIMPLE_DESCRIPTIONS,
    PROPHET: "Prophet (weekday/weekend days, weekly, public holidays)",
    DAILY_PROFILE: "daily total × intraday profile",
    PROFILE: "smoothed profile (12-week mean, holidays as Sundays, blended)",
    COMBINATION: "combination (error-weighted average of two methods)",
}
# Forecast errors of the cheap methods are measured on the last two weeks of their own
# history, which sets the width of their prediction intervals.
CALIBRATION_DAYS = 14
MIN_CALIBRATION_INTERVALS = 96


class UnknownMethod(PacesetterError):
    """A forecasting method name that does not exist."""


@dataclass
class CallForecast:
    """Calls per target interval with a prediction interval, from one method."""

    method: str
    calls: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


def _cheap_points(names: Iterable[str], history: pd.Series, target: pd.DatetimeIndex,
                  hcal: LocalCalendar, tcal: LocalCalendar) -> dict[str, np.ndarray]:
    wanted = set(names)
    points: dict[str, np.ndarray] = {}
    if wanted & set(SIMPLE_METHODS):
        points.update({k: v for k, v in simple_forecasts(history, target, hcal, tcal).items()
                       if k in wanted})
    if PROFILE in wanted:
        points[PROFILE] = smoothed_profile(history, target, hcal, tcal)
    if DAILY_PROFILE in wanted:
        points[DAILY_PROFILE] = np.nan_to_num(
            np.clip(daily_profile(history, target, hcal), 0, None))
    return points


def _spreads(names: list[str], history: pd.Series, region: str) -> dict[str, float]:
    """Each method's error in √ space over the history's last two weeks (its own backtest).

    The spread holds the method's bias and the demand's noise together, so the interval is
    as wide as the method's real errors (overdispersed or bursty series get wider ones).
    """
    cut = history.index[-1] - pd.Timedelta(days=CALIBRATION_DAYS)
    train, test = history[history.index <= cut], history[history.index > cut]
    known = np.isfinite(test.to_numpy(dtype=float))
    if len(train) < MIN_CALIBRATION_INTERVALS or known.sum() < MIN_CALIBRATION_INTERVALS:
        fallback = noise_sd(history) * np.sqrt(2.0)
        return dict.fromkeys(names, fallback)
    points = _cheap_points(names, train, test.index, LocalCalendar(train.index, region),
                           LocalCalendar(test.index, region))
    actual = np.sqrt(np.clip(test.to_numpy(dtype=float)[known], 0, None))
    return {name: float(np.sqrt(np.mean((actual - np.sqrt(points[name][known])) ** 2)))
            for name in names}


def forecast_many(methods: Iterable[str], history: pd.Series, target: pd.DatetimeIndex, *,
                  interval_width: float = INTERVAL_WIDTH,
                  uncertainty_samples: int = UNCERTAINTY_SAMPLES,
                  init: dict[str, Any] | None = None,
                  history_cal: LocalCalendar | None = None,
                  region: str = DEFAULT_REGION,
                  tuning: dict[str, Any] | None = None) -> dict[str, CallForecast]:
    """Forecasts of several methods (not the combination) from one read of the history.

    Raises:
        UnknownMethod: a name is not one of :data:`METHODS`.
    """
    names = list(dict.fromkeys(methods))
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise UnknownMethod(f"method {unknown[0]!r} is not one of {', '.join(METHODS)}, "
                            f"{COMBINATION}")
    hcal = history_cal or LocalCalendar(history.index, region)
    tcal = LocalCalendar(target, region)
    cheap = [m for m in names if m != PROPHET]
    points = _cheap_points(cheap, history, target, hcal, tcal)
    spreads = _spreads(cheap, history, region) if cheap else {}
    result: dict[str, CallForecast] = {}
    for name in names:
        if name == PROPHET:
            fit = prophet_forecast(history, target, interval_width=interval_width,
                                   uncertainty_samples=uncertainty_samples, init=init,
                                   region=region, tuning=tuning)
            result[name] = CallForecast(name, fit.calls, fit.lower, fit.upper, fit.params)
            continue
        calls = points[name]
        lower, upper = sqrt_interval(calls, spreads[name], interval_width)
        result[name] = CallForecast(name, calls, lower, upper)
    return result


def combine(parts: dict[str, CallForecast], weights: dict[str, float]) -> CallForecast:
    """The weighted average of forecasts; intervals averaged in √ space, where noise is even."""
    total = sum(weights.values())
    calls = sum(parts[m].calls * w for m, w in weights.items()) / total
    lower = sum(np.sqrt(np.clip(parts[m].lower, 0, None)) * w for m, w in weights.items()) / total
    upper = sum(np.sqrt(np.clip(parts[m].upper, 0, None)) * w for m, w in weights.items()) / total
    return CallForecast(COMBINATION, np.asarray(calls), np.asarray(lower) ** 2,
                        np.maximum(np.asarray(upper) ** 2, calls),
                        {"weights": {m: round(w / total, 4) for m, w in weights.items()}})


def forecast_calls(method: str, history: pd.Series, target: pd.DatetimeIndex, *,
                   interval_width: float = INTERVAL_WIDTH,
                   uncertainty_samples: int = UNCERTAINTY_SAMPLES,
                   init: dict[str, Any] | None = None,
                   history_cal: LocalCalendar | None = None,
                   params: dict[str, Any] | None = None,
                   region: str = DEFAULT_REGION,
                   tuning: dict[str, Any] | None = None) -> CallForecast:
    """Forecast calls per target interval with ``method``.

    Args:
        method: one of :data:`METHODS` or :data:`COMBINATION`.
        history: calls per UTC interval (NaN where unknown), at any regular resolution.
        target: UTC interval starts to forecast, at the history's resolution.
        interval_width: coverage of the prediction interval.
        uncertainty_samples: Prophet's simulation draws.
        init: Prophet parameters of an earlier fit of the series (warm start).
        history_cal: the history's calendar, when already computed.
        params: the combination's ``{"weights": {method: weight}}`` from its backtest.
        region: the room's region (time zone and public holidays).
        tuning: Prophet's parameters tuned for this series (``pacesetter backtest --tune``).

    Returns:
        The forecast; never negative.

    Raises:
        UnknownMethod: ``method`` is not a method, or a combination without weights.
    """
    if method == COMBINATION:
        weights = (params or {}).get("weights")
        if not weights:
            raise UnknownMethod("a combination needs the weights its backtest chose")
        parts = forecast_many(weights, history, target, interval_width=interval_width,
                              uncertainty_samples=uncertainty_samples, init=init,
                              history_cal=history_cal, region=region, tuning=tuning)
        return combine(parts, {m: float(w) for m, w in weights.items()})
    return forecast_many([method], history, target, interval_width=interval_width,
                         uncertainty_samples=uncertainty_samples, init=init,
                         history_cal=history_cal, region=region, tuning=tuning)[method]


def poisson_floor(expected: np.ndarray, actual: np.ndarray) -> float | None:
    """The WAPE a perfect forecast of the mean would still have on Poisson counts.

    ``E|X − λ| = 2λ·P(X = ⌊λ⌋)`` for Poisson X, summed over the intervals with ``λ`` the
    forecast, over the actual total: how much of a WAPE is noise no method can remove.
    """
    total = float(np.sum(actual))
    if total <= 0:
        return None
    lam = np.clip(np.asarray(expected, dtype=float), 1e-9, None)
    from scipy.stats import poisson

    return float(np.sum(2.0 * lam * poisson.pmf(np.floor(lam), lam))) / total

