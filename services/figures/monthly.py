"""The monthly report of one room from its stored interval and attendance records.

The figures forces and inspectors publish each month: per line, the Home Office's 999 answer
bands, mean answer time, abandonment and service level; per grade, attendance from the call
and from dispatch (PEEL recommendation 1a-1d); failure demand; and how complete the month is.
Every ratio is made from the month's totals (never an average of interval ratios), and the
attendance means and nearest-rank p90 from every arrived incident's clock.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.contract.errors import PacesetterError
from services.contract.events import format_time, parse_time
from services.contract.settings import Settings
from services.figures.kpis import TARGETS

DEFINITIONS_VERSION = 1
LONDON = ZoneInfo("Europe/London")
GRADES = ("immediate", "priority", "scheduled", "resolution")
BANDS = ("under_10s", "from_10s_to_60s", "60s_and_over")
# Bins of the attendance distribution, in minutes (the last is open-ended).
ATTENDANCE_BINS_MINUTES = (0, 5, 10, 15, 20, 30, 60, 120, 240)
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


class MonthError(PacesetterError):
    """A month that is not ``YYYY-MM``."""


def month_bounds(month: str, zone: ZoneInfo = LONDON) -> tuple[datetime, datetime]:
    """Aware UTC ``[start, end)`` of a local calendar month such as ``2026-11``.

    Raises:
        MonthError: not ``YYYY-MM`` or not a real month.
    """
    found = _MONTH_RE.match(month or "")
    if not found or not 1 <= int(found.group(2)) <= 12 or not 1970 <= int(found.group(1)) < 9999:
        raise MonthError(f"month: {month!r} is not a month like 2026-11 (YYYY-MM)")
    year, number = int(found.group(1)), int(found.group(2))
    first = datetime(year, number, 1, tzinfo=zone)
    after = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return first.astimezone(UTC), after.astimezone(UTC)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def p90(ordered: list[float]) -> float | None:
    """Nearest-rank p90 of ascending values: ``w[ceil(0.9·n)]`` (METRICS.md), in integers."""
    if not ordered:
        return None
    return ordered[-(-9 * len(ordered) // 10) - 1]


def _at(text: str) -> datetime:
    return parse_time(text, "interval_start")


def line_figures(line: str, records: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """One line's month from its interval records."""
    total: dict[str, float] = defaultdict(float)
    bands = dict.fromkeys(BANDS, 0)
    thresholds = set()
    for r in records:
        for name in ("offered", "answered", "abandoned", "short_abandoned",
                     "callbacks_requested", "answered_within_threshold",
                     "abandoned_within_threshold", "repeat_contacts", "failure_demand"):
            total[name] += r.get(name) or 0
        if r.get("asa_seconds") is not None:
            total["wait"] += r["asa_seconds"] * (r.get("answered") or 0)
        for band in BANDS:
            bands[band] += (r.get("answer_bands") or {}).get(band, 0)
        if r.get("threshold_seconds") is not None:
            thresholds.add(float(r["threshold_seconds"]))
    profile = settings.profile(line)
    threshold = thresholds.pop() if len(thresholds) == 1 else (
        None if thresholds else profile.threshold_seconds)
    answered, abandoned = int(total["answered"]), int(total["abandoned"])
    short = int(total["short_abandoned"])
    within = int(total["answered_within_threshold"])
    service_level = {
        "answered": _ratio(within, answered),
        "offered": _ratio(within, answered + abandoned - short),
        "excl_early_abandons": _ratio(
            within, answered + abandoned - int(total["abandoned_within_threshold"])),
    }
    offered = int(total["offered"])
    return {
        "line": line,
        "offered": offered,
        "answered": answered,
        "answer_bands": bands,
        "answer_band_shares": {band: _ratio(bands[band], answered) for band in BANDS},
        "mean_answer_seconds": _ratio(total["wait"], answered),
        "abandoned": abandoned,
        "short_abandoned": short,
        "abandonment_rate": _ratio(abandoned - short, offered - short),
        "callbacks_requested": int(total["callbacks_requested"]),
        "threshold_seconds": threshold,
        "service_level_target": profile.service_level_target,
        "answered_within_threshold": within,
        "service_level": service_level,
        "meets_target": None if service_level["answered"] is None or threshold is None
        else service_level["answered"] >= profile.service_level_target,
        "repeat_contacts": int(total["repeat_contacts"]),
        "failure_demand": int(total["failure_demand"]),
        "failure_demand_rate": _ratio(total["failure_demand"], offered),
    }


def _histogram(values: list[float]) -> list[int]:
    counts = [0] * len(ATTENDANCE_BINS_MINUTES)
    for seconds in values:
        minutes = seconds / 60
        index = 0
        for i, low in enumerate(ATTENDANCE_BINS_MINUTES):
            if minutes >= low:
                index = i
        counts[index] += 1
    return counts


def grade_figures(grade: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One grade's month from its attendance records."""
    created = sum(r.get("created") or 0 for r in records)
    dispatched = sum(r.get("dispatched") or 0 for r in records)
    arrived = sum(r.get("arrived") or 0 for r in records)
    exact = all("attend_from_call_seconds" in r for r in records)
    has_target = TARGETS[grade][0] is not None
    within_call = sum(r.get("within_target_from_call") or 0 for r in records)
    within_dispatch = sum(r.get("within_target_from_dispatch") or 0 for r in records)
    out: dict[str, Any] = {
        "grade": grade,
        "target_seconds": {"urban": TARGETS[grade][0], "rural_or_unknown": TARGETS[grade][1]},
        "incidents": created,
        "dispatched": dispatched,
        "attended": arrived,
    }
    if exact:
        from_call = sorted(v for r in records for v in r["attend_from_call_seconds"])
        from_dispatch = sorted(v for r in records for v in r["attend_from_dispatch_seconds"])
        out |= {
            "attended_from_dispatch": len(from_dispatch),
            "within_target_from_call": within_call if has_target else None,
            "within_target_from_call_share":
                _ratio(within_call, len(from_call)) if has_target else None,
            "within_target_from_dispatch": within_dispatch if has_target else None,
            "within_target_from_dispatch_share":
                _ratio(within_dispatch, len(from_dispatch)) if has_target else None,
            "attend_from_call_mean_seconds": _ratio(sum(from_call), len(from_call)),
            "attend_from_call_p90_seconds": p90(from_call),
            "attend_from_dispatch_mean_seconds": _ratio(sum(from_dispatch), len(from_dispatch)),
            "attend_from_dispatch_p90_seconds": p90(from_dispatch),
            "distribution_minutes": list(ATTENDANCE_BINS_MINUTES),
            "from_call_distribution": _histogram(from_call),
            "from_dispatch_distribution": _histogram(from_dispatch),
        }
    else:  # records kept before they carried each incident's clocks: what can still be exact
        call_total = sum((r.get("attend_from_call_mean_seconds") or 0) * (r.get("arrived") or 0)
                         for r in records)
        out |= {
            "attended_from_dispatch": None,
            "within_target_from_call": within_call if has_target else None,
            "within_target_from_call_share": _ratio(within_call, arrived) if has_target else None,
            "within_target_from_dispatch": within_dispatch if has_target else None,
            "within_target_from_dispatch_share": None,
            "attend_from_call_mean_seconds": _ratio(call_total, arrived),
            "attend_from_call_p90_seconds": None,
            "attend_from_dispatch_mean_seconds": None,
            "attend_from_dispatch_p90_seconds": None,
            "distribution_minutes": list(ATTENDANCE_BINS_MINUTES),
            "from_call_distribution": None,
            "from_dispatch_distribution": None,
        }
    return out


def _quiet_spans(start: datetime, end: datetime, busy: set[datetime]) -> list[dict[str, str]]:
    spans: list[dict[str, str]] = []
    hour = start
    while hour < end:
        if hour not in busy:
            if spans and spans[-1]["end"] == format_time(hour):
                spans[-1]["end"] = format_time(hour + timedelta(hours=1))
            else:
                spans.append({"start": format_time(hour),
                              "end": format_time(hour + timedelta(hours=1))})
        hour += timedelta(hours=1)
    return spans


def monthly_report(room: str, month: str, intervals: Iterable[dict[str, Any]],
                   attendance: Iterable[dict[str, Any]], settings: Settings,
                   zone: ZoneInfo = LONDON) -> dict[str, Any]:
    """The month of one room.

    Args:
        room: the room.
        month: ``YYYY-MM``, a calendar month in ``zone``.
        intervals: the room's interval records of the month (others are ignored).
        attendance: the room's attendance records of the month (others are ignored).
        settings: line profiles (service-level targets).
        zone: the zone of the calendar month and of its days (default Europe/London).

    Raises:
        MonthError: a bad month.
    """
    start, end = month_bounds(month, zone)

    def inside(record: dict[str, Any]) -> bool:
        return record.get("room") == room and start <= _at(record["interval_start"]) < end

    interval_records = [r for r in intervals if inside(r)]
    attendance_records = [r for r in attendance if inside(r)]
    by_line: dict[str, list[dict[str, Any]]] = defaultdict(list)
    days: dict[tuple[str, date], dict[str, int]] = {}
    busy: set[datetime] = set()
    for r in interval_records:
        by_line[r["line"]].append(r)
        at = _at(r["interval_start"])
        day = days.setdefault((r["line"], at.astimezone(zone).date()),
                              {"offered": 0, "answered": 0, **dict.fromkeys(BANDS, 0)})
        day["offered"] += r.get("offered") or 0
        day["answered"] += r.get("answered") or 0
        for band in BANDS:
            day[band] += (r.get("answer_bands") or {}).get(band, 0)
        if r.get("offered"):
            busy.add(at.replace(minute=0))
    by_grade: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in attendance_records:
        by_grade[r["grade"]].append(r)
        if r.get("created"):
            busy.add(_at(r["interval_start"]).replace(minute=0))
    hours = int((end - start).total_seconds() // 3600)
    quiet = _quiet_spans(start, end, busy)
    return {
        "room": room,
        "month": month,
        "timezone": zone.key,
        "start": format_time(start),
        "end": format_time(end),
        "definitions_version": DEFINITIONS_VERSION,
        "lines": [line_figures(line, by_line[line], settings) for line in sorted(by_line)],
        "grades": [grade_figures(g, by_grade[g]) for g in GRADES if g in by_grade],
        "days": [{"line": line, "date": day.isoformat(), **figures}
                 for (line, day), figures in sorted(days.items())],
        "completeness": {
            "interval_records": len(interval_records),
            "interval_records_final": sum(1 for r in interval_records if r.get("final")),
            "attendance_records": len(attendance_records),
            "attendance_records_final": sum(1 for r in attendance_records if r.get("final")),
            "all_final": all(r.get("final") for r in interval_records + attendance_records),
            "hours": hours,
            "hours_with_no_events": hours - len(busy),
            "spans_with_no_events": quiet,
        },
    }


def comparison_row(report: dict[str, Any]) -> dict[str, Any]:
    """One room's line of the all-rooms view: 999 under 10 s, 101 abandonment, attendance."""
    lines = {entry["line"]: entry for entry in report["lines"]}
    row: dict[str, Any] = {
        "room": report["room"],
        "offered_999": lines["999"]["offered"] if "999" in lines else None,
        "share_999_under_10s":
            lines["999"]["answer_band_shares"]["under_10s"] if "999" in lines else None,
        "offered_101": lines["101"]["offered"] if "101" in lines else None,
        "abandonment_rate_101": lines["101"]["abandonment_rate"] if "101" in lines else None,
        "grades": {},
        "all_final": report["completeness"]["all_final"],
    }
    for grade in report["grades"]:
        row["grades"][grade["grade"]] = {
            "incidents": grade["incidents"],
            "attended": grade["attended"],
            "within_target_from_call_share": grade["within_target_from_call_share"],
            "within_target_from_dispatch_share": grade["within_target_from_dispatch_share"],
        }
    return row


CSV_FIELDS = ("section", "subject", "measure", "value")


def report_csv(report: dict[str, Any]) -> str:
    """The report as long-form CSV (section, subject, measure, value): every figure one row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for name in ("room", "month", "timezone", "start", "end", "definitions_version"):
        writer.writerow(("report", "", name, report[name]))
    for section, key, items in (("line", "line", report["lines"]),
                                ("grade", "grade", report["grades"])):
        for item in items:
            for measure, value in _flatten(item):
                if measure != key:
                    writer.writerow((section, item[key], measure, _cell(value)))
    for day in report["days"]:
        for measure in ("offered", "answered", *BANDS):
            writer.writerow(("day", f"{day['line']} {day['date']}", measure, day[measure]))
    completeness = report["completeness"]
    for measure, value in completeness.items():
        if measure != "spans_with_no_events":
            writer.writerow(("completeness", "", measure, _cell(value)))
    for span in completeness["spans_with_no_events"]:
        writer.writerow(("completeness", "", "no_events", f"{span['start']}/{span['end']}"))
    return buffer.getvalue()


def _flatten(item: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in item.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{name}.")
        elif isinstance(value, list):
            out.append((f"{prefix}{name}", " ".join(str(v) for v in value)))
        else:
            out.append((f"{prefix}{name}", value))
    return out


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
