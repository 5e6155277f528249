"""Staffing plans from forecasts (Erlang C and A per quarter hour) and the intraday reforecast."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from services.contract.errors import PacesetterError
from services.contract.events import format_time
from services.planning.calendar import (
    DEFAULT_REGION,
    INTERVAL,
    INTERVAL_SECONDS,
    LONDON,
    SLOTS_PER_DAY,
    LocalCalendar,
    utc_range,
)
from services.planning.erlang import erlang_a_many, erlang_c_many, required_handlers_many

MIN_REFORECAST_CALLS = 10.0  # below this many forecast calls so far, a ratio is mostly noise
REFORECAST_LIMITS = (0.5, 2.0)


class NoHandlingTimes(PacesetterError):
    """A staffing plan needs handling times and the history has none."""


@dataclass(frozen=True)
class StaffingRules:
    """What a plan must achieve on one line (METRICS.md, "Forecasts and staffing")."""

    threshold_seconds: float
    service_level_target: float
    max_occupancy: float
    shrinkage: float
    patience_seconds: float | None = None


@dataclass
class Reforecast:
    """Today's scaling of the remaining intervals: actual ÷ forecast so far."""

    factor: float
    actual_calls: float
    forecast_calls: float
    elapsed_intervals: int


def reforecast_factor(index: pd.DatetimeIndex, calls: np.ndarray,
                      actual: dict[pd.Timestamp, float], now: pd.Timestamp) -> Reforecast | None:
    """The actual ÷ forecast ratio over today's elapsed intervals in ``index``.

    Intervals of today (local date of ``now``) that ended by ``now`` count; a missing record
    counts as 0 calls once the day has any record (records exist only for intervals with a
    call). The ratio is clamped to [0.5, 2].

    Returns:
        The factor, or None when today has no elapsed interval with a record, or fewer than
        10 calls were forecast so far (too little to scale by).
    """
    today = now.tz_convert(LONDON).date()
    local_dates = index.tz_convert(LONDON).date
    elapsed = (local_dates == today) & (index + INTERVAL <= now)
    if not elapsed.any() or not any(index[i] in actual for i in np.flatnonzero(elapsed)):
        return None
    forecast_so_far = float(calls[elapsed].sum())
    actual_so_far = float(sum(actual.get(t, 0.0) for t in index[elapsed]))
    if forecast_so_far < MIN_REFORECAST_CALLS:
        return None
    factor = min(max(actual_so_far / forecast_so_far, REFORECAST_LIMITS[0]), REFORECAST_LIMITS[1])
    return Reforecast(factor, actual_so_far, forecast_so_far, int(elapsed.sum()))


def apply_reforecast(index: pd.DatetimeIndex, arrays: list[np.ndarray], factor: float,
                     now: pd.Timestamp) -> list[np.ndarray]:
    """Scale today's intervals that have not ended by ``factor`` (the others are unchanged)."""
    today = now.tz_convert(LONDON).date()
    remaining = (index.tz_convert(LONDON).date == today) & (index + INTERVAL > now)
    return [np.where(remaining, values * factor, values) for values in arrays]


def staffing_rows(room: str, line: str, index: pd.DatetimeIndex, calls: np.ndarray,
                  calls_lower: np.ndarray, calls_upper: np.ndarray, aht_seconds: np.ndarray,
                  rules: StaffingRules, method: str | Sequence[str],
                  generated_at: str) -> list[dict[str, Any]]:
    """Plan rows (the store's and API's shape) for forecast intervals.

    Required handlers: the smallest N > A meeting the target service level at the threshold
    and the maximum occupancy (Erlang C), from the central forecast and from its upper bound.
    Rostered handlers: ``N / (1 − shrinkage)``, fractional and rounded up. Service level,
    ASA and occupancy are Erlang C figures at N; abandonment is Erlang A's at N when the
    callers' patience is known. ``method`` labels every row, or each row (a sequence).

    Raises:
        NoHandlingTimes: no AHT is known for some interval.
    """
    if not np.isfinite(aht_seconds).all():
        raise NoHandlingTimes(
            f"room {room!r} line {line!r}: the history has no handling times (aht_seconds); "
            "import intervals with an aht_seconds column, or per-call records with answer "
            "and end times"
        )
    calls = np.clip(calls, 0, None)
    upper = np.maximum(np.clip(calls_upper, 0, None), calls)
    required = required_handlers_many(calls, INTERVAL_SECONDS, aht_seconds,
                                      rules.threshold_seconds, rules.service_level_target,
                                      rules.max_occupancy)
    required_upper = required_handlers_many(upper, INTERVAL_SECONDS, aht_seconds,
                                            rules.threshold_seconds, rules.service_level_target,
                                            rules.max_occupancy)
    figures = erlang_c_many(calls, INTERVAL_SECONDS, aht_seconds, required,
                            rules.threshold_seconds)
    abandonment = (
        erlang_a_many(calls, INTERVAL_SECONDS, aht_seconds, required,
                      rules.patience_seconds)["abandonment"]
        if rules.patience_seconds else np.full(calls.shape, np.nan)
    )
    keep = 1.0 - rules.shrinkage
    local = index.tz_convert(LONDON)
    rows = []
    for i, start in enumerate(index):
        rostered = required[i] / keep
        rows.append({
            "room": room, "line": line,
            "interval_start": format_time(start.to_pydatetime()),
            "interval_end": format_time((start + INTERVAL).to_pydatetime()),
            "local_start": local[i].to_pydatetime().isoformat(timespec="minutes"),
            "calls": _r(calls[i], 3), "calls_lower": _r(calls_lower[i], 3),
            "calls_upper": _r(upper[i], 3), "aht_seconds": _r(aht_seconds[i], 1),
            "required_handlers": int(required[i]),
            "required_handlers_upper": int(required_upper[i]),
            "rostered_handlers": _r(rostered, 3),
            "rostered_handlers_rounded": int(math.ceil(rostered - 1e-9)),
            "rostered_handlers_upper": int(math.ceil(required_upper[i] / keep - 1e-9)),
            "service_level": _r(figures["service_level"][i], 4),
            "asa_seconds": _r(figures["asa_seconds"][i], 2),
            "occupancy": _r(figures["occupancy"][i], 4),
            "abandonment": _r(abandonment[i], 5),
            "threshold_seconds": rules.threshold_seconds,
            "service_level_target": rules.service_level_target,
            "patience_seconds": _r(rules.patience_seconds, 1),
            "method": method if isinstance(method, str) else str(method[i]),
            "generated_at": generated_at,
        })
    return rows


def _r(value: float | None, places: int) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), places)


def quarter_shares(series: list[pd.Series], region: str = DEFAULT_REGION) -> np.ndarray:
    """The room's intraday profile: each quarter hour's mean calls, by working and rest day.

    From the room's lines kept per quarter hour (pooled); shape ``(2, 96)``, row 1 rest days.
    All ones (an even split) when the room has no quarter-hour history.
    """
    totals = np.zeros((2, SLOTS_PER_DAY))
    for one in series:
        known = one[np.isfinite(one.to_numpy(dtype=float))]
        if known.empty:
            continue
        cal = LocalCalendar(known.index, region)
        np.add.at(totals, (cal.rest_day.astype(int), cal.slot), known.to_numpy(dtype=float))
    if totals.sum() <= 0:
        return np.ones((2, SLOTS_PER_DAY))
    # A little of the even split keeps a quarter hour the profile never saw from getting 0.
    return np.asarray(totals + 0.01 * totals.sum() / totals.size)


def spread_to_quarters(target: pd.DatetimeIndex, step: pd.Timedelta, calls: np.ndarray,
                       lower: np.ndarray, upper: np.ndarray, shares: np.ndarray,
                       region: str = DEFAULT_REGION,
                       ) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray]:
    """Spread a coarser forecast (per half hour or hour) over its quarter hours.

    Each coarse interval's calls are split in proportion to the room's intraday profile
    (:func:`quarter_shares`) of its quarter hours. Intervals keep their width in √ space,
    where count noise is about even whatever the volume, so a quarter hour's interval is
    relatively wider than its hour's, as it should be.

    Returns:
        Quarter-hour starts and their calls, lower and upper bounds.
    """
    if step <= INTERVAL or not len(target):
        return target, calls, lower, upper
    quarters = utc_range(target[0].to_pydatetime(), (target[-1] + step).to_pydatetime())
    parent = np.searchsorted(target.asi8, quarters.asi8, side="right") - 1
    cal = LocalCalendar(quarters, region)
    weight = shares[cal.rest_day.astype(int), cal.slot]
    block = np.bincount(parent, weights=weight, minlength=len(target))
    share = weight / block[parent]
    q_calls = calls[parent] * share
    root = np.sqrt(np.clip(calls, 0, None))
    down = (root - np.sqrt(np.clip(lower, 0, None)))[parent]
    up = (np.sqrt(np.clip(upper, 0, None)) - root)[parent]
    q_root = np.sqrt(q_calls)
    return (quarters, q_calls, np.clip(q_root - down, 0, None) ** 2,
            np.maximum((q_root + up) ** 2, q_calls))
