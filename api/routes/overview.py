"""Every room at a glance: the figures of the /rooms page, one row per room."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from api.deps import AUTH_RESPONSES, ReadModelDep, SettingsDep, Viewer
from api.readmodel import ReadModel
from services.contract.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["rooms"], dependencies=[Viewer],
                   responses=AUTH_RESPONSES)
LOCAL = ZoneInfo("Europe/London")
AWAITING_RULE = "incident_awaiting_beyond_target"


def local_midnight(at: datetime) -> datetime:
    """UTC instant of the start of the UK day containing ``at`` (the supervisor's "today")."""
    local = at.astimezone(LOCAL)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def _sum(records: list[dict[str, Any]], name: str) -> int:
    return sum(int(r.get(name) or 0) for r in records)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _instant(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _now(live: dict[str, Any] | None) -> datetime:
    return (_instant(live.get("now")) if live else None) or datetime.now(UTC)


def room_row(model: ReadModel, settings: Settings, room: str, live: dict[str, Any] | None,
             day: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Any]:
    """One room's figures: 999 service level now and today, 101 abandonment, queues, alerts."""
    lines = (live or {}).get("lines") or {}
    today: dict[str, dict[str, float | None]] = {}
    for line in ("999", "101"):
        records = day.get((room, line), [])
        answered = _sum(records, "answered")
        short = _sum(records, "short_abandoned")
        today[line] = {
            "service_level": _ratio(_sum(records, "answered_within_threshold"), answered),
            "abandonment_rate": _ratio(_sum(records, "abandoned") - short,
                                       _sum(records, "offered") - short),
        }
    waiting = [f for f in lines.values() if isinstance(f, dict)]
    queued = [f for f in waiting if (f.get("in_queue") or 0) > 0]
    alerts = model.alerts(room, "firing")
    line_999 = lines.get("999") or {}
    line_101 = lines.get("101") or {}
    return {
        "room": room,
        "now": (live or {}).get("now"),
        "mode": (live or {}).get("mode"),
        "lines": sorted(lines),
        "service_level_999_now": ((line_999.get("interval") or {}).get("service_level")
                                  or {}).get("answered"),
        "service_level_999_today": today["999"]["service_level"],
        "service_level_999_target": settings.profile("999").service_level_target,
        "abandonment_101_60m": (line_101.get("rolling_60m") or {}).get("abandonment_rate"),
        "abandonment_101_today": today["101"]["abandonment_rate"],
        "abandonment_101_standard": settings.profile("101").abandonment_standard,
        "calls_waiting": sum(int(f.get("in_queue") or 0) for f in waiting),
        "longest_wait_seconds": max((float(f.get("longest_wait_seconds") or 0.0)
                                     for f in queued), default=0.0),
        "incidents_beyond_target": sum(1 for a in alerts if a.get("rule") == AWAITING_RULE),
        "alerts": [{k: a.get(k) for k in ("id", "rule", "severity", "started_at",
                                          "acknowledged_at")} for a in alerts],
    }


@router.get("/overview", summary="Every room at a glance (the /rooms page)")
def overview(model: ReadModelDep, settings: SettingsDep) -> list[dict[str, Any]]:
    """Per room, by name: the figures a force's wall screen compares.

    999 service level now (this interval) and today (since UK midnight), 101
    abandonment over 60 minutes and today, calls waiting, the longest wait, incidents awaiting
    dispatch beyond target, and the firing alerts with their acknowledgement; by room name.
    """
    live = {s["room"]: s for s in model.live_states()}
    rooms = [r["room"] for r in model.rooms()]
    day = model.intervals_since({r: local_midnight(_now(live.get(r))) for r in rooms},
                                ("999", "101"))
    return [room_row(model, settings, r, live.get(r), day) for r in rooms]
