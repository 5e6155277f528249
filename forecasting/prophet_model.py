"""Prophet forecasts of calls per quarter hour, fitted on √calls in local wall-clock time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from forecasting.baselines import noise_sd
from forecasting.plan import quarter_shares, spread_to_quarters
from services.planning.calendar import (
    DEFAULT_REGION,
    LocalCalendar,
    holiday_frame,
    step_of,
    utc_range,
)

logger = logging.getLogger(__name__)

# Fit settings, chosen by backtests on eight weeks of 15-minute history: ten changepoints are
# plenty without yearly seasonality, and 200 samples give stable 90 % intervals in a fraction
# of the time of the default 1,000.
N_CHANGEPOINTS = 10
DAILY_ORDER = 8
WEEKLY_ORDER = 4
UNCERTAINTY_SAMPLES = 200
INTERVAL_WIDTH = 0.90
SEED = 20261121

# Per-series tuning (``pacesetter backtest --tune``): the variants a rolling-origin backtest
# of Prophet alone compares. Seasonality on the √ scale may still scale with the level
# (multiplicative) or not; the changepoint prior lets the trend bend more or less. The first
# is Prophet's default, what a series without a tuning result uses.
DEFAULT_TUNING: dict[str, Any] = {"seasonality_mode": "additive",
                                  "changepoint_prior_scale": 0.05}
TUNING_VARIANTS: tuple[dict[str, Any], ...] = (
    DEFAULT_TUNING,
    {"seasonality_mode": "multiplicative", "changepoint_prior_scale": 0.05},
    {"seasonality_mode": "additive", "changepoint_prior_scale": 0.01},
    {"seasonality_mode": "multiplicative", "changepoint_prior_scale": 0.01},
)


def tuning_kwargs(tuning: dict[str, Any] | None) -> dict[str, Any]:
    """Prophet's constructor arguments for a stored tuning (defaults for missing or unknown).

    A stored tuning is read back from JSON written by an older or newer version: only the
    known keys with valid values are used, so a stale entry falls back to the default.
    """
    out = dict(DEFAULT_TUNING)
    for key, value in (tuning or {}).items():
        if key == "seasonality_mode" and value in ("additive", "multiplicative"):
            out[key] = value
        elif (key == "changepoint_prior_scale" and isinstance(value, int | float)
              and not isinstance(value, bool) and value > 0):
            out[key] = float(value)
    return out


def _quiet_imports() -> Any:
    # Prophet announces a missing plotly at import and cmdstanpy logs every chain at INFO.
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
    from prophet import Prophet

    # cmdstanpy sets up its own logger on import: quieten it afterwards.
    stan_logger = logging.getLogger("cmdstanpy")
    stan_logger.setLevel(logging.WARNING)
    for handler in stan_logger.handlers:
        handler.setLevel(logging.WARNING)
    return Prophet


def _hand_arrays_to_stan(model: Any) -> None:
    """Give CmdStan's JSON writer NumPy arrays instead of Prophet's nested lists.

    Prophet's backend turns its data into Python lists, which the writer (stanio) then walks
    value by value: about a third of a fit's time on 15-minute history. Arrays take the
    writer's fast path and produce the same JSON. Only this model's backend is touched, and
    only when it has the ``prepare_data`` step this relies on.
    """
    backend = getattr(model, "stan_backend", None)
    original = getattr(backend, "prepare_data", None)
    if backend is None or original is None:
        return

    def as_arrays(values: dict[str, Any]) -> dict[str, Any]:
        return {k: np.asarray(v) if isinstance(v, list) else v
                for k, v in values.items()}

    def prepare_data(init: dict[str, Any], data: dict[str, Any]) -> tuple[Any, Any]:
        init_out, data_out = original(init, data)
        return as_arrays(init_out), as_arrays(data_out)

    backend.prepare_data = prepare_data


@dataclass
class ProphetResult:
    """One fit's forecast (calls and interval per target interval) and fitted parameters.

    The parameters warm-start the next fit of the same series.
    """

    calls: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    params: dict[str, Any]


BURST_LIMIT = 4.0  # robust sds above the weekly median


def tame_bursts(root: np.ndarray, cal: LocalCalendar) -> np.ndarray:
    """Cap single bursts in √ space at the interval's weekly median + 4 robust sds.

    A burst (one quarter hour of 226 calls against a usual peak of 135) is an event, not
    demand that returns next week; left in, Prophet bends its trend and daily shape to it.
    """
    keys = cal.weekday * 96 + cal.slot
    known = np.isfinite(root)
    if known.sum() < 2 * 7 * 96 // 4:
        return root
    frame = pd.DataFrame({"key": keys[known], "y": root[known]})
    median = frame.groupby("key")["y"].transform("median").to_numpy()
    residual = frame["y"].to_numpy() - median
    sd = 1.4826 * float(np.median(np.abs(residual)))
    if sd <= 0:
        return root
    out = root.copy()
    out[known] = np.minimum(frame["y"].to_numpy(), median + BURST_LIMIT * sd)
    return out


def build_model(prophet_class: Any, holidays: pd.DataFrame | None, interval_width: float,
                uncertainty_samples: int, tuning: dict[str, Any] | None = None) -> Any:
    """An unfitted Prophet with this project's features and the series' tuned parameters."""
    model = prophet_class(
        growth="linear", n_changepoints=N_CHANGEPOINTS, yearly_seasonality=False,
        weekly_seasonality=WEEKLY_ORDER, daily_seasonality=False,
        holidays=holidays, interval_width=interval_width,
        uncertainty_samples=uncertainty_samples, mcmc_samples=0, **tuning_kwargs(tuning),
    )
    model.add_seasonality("daily_work", period=1, fourier_order=DAILY_ORDER,
                          condition_name="work")
    model.add_seasonality("daily_rest", period=1, fourier_order=DAILY_ORDER,
                          condition_name="rest")
    _hand_arrays_to_stan(model)
    return model


def _frame(cal: LocalCalendar) -> pd.DataFrame:
    # Prophet's ds is naive: local wall-clock time, so the daily shape follows the clock
    # people live by across the clock changes.
    return pd.DataFrame({"ds": cal.local, "rest": cal.rest_day, "work": ~cal.rest_day})


HOUR = pd.Timedelta(hours=1)


def prophet_forecast(history: pd.Series, target: pd.DatetimeIndex,
                     interval_width: float = INTERVAL_WIDTH,
                     uncertainty_samples: int = UNCERTAINTY_SAMPLES,
                     init: dict[str, Any] | None = None,
                     region: str = DEFAULT_REGION,
                     tuning: dict[str, Any] | None = None) -> ProphetResult:
    """Prophet's forecast; history finer than an hour is fitted per hour and spread back.

    A fit on hourly sums costs a quarter of one on quarter hours (Prophet's time grows with
    the rows) and loses nothing Prophet models well: its daily shapes are smooth, and the
    line's own quarter-hour profile splits each hour back (as staffing does for hourly
    history). See :func:`_prophet_fit` for the model.
    """
    step = step_of(history.index)
    if step >= HOUR or not len(target):
        return _prophet_fit(history, target, interval_width, uncertainty_samples, init, region,
                            tuning)
    known = history.notna().astype(float)
    per_hour = int(HOUR / step)
    grouped = history.fillna(0).groupby(history.index.floor(HOUR))
    hourly = grouped.sum().where(known.groupby(history.index.floor(HOUR)).sum() == per_hour)
    hours = utc_range(target[0].floor(HOUR).to_pydatetime(),
                      (target[-1] + step).ceil(HOUR).to_pydatetime(), HOUR)
    fit = _prophet_fit(hourly, hours, interval_width, uncertainty_samples, init, region,
                       tuning)
    recent = history[history.index >= history.index[-1] - pd.Timedelta(weeks=8)]
    shares = quarter_shares([recent], region)
    quarters, calls, lower, upper = spread_to_quarters(hours, HOUR, fit.calls, fit.lower,
                                                       fit.upper, shares, region)
    if uncertainty_samples:
        # A quarter hour's own count noise (in √ space, from week-on-week differences) is the
        # least its interval holds: an hour's fit sees only the smoother hourly sums.
        half = float(norm.ppf(0.5 + interval_width / 2.0)) * noise_sd(recent)
        root = np.sqrt(calls)
        lower = np.minimum(lower, np.clip(root - half, 0, None) ** 2)
        upper = np.maximum(upper, (root + half) ** 2)
    keep = np.isin(quarters.asi8, target.asi8)
    return ProphetResult(calls[keep], lower[keep], upper[keep], fit.params)


def _prophet_fit(history: pd.Series, target: pd.DatetimeIndex,
                 interval_width: float = INTERVAL_WIDTH,
                 uncertainty_samples: int = UNCERTAINTY_SAMPLES,
                 init: dict[str, Any] | None = None,
                 region: str = DEFAULT_REGION,
                 tuning: dict[str, Any] | None = None) -> ProphetResult:
    """Fit Prophet to a line's history and forecast the target intervals.

    The model: linear trend, weekly seasonality, separate daily shapes for working days and
    rest days (weekends and public holidays; conditional seasonalities), the region's public
    holidays as holiday effects, fitted on ``√calls`` so that the noise is about even through
    the day (counts are Poisson-like). Back-transformed forecasts add the residual variance
    (E[y] = E[√y]² + Var √y). The interval is ``ŷ ± z·√(σ² + trend variance)`` in √
    space (σ: the fit's noise; the trend's variance from Prophet's simulated future
    changepoints), squared back. Nothing is negative.

    Args:
        history: calls per UTC interval (NaN where unknown).
        target: UTC interval starts to forecast.
        interval_width: coverage of the prediction interval.
        uncertainty_samples: Prophet's draws of future trend changes (0: no interval).
        init: parameters of an earlier fit of the same series to start from (faster).
        region: the room's region: its local time and public holidays.
        tuning: the series' tuned ``seasonality_mode`` and ``changepoint_prior_scale``
            (see :data:`TUNING_VARIANTS`); None for the defaults.

    Returns:
        The forecast and the fitted parameters.
    """
    prophet_class = _quiet_imports()
    hist_cal = LocalCalendar(history.index, region)
    frame = _frame(hist_cal)
    frame["y"] = tame_bursts(np.sqrt(np.clip(history.to_numpy(dtype=float), 0, None)), hist_cal)
    frame = frame[np.isfinite(frame["y"].to_numpy())]
    target_cal = LocalCalendar(target, region)
    future = _frame(target_cal)
    first = min(frame["ds"].iloc[0], future["ds"].iloc[0]).date()
    last = max(frame["ds"].iloc[-1], future["ds"].iloc[-1]).date()
    holidays = holiday_frame(first, last, region)
    holidays = holidays if len(holidays) else None

    def build() -> Any:
        return build_model(prophet_class, holidays, interval_width, uncertainty_samples, tuning)

    model = build()
    if init is not None:
        try:
            model.fit(frame, init=init)
        except Exception as exc:  # noqa: BLE001 - a warm start is only an optimisation
            # Parameter shapes differ when the features differ (holidays in range …).
            logger.debug("warm start failed (%s); fitting from scratch", exc)
            model = build()
            model.fit(frame)
    else:
        model.fit(frame)
    # The autumn clock change repeats an hour of wall-clock times: predict each once.
    unique = future.drop_duplicates("ds")
    model.uncertainty_samples = 0  # the point forecast needs no simulation
    predicted = model.predict(unique)
    sigma = float(model.params["sigma_obs"][0, 0]) * float(model.y_scale)
    trend_sd = np.zeros(len(unique))
    if uncertainty_samples:
        model.uncertainty_samples = uncertainty_samples
        # Prophet simulates future trend changes with NumPy's global generator: seed it so
        # that the same history gives the same interval, and restore the caller's state.
        state = np.random.get_state()
        np.random.seed(SEED)
        try:
            trend_sd = np.std(model.predictive_samples(unique)["trend"], axis=1)
        finally:
            np.random.set_state(state)
    predicted["spread"] = np.sqrt(sigma**2 + trend_sd**2)
    rows = predicted.set_index("ds").reindex(future["ds"])
    # In √ space the noise is even through the day, so the interval is analytic there (a
    # smooth band; sampled quantiles of 200 draws are ragged), then squared back.
    root = rows["yhat"].to_numpy()
    spread = rows["spread"].to_numpy()
    z = float(norm.ppf(0.5 + interval_width / 2.0))
    calls = np.clip(root, 0, None) ** 2 + sigma**2
    if uncertainty_samples:
        lower = np.clip(root - z * spread, 0, None) ** 2
        upper = np.clip(root + z * spread, 0, None) ** 2
    else:
        lower = upper = np.full(len(calls), np.nan)
    params = {name: np.asarray(value)[0] for name, value in model.params.items()}
    params = {name: (float(v) if np.ndim(v) == 0 else v) for name, v in params.items()}
    return ProphetResult(calls, lower, np.maximum(upper, calls), params)

