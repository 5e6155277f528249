"""Rolling-origin backtests of the forecasting methods: WAPE, MASE and interval coverage."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from forecasting.baselines import seasonal_naive
from forecasting.history import MIN_HISTORY_DAYS, History, NotEnoughHistory
from forecasting.methods import (
    COMBINATION,
    METHODS,
    PROFILE,
    PROPHET,
    CallForecast,
    combine,
    forecast_many,
    poisson_floor,
)
from forecasting.prophet_model import INTERVAL_WIDTH, TUNING_VARIANTS, tuning_kwargs
from forecasting.simple import SIMPLE_METHODS
from services.contract.events import format_time
from services.planning.calendar import DEFAULT_REGION, LocalCalendar, region, step_of, utc_range

logger = logging.getLogger(__name__)

HORIZON_DAYS = 7
DEFAULT_WEEKS = 4


def wape(actual: np.ndarray, forecast: np.ndarray) -> float | None:
    """Weighted absolute percentage error ``Σ|A − F| / ΣA`` (None when ΣA is 0)."""
    total = float(np.sum(actual))
    if total <= 0:
        return None
    return float(np.sum(np.abs(actual - forecast))) / total


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float | None:
    """Mean absolute scaled error: MAE over the weekly seasonal naive's in-sample MAE."""
    if not scale or not np.isfinite(scale) or actual.size == 0:
        return None
    return float(np.mean(np.abs(actual - forecast))) / scale


def naive_scale(history: pd.Series, cal: LocalCalendar | None = None) -> float:
    """In-sample MAE of the weekly seasonal naive over a training history."""
    previous = seasonal_naive(history, history.index, cal)
    values = history.to_numpy(dtype=float)
    ok = np.isfinite(previous) & np.isfinite(values)
    return float(np.mean(np.abs(values[ok] - previous[ok]))) if ok.any() else float("nan")


def origins_for(end: datetime, weeks: int, code: str = DEFAULT_REGION) -> list[pd.Timestamp]:
    """Weekly origins at local midnights; the last is a week before the last complete day ends.

    Args:
        end: the end of the history (aware).
        weeks: how many origins.
        code: the room's region, whose midnights count.
    """
    zone = region(code).zone
    end_local = end.astimezone(zone)
    last_midnight = end_local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Wall-clock arithmetic: a week back is 7 local days, whatever the clock changes.
    return [pd.Timestamp((last_midnight - timedelta(days=7 * w)).astimezone(zone))
            .tz_convert("UTC") for w in range(weeks, 0, -1)]


def required_days(weeks: int) -> int:
    """Days of history a backtest over ``weeks`` weeks needs."""
    return weeks * HORIZON_DAYS + MIN_HISTORY_DAYS + 1


def run_backtest(history: History, weeks: int = DEFAULT_WEEKS,
                 methods: tuple[str, ...] = METHODS,
                 interval_width: float = INTERVAL_WIDTH,
                 region_code: str = DEFAULT_REGION,
                 prophet_tuning: dict[str, Any] | None = None,
                 tune: bool = False) -> dict[str, Any]:
    """Compare the methods on rolling weekly origins over the last ``weeks`` weeks of a line.

    See :func:`backtest_series`, which this runs on the line's history; with ``tune``,
    Prophet's parameters are tuned first (:func:`tune_prophet`) and the comparison uses them.

    Raises:
        NotEnoughHistory: fewer than ``weeks × 7 + 15`` days of history.
    """
    if weeks < 1:
        raise NotEnoughHistory("a backtest needs at least one week (--weeks 1 or more)")
    history.require_days(required_days(weeks), f"a {weeks}-week backtest")
    series = history.series()
    if tune and PROPHET in methods:
        prophet_tuning = tune_prophet(series, weeks, interval_width, region_code,
                                      history.room, history.line, history.end)
    return backtest_series(series, weeks, methods, interval_width, region_code,
                           history.room, history.line, history.end,
                           prophet_tuning=prophet_tuning)


def tune_prophet(series: pd.Series, weeks: int = DEFAULT_WEEKS,
                 interval_width: float = INTERVAL_WIDTH, region_code: str = DEFAULT_REGION,
                 room: str = "", line: str = "", end: datetime | None = None,
                 variants: tuple[dict[str, Any], ...] = TUNING_VARIANTS) -> dict[str, Any]:
    """Prophet's parameters with the lowest WAPE on this series' own rolling-origin backtest.

    Each variant costs a Prophet fit per origin, so tuning is a separate, occasional step
    (``pacesetter backtest --tune``); the weekly re-selection and the daily plan reuse its
    result. Ties keep the earlier variant (the first is Prophet's default).

    Returns:
        ``{"params": {...}, "wape": w, "weeks": n, "history_end": t,
        "variants": [{"params": {...}, "wape": w}, ...]}``.

    Raises:
        NotEnoughHistory: too little history for ``weeks`` origins.
    """
    scored = []
    history_end = None
    for variant in variants:
        params = tuning_kwargs(variant)
        result = backtest_series(series, weeks, (PROPHET,), interval_width, region_code, room,
                                 line, end, prophet_tuning={"params": params})
        history_end = result["history_end"]
        scored.append({"params": params, "wape": result["methods"][PROPHET]["wape"]})
    known = [v for v in scored if v["wape"] is not None]
    best = min(known, key=lambda v: v["wape"]) if known else scored[0]
    logger.info("tuning %s/%s: Prophet %s WAPE %s", room, line, best["params"], best["wape"])
    return {"params": best["params"], "wape": best["wape"], "weeks": weeks,
            "history_end": history_end, "variants": scored}


def backtest_series(series: pd.Series, weeks: int = DEFAULT_WEEKS,
                    methods: tuple[str, ...] = METHODS,
                    interval_width: float = INTERVAL_WIDTH,
                    region_code: str = DEFAULT_REGION, room: str = "", line: str = "",
                    end: datetime | None = None,
                    prophet_tuning: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare the methods on rolling weekly origins over the last ``weeks`` weeks.

    For each origin every method is fitted on the history before it and forecasts the next
    seven local days at the series' resolution; errors are pooled over all origins. A
    combination (the inverse-WAPE-weighted average of Prophet, or without Prophet the
    smoothed profile, and the best other method) is scored from the same forecasts. The
    method with the lowest WAPE is chosen.

    Args:
        series: calls per UTC interval, regular (15 min, 30 min or an hour), NaN where unknown.
        weeks: how many weekly origins.
        methods: the methods to compare.
        interval_width: coverage of the prediction intervals whose hit rate is reported.
        region_code: the room's region (local midnights, holidays).
        room: the room, for the result.
        line: the line, for the result.
        end: the end of the history (default: the last interval's end).
        prophet_tuning: the series' tuning result (:func:`tune_prophet`), whose ``params``
            Prophet uses; it is kept in the result so that later backtests reuse it.

    Returns:
        ``{"room", "line", "weeks", "horizon_days", "history_end", "origins", "region",
        "resolution_minutes", "interval_width", "methods": {name: {"wape", "mase",
        "coverage", "origins": [...]}}, "chosen", "best_simple", "noise_floor"}``; the
        combination's entry has ``params``, its weights; with a tuning, ``prophet_tuning``.

    Raises:
        NotEnoughHistory: the first origin has less than 14 days of history before it.
    """
    step = step_of(series.index)
    end = end or (series.index[-1] + step).to_pydatetime()
    origins = origins_for(end, weeks, region_code)
    if (origins[0] - series.index[0]) < pd.Timedelta(days=MIN_HISTORY_DAYS):
        raise NotEnoughHistory(
            f"room {room!r} line {line!r}: the first backtest origin "
            f"({format_time(origins[0].to_pydatetime())}) has less than {MIN_HISTORY_DAYS} days "
            f"of history before it; use fewer --weeks or import more history"
        )
    zone = region(region_code).zone
    runs: list[tuple[pd.Timestamp, np.ndarray, float, dict[str, CallForecast]]] = []
    init = None
    tuning = (prophet_tuning or {}).get("params")
    for origin in origins:
        train = series[series.index < origin]
        horizon_end = (origin.tz_convert(zone) + timedelta(days=HORIZON_DAYS)).tz_convert("UTC")
        target = utc_range(origin.to_pydatetime(), horizon_end.to_pydatetime(), step)
        actual = series.reindex(target).to_numpy(dtype=float)
        train_cal = LocalCalendar(train.index, region_code)
        scale = naive_scale(train, train_cal)
        forecasts = forecast_many(methods, train, target, interval_width=interval_width,
                                  init=init, history_cal=train_cal, region=region_code,
                                  tuning=tuning)
        if PROPHET in forecasts:
            init = forecasts[PROPHET].params
        runs.append((origin, actual, scale, forecasts))
    summary = {m: _score(runs, lambda fcs, m=m: fcs[m]) for m in methods}
    weights = _combination_weights(summary)
    if weights:
        summary[COMBINATION] = _score(runs, lambda fcs: combine(fcs, weights))
        summary[COMBINATION]["params"] = {"weights": weights}
    ranked = sorted((s["wape"], m) for m, s in summary.items() if s["wape"] is not None)
    chosen = ranked[0][1] if ranked else PROPHET
    simple = sorted((s["wape"], m) for m, s in summary.items()
                    if m in SIMPLE_METHODS and s["wape"] is not None)
    chosen_runs = [(a, (combine(f, weights) if chosen == COMBINATION else f[chosen]).calls)
                   for _, a, _, f in runs]
    actual_all = np.concatenate([a for a, _ in chosen_runs])
    expected_all = np.concatenate([f for _, f in chosen_runs])
    known = np.isfinite(actual_all)
    logger.info("backtest %s/%s: chosen %s WAPE %s", room, line, chosen, summary[chosen]["wape"])
    result = {
        "room": room, "line": line, "weeks": weeks,
        "horizon_days": HORIZON_DAYS, "history_end": format_time(end),
        "origins": [format_time(o.to_pydatetime()) for o in origins],
        "region": region(region_code).code,
        "resolution_minutes": int(step / pd.Timedelta(minutes=1)),
        "interval_width": interval_width, "methods": summary, "chosen": chosen,
        "best_simple": simple[0][1] if simple else None,
        "noise_floor": _round(poisson_floor(expected_all[known], actual_all[known])),
    }
    if prophet_tuning is not None and "variants" in prophet_tuning:
        result["prophet_tuning"] = prophet_tuning
    return result


def _score(runs: list[tuple[pd.Timestamp, np.ndarray, float,
                             dict[str, CallForecast]]],
           pick: Any) -> dict[str, Any]:
    absolute, actuals, hits = [], [], []
    per_origin: list[dict[str, Any]] = []
    mases: list[float] = []
    for origin, actual, scale, forecasts in runs:
        fc: CallForecast = pick(forecasts)
        known = np.isfinite(actual)
        a, f = actual[known], fc.calls[known]
        absolute.append(np.abs(a - f))
        actuals.append(a)
        hits.append((a >= fc.lower[known]) & (a <= fc.upper[known]))
        scaled = _round(mase(a, f, scale))
        if scaled is not None:
            mases.append(scaled)
        per_origin.append({"origin": format_time(origin.to_pydatetime()),
                           "wape": _round(wape(a, f)), "mase": scaled})
    abs_all, actual_all = np.concatenate(absolute), np.concatenate(actuals)
    return {
        "wape": _round(float(abs_all.sum() / actual_all.sum()) if actual_all.sum() else None),
        "mase": _round(float(np.mean(mases)) if mases else None),
        "coverage": _round(float(np.concatenate(hits).mean()) if actual_all.size else None),
        "origins": per_origin,
    }


def _combination_weights(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Inverse-WAPE weights of Prophet (else the smoothed profile) and the best other method."""
    anchor = PROPHET if PROPHET in summary else PROFILE if PROFILE in summary else None
    if anchor is None or not summary[anchor]["wape"]:
        return {}
    others = sorted((s["wape"], m) for m, s in summary.items()
                    if m != anchor and s["wape"])
    if not others:
        return {}
    partner = others[0][1]
    inverse = {anchor: 1.0 / summary[anchor]["wape"], partner: 1.0 / others[0][0]}
    total = sum(inverse.values())
    return {m: round(v / total, 4) for m, v in inverse.items()}


def _round(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)
