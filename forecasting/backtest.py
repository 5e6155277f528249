"""Rolling-origin backtests of the forecasting methods: WAPE, MASE and interval coverage."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from forecasting.baselines import seasonal_naive
from forecasting.history import MIN_HISTORY_DAYS, History, NotEnoughHistory
from forecasting.methods import METHODS, PROPHET, forecast_calls
from forecasting.prophet_model import INTERVAL_WIDTH
from services.contract.events import format_time
from services.planning.calendar import LONDON, LocalCalendar, utc_range

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


def origins_for(history: History, weeks: int) -> list[pd.Timestamp]:
    """Weekly origins at local midnights; the last is a week before the last complete day ends."""
    end_local = history.end.astimezone(LONDON)
    last_midnight = end_local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Wall-clock arithmetic: a week back is 7 local days, whatever the clock changes.
    return [pd.Timestamp((last_midnight - timedelta(days=7 * w)).astimezone(LONDON))
            .tz_convert("UTC") for w in range(weeks, 0, -1)]


def required_days(weeks: int) -> int:
    """Days of history a backtest over ``weeks`` weeks needs."""
    return weeks * HORIZON_DAYS + MIN_HISTORY_DAYS + 1


def run_backtest(history: History, weeks: int = DEFAULT_WEEKS,
                 methods: tuple[str, ...] = METHODS,
                 interval_width: float = INTERVAL_WIDTH) -> dict[str, Any]:
    """Compare the methods on rolling weekly origins over the last ``weeks`` weeks.

    For each origin every method is fitted on the history before it and forecasts the next
    seven days; errors are pooled over all origins. The method with the lowest WAPE is chosen.

    Args:
        history: the line's history.
        weeks: how many weekly origins.
        methods: the methods to compare.
        interval_width: coverage of the prediction intervals whose hit rate is reported.

    Returns:
        ``{"room", "line", "weeks", "horizon_days", "history_end", "origins",
        "interval_width", "methods": {name: {"wape", "mase", "coverage", "origins": [...]}},
        "chosen"}``.

    Raises:
        NotEnoughHistory: fewer than ``weeks × 7 + 15`` days of history.
    """
    if weeks < 1:
        raise NotEnoughHistory("a backtest needs at least one week (--weeks 1 or more)")
    history.require_days(required_days(weeks), f"a {weeks}-week backtest")
    series = history.series()
    origins = origins_for(history, weeks)
    if (origins[0] - history.index[0]) < pd.Timedelta(days=MIN_HISTORY_DAYS):
        raise NotEnoughHistory(
            f"room {history.room!r} line {history.line!r}: the first backtest origin "
            f"({format_time(origins[0].to_pydatetime())}) has less than {MIN_HISTORY_DAYS} days "
            f"of history before it; use fewer --weeks or import more history"
        )
    errors: dict[str, dict[str, list[Any]]] = {
        m: {"abs": [], "actual": [], "hits": [], "origins": []} for m in methods}
    init = None
    for origin in origins:
        train = series[series.index < origin]
        target = utc_range(origin.to_pydatetime(),
                           (origin + pd.Timedelta(days=HORIZON_DAYS + 1)).to_pydatetime())
        target = target[target < origin + pd.Timedelta(days=HORIZON_DAYS)]
        actual = series.reindex(target).to_numpy(dtype=float)
        known = np.isfinite(actual)
        train_cal = LocalCalendar(train.index)
        scale = naive_scale(train, train_cal)
        for method in methods:
            fc = forecast_calls(method, train, target, interval_width=interval_width,
                                init=init if method == PROPHET else None, history_cal=train_cal)
            if method == PROPHET:
                init = fc.params
            a, f = actual[known], fc.calls[known]
            hits = (a >= fc.lower[known]) & (a <= fc.upper[known])
            bucket = errors[method]
            bucket["abs"].append(np.abs(a - f))
            bucket["actual"].append(a)
            bucket["hits"].append(hits)
            bucket["origins"].append({
                "origin": format_time(origin.to_pydatetime()),
                "wape": _round(wape(a, f)), "mase": _round(mase(a, f, scale)),
                "scale": scale,
            })
    summary: dict[str, Any] = {}
    for method, bucket in errors.items():
        absolute = np.concatenate(bucket["abs"])
        actual_all = np.concatenate(bucket["actual"])
        mases = [o["mase"] for o in bucket["origins"] if o["mase"] is not None]
        for o in bucket["origins"]:
            o.pop("scale")
        summary[method] = {
            "wape": _round(float(absolute.sum() / actual_all.sum()) if actual_all.sum() else None),
            "mase": _round(float(np.mean(mases)) if mases else None),
            "coverage": _round(float(np.concatenate(bucket["hits"]).mean())),
            "origins": bucket["origins"],
        }
    ranked = sorted((s["wape"], m) for m, s in summary.items() if s["wape"] is not None)
    chosen = ranked[0][1] if ranked else PROPHET
    logger.info("backtest %s/%s: %s", history.room, history.line,
                ", ".join(f"{m} WAPE {s['wape']}" for m, s in summary.items()))
    return {
        "room": history.room, "line": history.line, "weeks": weeks,
        "horizon_days": HORIZON_DAYS, "history_end": format_time(history.end),
        "origins": [format_time(o.to_pydatetime()) for o in origins],
        "interval_width": interval_width, "methods": summary, "chosen": chosen,
    }


def _round(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)
