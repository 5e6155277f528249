"""Live state of a room (METRICS.md, "Live state") and the alert conditions derived from it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from services.alerts.book import AlertBook
from services.alerts.rules import AwaitingIncident, LineView, RoomView, judge
from services.figures import kpis
from services.figures.engine import Room
from services.figures.kpis import US, interval_start, iso, ratio

# (room, line, at) -> the staffing plan row of the interval holding ``at``, or None.
PlanLookup = Callable[[str, str, int], dict[str, Any] | None]
# A room's clock when the engine flushed it, and its open interval records then, by line.
Computed = tuple[int, dict[str, dict[str, Any]]]


def computed_records(rooms: Mapping[str, Room], records: Iterable[tuple[str, str, Any]],
                     ) -> dict[str, Computed]:
    """Per room, the open interval records of an engine flush, for :func:`live_state`.

    Call it right after the flush, before any other event is applied: the rooms' clocks are
    read now.
    """
    out: dict[str, Computed] = {}
    for kind, _key, record in records:
        if kind != "interval" or record.get("final"):
            continue
        name = record["room"]
        found = out.get(name)
        if found is None:
            room = rooms.get(name)
            if room is None:
                continue
            found = out[name] = (room.now_us, {})
        found[1][record["line"]] = record
    return out


def live_state(
    room: Room, book: AlertBook, plan: PlanLookup | None = None, evaluate_alerts: bool = True,
    computed: Computed | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The room's live state and the alert transitions of this evaluation.

    ``computed``: the open interval records the engine's flush has just made of this room, and
    the room's clock then (:func:`computed_records`). A record is taken from there when its
    bucket has not changed since and the clock is the same: it is then the record this
    function would compute, and computing one walks every call of the interval (milliseconds
    for a busy room's interval, at every publication).
    """
    figures = room.line_figures()
    now = room.now_us
    reuse: dict[str, dict[str, Any]] = {}
    if computed is not None and computed[0] == now:
        reuse = computed[1]
    dirty = room.calls.dirty_buckets
    settings = room.config.settings
    current = interval_start(now)
    lines: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    views: list[LineView] = []
    required_total = 0.0
    have_plan = False
    current_text = iso(current)
    for line, seen in figures.items():
        in_queue, longest = room.calls.queue(line, now)
        record = reuse.get(line)
        if (record is None or record["interval_start"] != current_text
                or (line, current) in dirty):
            record = room.calls.interval_now(line, current, now)
        staffing = None
        row = plan(room.name, line, now) if plan is not None else None
        if row is not None:
            have_plan = True
            required_total += float(row.get("required_handlers") or 0)
            staffing = {
                "required_handlers": row.get("required_handlers"),
                "forecast_calls": row.get("calls"),
                "forecast_calls_upper": row.get("calls_upper"),
            }
        short = seen.hour_short_abandoned
        lines[line] = {
            "in_queue": in_queue,
            "longest_wait_seconds": None if longest is None else max(longest, 0) / US,
            "interval": record,
            "rolling_60m": {
                "offered": seen.hour_offered,
                "abandoned": seen.hour_abandoned,
                "short_abandoned": short,
                "abandonment_rate": ratio(seen.hour_abandoned - short, seen.hour_offered - short),
            },
            "rolling_24h": {
                "offered": seen.day_offered,
                "failure_demand": seen.day_failure_demand,
                "failure_demand_rate": ratio(seen.day_failure_demand, seen.day_offered),
            },
            "staffing": staffing,
        }
        totals[line] = seen.totals
        live = lines[line]
        views.append(LineView(
            line=line, profile=settings.profile(line), interval_start=current_text,
            interval=record, in_queue=in_queue,
            longest_wait_seconds=live["longest_wait_seconds"], rolling_60m=live["rolling_60m"],
            rolling_24h=live["rolling_24h"], plan=row,
        ))
    handlers = room.handlers.counts_at(now)
    awaiting: dict[str, dict[str, Any]] = {}
    waiting: list[AwaitingIncident] = []
    for incident in room.incidents.waiting_for_dispatch():
        age = now - incident.created_us
        slot = awaiting.setdefault(incident.grade, {"count": 0, "oldest_age_seconds": 0.0})
        slot["count"] += 1
        slot["oldest_age_seconds"] = max(slot["oldest_age_seconds"], age / US)
        target = kpis.attendance_target_us(incident.grade, incident.area)
        waiting.append(AwaitingIncident(incident.id, incident.grade, age / US,
                                        None if target is None else target / US))
    transitions: list[dict[str, Any]] = []
    if evaluate_alerts:
        logged_in = handlers["available"] + handlers["on_call"] + handlers["wrap_up"]
        conditions, evaluated = judge(RoomView(views, waiting, logged_in,
                                               required_total if have_plan else None))
        transitions = book.update(conditions, now, evaluated)
    state = {
        "room": room.name,
        "now": iso(now),
        "mode": "live" if room.live else "replay",
        "watermark": iso(room.watermark_us) if room.watermark_us is not None else None,
        "lines": lines,
        "handlers": handlers,
        "incidents_awaiting_dispatch": awaiting,
        "alerts": book.firing(),
        "staffing_plan": "active" if have_plan else "none yet: staffing_gap and "
        "demand_above_forecast alerts are inactive until a plan exists",
        "totals": {
            "lines": totals,
            "events": dict(room.events_total),
            "rejected": dict(room.rejected),
        },
        "waiting_for_parent": room.waiting_for_parent(),
        "lag_seconds": room.lag_us / US,
    }
    return state, transitions
