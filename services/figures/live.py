"""Live state of a room (METRICS.md, "Live state") and the alert conditions derived from it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from services.alerts.book import AlertBook
from services.alerts.rules import AwaitingIncident, LineView, RoomView, judge
from services.figures import kpis
from services.figures.engine import BucketStats, Room, new_totals
from services.figures.kpis import ABANDONED, INTERVAL_US, US, interval_start, iso, ratio

# (room, line, at) -> the staffing plan row of the interval holding ``at``, or None.
PlanLookup = Callable[[str, str, int], dict[str, Any] | None]


def live_state(
    room: Room, book: AlertBook, plan: PlanLookup | None = None, evaluate_alerts: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The room's live state and the alert transitions of this evaluation."""
    room.flush_derive()
    now = room.now_us
    settings = room.config.settings
    current = interval_start(now)
    lines: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    views: list[LineView] = []
    # Summaries per open bucket, recomputed only where something changed: walking every open
    # call on each evaluation cost ~70 ms a room at 2,000 events/s and starved the stream.
    stats_by_line: dict[str, list[tuple[int, BucketStats]]] = {}
    for (line, start), stats in room.stats().items():
        stats_by_line.setdefault(line, []).append((start, stats))
    hour_from = now - 3600 * US
    required_total = 0.0
    have_plan = False
    current_text = iso(current)
    for line in sorted(room.lines):
        queued = [
            c for c in room.queued.get(line, ())
            if now - c.offered_us < room.config.max_queue_us
        ]
        longest = max((now - c.offered_us for c in queued), default=None)
        key = (line, current)
        record = (
            kpis.interval_record(room.name, line, current, room.buckets[key],
                                 room.config.limits(line), now, False, room.config.max_queue_us)
            if key in room.buckets else None
        )
        short_us = room.config.limits(line).short_abandon_us
        hour_offered = abandoned = short = 0
        day_offered = day_failure = 0
        line_totals = copy.deepcopy(room.final_totals.get(line) or new_totals())
        for start, stats in stats_by_line.get(line, ()):
            day_offered += stats.offered
            day_failure += stats.failure_demand
            merge_totals(line_totals, stats.totals)
            if start >= hour_from:  # the whole bucket is inside the last hour
                hour_offered += stats.offered
                abandoned += stats.abandoned
                short += stats.short_abandoned
            elif start + INTERVAL_US > hour_from:  # the bucket the hour starts in
                for c in room.buckets[(line, start)]:
                    if c.offered_us >= hour_from:
                        hour_offered += 1
                        if c.exit_type == ABANDONED:
                            abandoned += 1
                            short += c.exit_us - c.offered_us < short_us
        for start, offered, failure, _ in room.final_summaries.get(line, ()):
            if start >= now - 24 * 3600 * US:
                day_offered += offered
                day_failure += failure
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
        lines[line] = {
            "in_queue": len(queued),
            "longest_wait_seconds": None if longest is None else max(longest, 0) / US,
            "interval": record,
            "rolling_60m": {
                "offered": hour_offered,
                "abandoned": abandoned,
                "short_abandoned": short,
                "abandonment_rate": ratio(abandoned - short, hour_offered - short),
            },
            "rolling_24h": {
                "offered": day_offered,
                "failure_demand": day_failure,
                "failure_demand_rate": ratio(day_failure, day_offered),
            },
            "staffing": staffing,
        }
        totals[line] = line_totals
        live = lines[line]
        views.append(LineView(
            line=line, profile=settings.profile(line), interval_start=current_text,
            interval=record, in_queue=live["in_queue"],
            longest_wait_seconds=live["longest_wait_seconds"], rolling_60m=live["rolling_60m"],
            rolling_24h=live["rolling_24h"], plan=row,
        ))
    handlers = _handlers_now(room, now)
    awaiting: dict[str, dict[str, Any]] = {}
    waiting: list[AwaitingIncident] = []
    for incident in room.awaiting.values():
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
        "waiting_for_parent": sum(len(v) for v in room.pending.values()),
        "lag_seconds": room.lag_us / US,
    }
    return state, transitions


def merge_totals(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Add one set of cumulative line totals to another."""
    for name, value in more.items():
        if name == "answer_wait_buckets":
            buckets = into[name]
            for bound, count in value.items():
                buckets[bound] += count
        else:
            into[name] += value


def _handlers_now(room: Room, now: int) -> dict[str, int]:
    counts = dict.fromkeys(kpis.HANDLER_STATES, 0)
    for timeline in room.handlers.values():
        state = None
        for at_us, _seq, value in reversed(timeline):
            if at_us <= now:
                state = value
                break
        if state is not None:
            counts[state] += 1
    return counts

