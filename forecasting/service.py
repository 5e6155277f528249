"""Forecasts, backtests, staffing plans and what-if answers: what the CLI and the API call."""

from __future__ import annotations

import csv
import io
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from forecasting.backtest import DEFAULT_WEEKS, HORIZON_DAYS, required_days, run_backtest
from forecasting.baselines import aht_profile
from forecasting.history import (
    MIN_HISTORY_DAYS,
    History,
    NotEnoughHistory,
    history_from_rows,
    load_history,
)
from forecasting.methods import (
    COMBINATION,
    METHODS,
    PROFILE,
    PROPHET,
    CallForecast,
    forecast_calls,
)
from forecasting.plan import (
    StaffingRules,
    apply_reforecast,
    quarter_shares,
    reforecast_factor,
    spread_to_quarters,
    staffing_rows,
)
from services.contract.errors import PacesetterError
from services.contract.events import format_time, parse_time
from services.contract.settings import Settings
from services.history.store import PLAN_FIELDS, HistoryStore
from services.planning.calendar import (
    DEFAULT_REGION,
    INTERVAL,
    LONDON,
    local_day_bounds,
    utc_range,
)
from services.planning.erlang import erlang_a, erlang_c

logger = logging.getLogger(__name__)

MAX_DAYS = 62
FORECAST_FIELDS = ("interval_start", "interval_end", "calls", "calls_lower", "calls_upper",
                   "aht_seconds", "method")
CSV_FIELDS = ("local_start",) + PLAN_FIELDS + ("rostered_handlers_upper", "patience_seconds")


class ForecastInputError(PacesetterError):
    """A forecast or plan request that cannot be answered as asked (bad days, naive time …)."""


# -- what-if ------------------------------------------------------------------------------------
def what_if(calls: float, interval_seconds: float, aht_seconds: float, handlers: int,
            threshold_seconds: float, patience_seconds: float | None = None) -> dict[str, Any]:
    """Queue figures for a given volume, AHT and handler count (API.md, what-if).

    Erlang C without ``patience_seconds``, Erlang A with it; figures rounded to 6 decimals.

    Raises:
        QueueInputError: a parameter is out of range (a :class:`PacesetterError`).
    """
    if patience_seconds is None:
        figures = erlang_c(calls, interval_seconds, aht_seconds, handlers, threshold_seconds)
    else:
        figures = erlang_a(calls, interval_seconds, aht_seconds, handlers, threshold_seconds,
                           patience_seconds)
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in figures.items()}


# -- one series, end to end (picklable, so it runs in worker processes too) ------------------------
@dataclass
class SeriesJob:
    """Everything one series' forecast and plan need, read from the store beforehand."""

    room: str
    line: str
    rows: list[tuple[Any, ...]]
    start: datetime
    end: datetime
    now: datetime
    rules: StaffingRules | None = None
    cached_backtest: tuple[datetime, dict[str, Any]] | None = None
    actual_today: dict[str, float] = field(default_factory=dict)
    weeks: int = DEFAULT_WEEKS
    method: str | None = None
    region: str = DEFAULT_REGION
    quarter_shares: list[list[float]] | None = None


@dataclass
class SeriesOutcome:
    """The results of one series: forecast rows, plan rows, the backtest used and any error."""

    room: str
    line: str
    forecast_rows: list[dict[str, Any]] = field(default_factory=list)
    plan_rows: list[dict[str, Any]] = field(default_factory=list)
    backtest: dict[str, Any] | None = None
    backtest_is_new: bool = False
    method: str = PROPHET
    reforecast: float | None = None
    error: str | None = None
    exception: PacesetterError | None = None


def choose_method(history: History, cached: tuple[datetime, dict[str, Any]] | None,
                  weeks: int = DEFAULT_WEEKS, region: str = DEFAULT_REGION,
                  ) -> tuple[str, dict[str, Any] | None, bool]:
    """The method with the best backtest WAPE on this series.

    A stored backtest is reused while it is less than a week older than the history and was
    run over the same number of weeks, region and methods; otherwise the backtest runs again
    (over fewer weeks when the history is short). Without enough history for any backtest, Prophet.

    Returns:
        ``(method, backtest or None, whether the backtest was run now)``.
    """
    possible = min(weeks, int((history.known_days - MIN_HISTORY_DAYS - 1) // HORIZON_DAYS))
    if cached is not None:
        cached_end, result = cached
        age = history.end - cached_end
        if (result.get("weeks") == possible and timedelta(0) <= age < timedelta(days=7)
                and result.get("region", DEFAULT_REGION) == region
                and set(METHODS) <= set(result.get("methods", {}))):
            return result["chosen"], result, False
    tuning = stored_tuning(cached)
    if possible < 1:
        logger.info("%s/%s: %.1f days of history, too few to backtest (needs %d); using %s",
                    history.room, history.line, history.known_days, required_days(1), PROPHET)
        return PROPHET, None, False
    result = run_backtest(history, possible, region_code=region, prophet_tuning=tuning)
    return result["chosen"], result, True


def stored_tuning(saved: tuple[datetime, dict[str, Any]] | None) -> dict[str, Any] | None:
    """The Prophet tuning kept in a stored backtest (``pacesetter backtest --tune``), if any.

    Tuning is occasional and costly; every later backtest carries the result forward, so the
    weekly re-selection and the daily plan use it at no extra cost.
    """
    tuning = saved[1].get("prophet_tuning") if saved is not None else None
    return tuning if isinstance(tuning, dict) and isinstance(tuning.get("params"), dict) else None


def run_series(job: SeriesJob) -> SeriesOutcome:
    """Forecast one series over ``[job.start, job.end)`` and, with rules, plan its staffing.

    Only history before ``job.start`` is used, so a forecast of a past or current day is the
    one that could have been made at its start. Errors that concern this series are returned
    in ``error`` (so that one bad series does not stop a batch).
    """
    outcome = SeriesOutcome(job.room, job.line)
    try:
        _run_series(job, outcome)
    except PacesetterError as exc:
        outcome.error = str(exc)
        outcome.exception = exc
    return outcome


@dataclass
class _Fit:
    """A series' fitted forecast before today's reforecast (cached: fits are deterministic)."""

    method: str
    backtest: dict[str, Any] | None
    backtest_is_new: bool
    target: pd.DatetimeIndex
    forecast: CallForecast
    aht: np.ndarray
    patience_seconds: float | None


# Forecasts are a pure function of the history, window and method, so a repeated request (the
# API's JSON then CSV of one plan) reuses the fit instead of paying for Prophet again.
CACHE_SIZE = 32
_CACHE: dict[tuple[Any, ...], _Fit] = {}
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget cached fits (benchmarks; tests that rewrite history in place)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _fit(job: SeriesJob) -> _Fit:
    history = history_from_rows(job.room, job.line, job.rows)
    start = pd.Timestamp(job.start)
    if history.index[-1] >= start:
        history = history.before(start)
        if not len(history.index):
            raise NotEnoughHistory(
                f"room {job.room!r} line {job.line!r} has no history before "
                f"{format_time(job.start)}; a forecast uses only what came before its start")
    history.require_days(MIN_HISTORY_DAYS, "forecasting")
    if job.method is None:
        method, backtest, is_new = choose_method(history, job.cached_backtest, job.weeks,
                                                 job.region)
    else:
        method, backtest, is_new = job.method, None, False
    target = utc_range(job.start, job.end)
    # The forecast is made at the history's resolution; a coarser one is spread over its
    # quarter hours by the room's intraday profile, so plans are always per quarter hour.
    step = history.step
    coarse = utc_range(pd.Timestamp(job.start).floor(step).to_pydatetime(),
                       pd.Timestamp(job.end).ceil(step).to_pydatetime(), step)
    params = ((backtest or {}).get("methods", {}).get(method) or {}).get("params")
    if method == COMBINATION and params is None:
        method = PROFILE  # asked for by name, without a backtest's weights
    tuning = stored_tuning((job.start, backtest)) if backtest else stored_tuning(
        job.cached_backtest)
    fc = forecast_calls(method, history.series(), coarse, params=params, region=job.region,
                        tuning=tuning["params"] if tuning else None)
    if step > INTERVAL:
        shares = np.asarray(job.quarter_shares) if job.quarter_shares is not None else (
            np.ones((2, 96)))
        quarters, calls, lower, upper = spread_to_quarters(coarse, step, fc.calls, fc.lower,
                                                           fc.upper, shares, job.region)
        keep = (quarters >= target[0]) & (quarters <= target[-1])
        fc = CallForecast(fc.method, calls[keep], lower[keep], upper[keep], fc.params)
    aht = aht_profile(history.index, history.aht_seconds, history.answered, target)
    return _Fit(method, backtest, is_new, target, fc, aht, history.patience_seconds())


def _run_series(job: SeriesJob, outcome: SeriesOutcome) -> None:
    if not job.rows:
        raise NotEnoughHistory(
            f"room {job.room!r} line {job.line!r} has no final intervals in the store; "
            f"forecasting needs at least {MIN_HISTORY_DAYS} days: import them with "
            "'pacesetter import intervals FILE.csv'")
    key = (job.room, job.line, job.start, job.end, job.method, job.weeks, hash(tuple(job.rows)))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is None:
        cached = _fit(job)
        with _CACHE_LOCK:
            _CACHE[key] = cached
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
        outcome.backtest_is_new = cached.backtest_is_new
    method, target, patience = cached.method, cached.target, cached.patience_seconds
    outcome.method, outcome.backtest = method, cached.backtest
    fc, aht = cached.forecast, cached.aht
    calls, lower, upper = fc.calls, fc.lower, fc.upper
    labels = np.full(len(target), method, dtype=object)
    now = pd.Timestamp(job.now)
    actual = {pd.Timestamp(k): v for k, v in job.actual_today.items()}
    refc = reforecast_factor(target, calls, actual, now) if actual else None
    if refc is not None:
        scaled = apply_reforecast(target, [calls, lower, upper, np.ones(len(target))],
                                  refc.factor, now)
        calls, lower, upper = scaled[:3]
        labels[scaled[3] != 1.0] = f"{method}+reforecast×{refc.factor:.2f}"
        outcome.reforecast = refc.factor
    outcome.forecast_rows = [
        {
            "interval_start": format_time(t.to_pydatetime()),
            "interval_end": format_time((t + pd.Timedelta(minutes=15)).to_pydatetime()),
            "calls": round(float(calls[i]), 3), "calls_lower": round(float(lower[i]), 3),
            "calls_upper": round(float(upper[i]), 3),
            "aht_seconds": None if not np.isfinite(aht[i]) else round(float(aht[i]), 1),
            "method": labels[i],
        }
        for i, t in enumerate(target)
    ]
    if job.rules is not None:
        rules = StaffingRules(job.rules.threshold_seconds, job.rules.service_level_target,
                              job.rules.max_occupancy, job.rules.shrinkage, patience)
        outcome.plan_rows = staffing_rows(
            job.room, job.line, target, calls, lower, upper, aht, rules, labels.tolist(),
            format_time(job.now.replace(microsecond=0)))


# -- reading jobs from the store ------------------------------------------------------------------
def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ForecastInputError("now: pass an aware datetime (UTC)")
    return now.astimezone(UTC)


def _window(start: datetime | None, days: int, now: datetime) -> tuple[datetime, datetime]:
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise ForecastInputError(f"days: {days!r} must be a whole number from 1 to {MAX_DAYS}")
    if start is None:
        start = local_day_bounds(now.astimezone(LONDON).date())[0]
    elif start.tzinfo is None:
        raise ForecastInputError("start: pass an aware datetime (UTC), e.g. 2026-11-21T00:00:00Z")
    start = start.astimezone(UTC)
    if start.minute % 15 or start.second or start.microsecond:
        raise ForecastInputError(
            f"start: {format_time(start)} is not on a quarter hour (e.g. 2026-11-21T00:00:00Z)")
    # Days are local days: a clock change makes one 23 or 25 hours long.
    end = (start.astimezone(LONDON) + timedelta(days=days)).astimezone(UTC)
    return start, end


def _rules(settings: Settings, line: str) -> StaffingRules:
    profile = settings.profile(line)
    return StaffingRules(profile.threshold_seconds, profile.service_level_target,
                         settings.max_occupancy, settings.shrinkage)


def _job(store: HistoryStore, settings: Settings | None, room: str, line: str,
         start: datetime, end: datetime, now: datetime, weeks: int = DEFAULT_WEEKS,
         method: str | None = None) -> SeriesJob:
    history_start = start - timedelta(weeks=26)
    rows = store.interval_series(room, line, start=history_start, end=start, final_only=True)
    actual: dict[str, float] = {}
    day_start, _ = local_day_bounds(now.astimezone(LONDON).date())
    if start <= now < end or day_start < end <= now:
        # The reforecast reads today's newest figures, final or not yet final.
        for record in store.intervals(room, line, start=max(day_start, start), end=now):
            if isinstance(record.get("offered"), int | float):
                actual[record["interval_start"]] = float(record["offered"])
    region = settings.region(room) if settings is not None else DEFAULT_REGION
    shares = _room_profile(store, room, line, start, region) if _coarse(rows) else None
    return SeriesJob(room, line, rows, start, end, now,
                     rules=_rules(settings, line) if settings is not None else None,
                     cached_backtest=store.latest_backtest(room, line), actual_today=actual,
                     weeks=weeks, method=method, region=region, quarter_shares=shares)


def _coarse(rows: list[tuple[Any, ...]]) -> bool:
    """Whether a line's records are all on the hour or half hour (history kept coarser)."""
    return bool(rows) and all(str(r[0])[14:16] in ("00", "30") for r in rows[-2000:])


def _room_profile(store: HistoryStore, room: str, line: str, before: datetime,
                  region: str) -> list[list[float]]:
    """The room's intraday profile from its other lines' last eight weeks of quarter hours."""
    series = []
    for other_room, other in store.rooms_lines():
        if other_room != room or other == line:
            continue
        rows = store.interval_series(room, other, start=before - timedelta(weeks=8),
                                     end=before, final_only=True)
        if rows:
            history = history_from_rows(room, other, rows)
            if history.step == INTERVAL:
                series.append(history.series())
    return quarter_shares(series, region).tolist()


def _finish(store: HistoryStore, outcome: SeriesOutcome, save_plan: bool) -> None:
    if outcome.backtest_is_new and outcome.backtest is not None:
        store.save_backtest(outcome.room, outcome.line, outcome.backtest["history_end"],
                            outcome.backtest)
    if save_plan and outcome.plan_rows:
        store.save_plan(outcome.plan_rows)


def _raise(outcome: SeriesOutcome) -> None:
    if outcome.exception is not None:
        raise outcome.exception


# -- the public calls -----------------------------------------------------------------------------
def forecast(store: HistoryStore, settings: Settings, room: str, line: str,
             start: datetime | None = None, days: int = 14, *,
             now: datetime | None = None) -> list[dict[str, Any]]:
    """Forecast calls and AHT per quarter hour with the line's best method.

    Args:
        store: the history store.
        settings: Pacesetter settings.
        room: the room.
        line: the line.
        start: aware start on a quarter hour; None for local midnight today.
        days: local days to forecast (1–62).
        now: the clock (tests); today's remaining intervals are reforecast from it.

    Returns:
        Rows ``interval_start, interval_end, calls, calls_lower, calls_upper, aht_seconds,
        method`` oldest first (RFC 3339 UTC times; ``method`` names the forecasting method,
        with ``+reforecast×F`` on today's rows when scaled by actual ÷ forecast).

    Raises:
        NotEnoughHistory: fewer than 14 days of final history before ``start``.
        ForecastInputError: a bad ``start`` or ``days``.
    """
    return forecast_outcome(store, settings, room, line, start, days, now=now).forecast_rows


def forecast_outcome(store: HistoryStore, settings: Settings, room: str, line: str,
                     start: datetime | None = None, days: int = 14, *,
                     now: datetime | None = None, with_plan: bool = False,
                     method: str | None = None) -> SeriesOutcome:
    """Like :func:`forecast`, returning the whole outcome (method, backtest, plan rows).

    Raises:
        NotEnoughHistory: too little history.
        ForecastInputError: a bad ``start`` or ``days``.
    """
    clock = _now(now)
    begin, end = _window(start, days, clock)
    job = _job(store, settings, room, line, begin, end, clock, method=method)
    if not with_plan:
        job.rules = None
    outcome = run_series(job)
    _raise(outcome)
    _finish(store, outcome, save_plan=False)
    return outcome


def staffing_plan(store: HistoryStore, settings: Settings, room: str, line: str, day: date,
                  *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The staffing plan of a local date, saved in the store for the stream's alerts.

    One row per quarter hour: 96, or 92 / 100 on clock-change days.

    Args:
        store: the history store.
        settings: Pacesetter settings (line profiles, maximum occupancy, shrinkage).
        room: the room.
        line: the line.
        day: the Europe/London date.
        now: the clock (tests); for today, the remaining intervals are reforecast.

    Returns:
        Plan rows: room, line, interval_start, interval_end, calls, calls_lower, calls_upper,
        aht_seconds, required_handlers, required_handlers_upper, rostered_handlers,
        rostered_handlers_rounded, service_level, asa_seconds, occupancy, abandonment,
        method, generated_at (and local_start, rostered_handlers_upper, threshold_seconds,
        service_level_target, patience_seconds).

    Raises:
        NotEnoughHistory: fewer than 14 days of final history before the day.
        NoHandlingTimes: the history has no handling times.
    """
    clock = _now(now)
    begin, end = local_day_bounds(day)
    job = _job(store, settings, room, line, begin, end, clock)
    outcome = run_series(job)
    _raise(outcome)
    _finish(store, outcome, save_plan=True)
    return outcome.plan_rows


def backtest(store: HistoryStore, room: str, line: str, weeks: int = DEFAULT_WEEKS,
             *, save: bool = True, region: str = DEFAULT_REGION,
             tune: bool = False) -> dict[str, Any]:
    """Backtest the methods on the line's history (rolling weekly origins) and keep the result.

    With ``tune``, Prophet's parameters are first tuned on the same origins (four more Prophet
    backtests); otherwise the line's stored tuning, if any, is used and carried forward.

    Returns:
        The backtest (see :func:`forecasting.backtest.run_backtest`).

    Raises:
        NotEnoughHistory: too little history for ``weeks`` origins.
    """
    history = load_history(store, room, line, purpose=f"a {weeks}-week backtest",
                           needed_days=required_days(weeks))
    result = run_backtest(history, weeks, region_code=region, tune=tune,
                          prophet_tuning=stored_tuning(store.latest_backtest(room, line)))
    if save:
        store.save_backtest(room, line, result["history_end"], result)
    return result


def staffing_csv(rows: Iterable[dict[str, Any]]) -> str:
    """Plan rows as CSV text (header first; empty cells for nulls)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buffer.getvalue()


# -- many series at once --------------------------------------------------------------------------
def plan_many(store: HistoryStore, settings: Settings,
              series: Iterable[tuple[str, str]] | None = None, start: datetime | None = None,
              days: int = 14, *, now: datetime | None = None, jobs: int | None = None,
              progress: bool | None = None, save: bool = True,
              on_done: Callable[[SeriesOutcome], None] | None = None) -> list[SeriesOutcome]:
    """Forecast and plan many series in worker processes (Prophet fits use a core each).

    Args:
        store: the history store.
        settings: Pacesetter settings.
        series: ``(room, line)`` pairs; None for every pair in the store.
        start: aware start; None for local midnight today.
        days: local days ahead.
        now: the clock (tests).
        jobs: worker processes; None for the CPU count (1 runs in this process).
        progress: a progress bar on standard error; None for "when it is a terminal".
        save: save plans and new backtests in the store.
        on_done: called with each outcome as it completes.

    Returns:
        One outcome per series, in the order given; failed series carry ``error``.
    """
    clock = _now(now)
    begin, end = _window(start, days, clock)
    pairs = list(series) if series is not None else store.rooms_lines()
    work = [_job(store, settings, room, line, begin, end, clock) for room, line in pairs]
    jobs = jobs or os.cpu_count() or 1
    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress(len(work), show)
    outcomes: dict[int, SeriesOutcome] = {}

    def done(i: int, outcome: SeriesOutcome) -> None:
        outcomes[i] = outcome
        if save:
            _finish(store, outcome, save_plan=True)
        if outcome.error:
            logger.warning("%s/%s: %s", outcome.room, outcome.line, outcome.error)
        if on_done is not None:
            on_done(outcome)
        bar.update(1)

    try:
        if jobs <= 1 or len(work) <= 1:
            for i, job in enumerate(work):
                done(i, run_series(job))
        else:
            _warm_imports()
            with ProcessPoolExecutor(max_workers=min(jobs, len(work)),
                                     mp_context=_context()) as pool:
                futures = {pool.submit(run_series, job): i for i, job in enumerate(work)}
                from concurrent.futures import as_completed

                for future in as_completed(futures):
                    done(futures[future], future.result())
    finally:
        bar.close()
    return [outcomes[i] for i in range(len(work))]


def _context() -> Any:
    # Fork shares the parent's imported Prophet and pandas (seconds per worker otherwise).
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _warm_imports() -> None:
    from forecasting.prophet_model import _quiet_imports

    _quiet_imports()


class _NoBar:
    def update(self, n: int) -> None:
        del n

    def close(self) -> None:
        pass


def _progress(total: int, show: bool) -> Any:
    if not show or total < 2:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="series", desc="forecasting", file=sys.stderr)


def parse_start(text: str | None) -> datetime | None:
    """An RFC 3339 start (API/CLI text), or a local date ``YYYY-MM-DD`` meaning its midnight.

    Raises:
        ForecastInputError: neither form.
    """
    if text is None or text == "":
        return None
    try:
        return local_day_bounds(date.fromisoformat(text))[0]
    except ValueError:
        pass
    try:
        return parse_time(text, "start")
    except PacesetterError as exc:
        raise ForecastInputError(f"{exc}; or give a local date like 2026-11-21") from None
