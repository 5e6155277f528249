"""The forecasting methods behind one call: Prophet and the two baselines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecasting.baselines import daily_profile, noise_sd, seasonal_naive, sqrt_interval
from forecasting.prophet_model import INTERVAL_WIDTH, UNCERTAINTY_SAMPLES, prophet_forecast
from services.contract.errors import PacesetterError
from services.planning.calendar import LocalCalendar

PROPHET = "prophet"
SEASONAL_NAIVE = "seasonal_naive"
DAILY_PROFILE = "daily_profile"
METHODS = (PROPHET, SEASONAL_NAIVE, DAILY_PROFILE)
DESCRIPTIONS = {
    PROPHET: "Prophet (weekday/weekend days, weekly, bank holidays)",
    SEASONAL_NAIVE: "seasonal naive (same quarter hour a week earlier)",
    DAILY_PROFILE: "daily total × intraday profile",
}


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


def forecast_calls(method: str, history: pd.Series, target: pd.DatetimeIndex, *,
                   interval_width: float = INTERVAL_WIDTH,
                   uncertainty_samples: int = UNCERTAINTY_SAMPLES,
                   init: dict[str, Any] | None = None,
                   history_cal: LocalCalendar | None = None) -> CallForecast:
    """Forecast calls per target interval with ``method``.

    Args:
        method: one of :data:`METHODS`.
        history: calls per UTC interval (NaN where unknown).
        target: UTC interval starts to forecast.
        interval_width: coverage of the prediction interval.
        uncertainty_samples: Prophet's simulation draws.
        init: Prophet parameters of an earlier fit of the series (warm start).
        history_cal: the history's calendar, when already computed.

    Returns:
        The forecast; never negative.

    Raises:
        UnknownMethod: ``method`` is not one of :data:`METHODS`.
    """
    if method == PROPHET:
        fit = prophet_forecast(history, target, interval_width=interval_width,
                               uncertainty_samples=uncertainty_samples, init=init)
        return CallForecast(method, fit.calls, fit.lower, fit.upper, fit.params)
    if method == SEASONAL_NAIVE:
        calls = seasonal_naive(history, target, history_cal)
        # Forecast and actual each carry one interval's noise.
        spread = noise_sd(history) * np.sqrt(2.0)
    elif method == DAILY_PROFILE:
        calls = daily_profile(history, target, history_cal)
        spread = noise_sd(history) * np.sqrt(1.25)  # the total averages four days
    else:
        raise UnknownMethod(f"method {method!r} is not one of {', '.join(METHODS)}")
    calls = np.nan_to_num(np.clip(calls, 0, None))
    lower, upper = sqrt_interval(calls, spread, interval_width)
    return CallForecast(method, calls, lower, upper)
