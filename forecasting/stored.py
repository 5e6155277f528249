"""Forecasts and staffing plans as the planner saved them: what the API and dashboard read.

Fitting a model takes seconds to minutes of a core; a request must never do it, and browsing
must not change the plan the worker's alerts compare against. The planner (``pacesetter
forecast --all``, the compose forecaster, the demo planner, or a scheduler's
``POST /api/v1/rooms/{room}/plans``) saves plans; these functions only read them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from services.contract.errors import PacesetterError
from services.contract.events import format_time
from services.planning.calendar import LONDON, local_day_bounds

MAX_DAYS = 62
FORECAST_FIELDS = ("interval_start", "interval_end", "calls", "calls_lower", "calls_upper",
                   "aht_seconds", "method")
PLAN_HINT = ("the planner saves plans (pacesetter forecast --all, the forecaster service); a "
             "scheduler can ask for one with POST /api/v1/rooms/{room}/plans")


class NoStoredPlan(PacesetterError):
    """No saved plan covers what was asked: the planner has not made one yet."""


class StoredInputError(PacesetterError):
    """A bad ``start`` or ``days``."""


def _window(start: datetime | None, days: int, now: datetime) -> tuple[datetime, datetime]:
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise StoredInputError(f"days: {days!r} must be a whole number from 1 to {MAX_DAYS}")
    if start is None:
        start = local_day_bounds(now.astimezone(LONDON).date())[0]
    elif start.tzinfo is None:
        raise StoredInputError("start: pass an aware datetime (UTC), e.g. 2026-11-21T00:00:00Z")
    if start.minute % 15 or start.second or start.microsecond:
        raise StoredInputError(
            f"start: {format_time(start)} is not on a quarter hour (e.g. 2026-11-21T00:00:00Z)")
    end = (start.astimezone(LONDON) + timedelta(days=days)).astimezone(start.tzinfo)
    return start, end


def stored_forecast(store: Any, room: str, line: str, start: datetime | None, days: int,
                    now: datetime) -> list[dict[str, Any]]:
    """The saved forecast per interval of ``days`` local days from ``start``, oldest first.

    Raises:
        StoredInputError: a bad ``start`` or ``days``.
        NoStoredPlan: no saved plan row in that range.
    """
    begin, end = _window(start, days, now)
    rows = store.plan_rows(room, line, begin, end)
    if not rows:
        raise NoStoredPlan(f"no saved forecast for {room}/{line} from {format_time(begin)}: "
                           + PLAN_HINT.format(room=room))
    return [{name: row.get(name) for name in FORECAST_FIELDS} for row in rows]


def stored_plan(store: Any, room: str, line: str, day: date) -> list[dict[str, Any]]:
    """The saved staffing plan of a local date, one row per quarter hour.

    Raises:
        NoStoredPlan: no saved plan row for that date.
    """
    begin, end = local_day_bounds(day)
    rows: list[dict[str, Any]] = store.plan_rows(room, line, begin, end)
    if not rows:
        raise NoStoredPlan(f"no saved staffing plan for {room}/{line} on {day.isoformat()}: "
                           + PLAN_HINT.format(room=room))
    return rows


def stored_accuracy(store: Any, room: str, line: str) -> dict[str, Any]:
    """The line's latest backtest as a scheduler reads it: the chosen method against the simple.

    Returns:
        ``{"room", "line", "chosen", "best_simple", "improvement", "noise_floor", "weeks",
        "origins", "history_end", "region", "resolution_minutes", "interval_width",
        "methods": [{"method", "description", "kind", "wape", "mase", "coverage"}],
        "prophet_tuning"}``,
        methods best first; ``kind`` is ``simple`` (what a scheduler would do by hand) or
        ``model``; ``prophet_tuning`` is ``{"params", "wape", "weeks", "history_end",
        "variants": [{"params", "wape"}]}`` or null (Prophet's defaults); ``improvement`` is
        how much lower the chosen WAPE is than the best simple method's (a fraction).

    Raises:
        NoStoredPlan: the line has no backtest yet.
    """
    from forecasting.methods import DESCRIPTIONS
    from forecasting.simple import SIMPLE_METHODS

    saved = store.latest_backtest(room, line)
    if saved is None:
        raise NoStoredPlan(
            f"room {room!r} line {line!r} has no backtest yet: the planner runs one with its "
            "first plan, or run 'pacesetter backtest' (needs 22 days of final intervals)")
    result = saved[1]
    scores = result.get("methods", {})
    rows = sorted(
        ({"method": name, "description": DESCRIPTIONS.get(name, name),
          "kind": "simple" if name in SIMPLE_METHODS else "model",
          "wape": s.get("wape"), "mase": s.get("mase"), "coverage": s.get("coverage")}
         for name, s in scores.items()),
        key=lambda r: (r["wape"] is None, r["wape"] or 0.0))
    chosen, simple = result.get("chosen"), result.get("best_simple")
    if simple is None:  # a backtest stored before the simple methods existed
        simple_rows = [r for r in rows if r["kind"] == "simple" and r["wape"] is not None]
        simple = simple_rows[0]["method"] if simple_rows else None
    chosen_wape = scores.get(chosen, {}).get("wape")
    simple_wape = scores.get(simple, {}).get("wape") if simple else None
    improvement = (round((simple_wape - chosen_wape) / simple_wape, 4)
                   if chosen_wape is not None and simple_wape else None)
    return {
        "room": room, "line": line, "chosen": chosen, "best_simple": simple,
        "improvement": improvement, "noise_floor": result.get("noise_floor"),
        "weeks": result.get("weeks"), "origins": result.get("origins", []),
        "history_end": result.get("history_end"),
        "region": result.get("region", "GB-ENG"),
        "resolution_minutes": result.get("resolution_minutes", 15),
        "interval_width": result.get("interval_width"), "methods": rows,
        # Prophet's tuned parameters and every variant's backtest WAPE (null: never tuned,
        # Prophet runs with its defaults).
        "prophet_tuning": result.get("prophet_tuning"),
    }
