"""Alert episodes: one alert per rule and subject at a time, firing then resolved.

The rules themselves (what fires, at which threshold, how severe) are in ``rules.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.contract.events import format_time, from_us


def iso(us: int) -> str:
    """RFC 3339 UTC text of epoch microseconds."""
    return format_time(from_us(us))


@dataclass(frozen=True)
class Condition:
    """One rule's verdict on one subject at one moment."""

    rule: str
    subject: str  # line, incident id, or "room"
    firing: bool
    value: float | None
    threshold: float | None
    message: str
    severity: str = "warning"
    line: str | None = None
    incident: str | None = None
    episode: str | None = None  # e.g. the interval: a new episode ends the previous alert


class AlertBook:
    """The alerts of one room: applies conditions, returns transitions (alert records)."""

    def __init__(self, room: str):
        self.room = room
        self.active: dict[tuple[str, str], dict[str, Any]] = {}

    def update(
        self, conditions: Iterable[Condition], now_us: int, evaluated: Iterable[str]
    ) -> list[dict[str, Any]]:
        """Apply this moment's conditions; an active alert whose subject is gone is resolved.

        Args:
            conditions: the verdicts of this evaluation.
            now_us: the room's now.
            evaluated: the rules checked this time; an active alert of a rule not checked
                (a rule without data, such as staffing without a plan) is left alone, one of
                a checked rule with no verdict for its subject (a dispatched incident) ends.
        """
        transitions = []
        seen: set[tuple[str, str]] = set()
        checked = set(evaluated)
        for cond in conditions:
            key = (cond.rule, cond.subject)
            seen.add(key)
            alert = self.active.get(key)
            if alert is not None and cond.episode != alert["_episode"]:
                transitions.append(self._resolve(key, now_us, "its interval ended"))
                alert = None
            if cond.firing and alert is None:
                alert = {
                    "id": f"{self.room}:{cond.rule}:{cond.subject}",
                    "rule": cond.rule,
                    "room": self.room,
                    "line": cond.line,
                    "incident": cond.incident,
                    "severity": cond.severity,
                    "state": "firing",
                    "started_at": iso(now_us),
                    "resolved_at": None,
                    "value": cond.value,
                    "threshold": cond.threshold,
                    "message": cond.message,
                    "_episode": cond.episode,
                }
                self.active[key] = alert
                transitions.append(_public(alert))
            elif cond.firing and alert is not None:
                alert["value"] = cond.value
                alert["message"] = cond.message
            elif not cond.firing and alert is not None:
                transitions.append(self._resolve(key, now_us, cond.message))
        for key in [k for k in self.active if k not in seen and k[0] in checked]:
            transitions.append(self._resolve(key, now_us, "the condition is over"))
        return transitions

    def _resolve(self, key: tuple[str, str], now_us: int, why: str | None) -> dict[str, Any]:
        alert = self.active.pop(key)
        alert["state"] = "resolved"
        alert["resolved_at"] = iso(now_us)
        if why:
            alert["message"] = f"resolved: {why}"
        return _public(alert)

    def firing(self) -> list[dict[str, Any]]:
        """The active alerts, oldest first."""
        return [_public(a) for a in sorted(self.active.values(), key=lambda a: a["started_at"])]


def _public(alert: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in alert.items() if not k.startswith("_")}


def duration_text(seconds: float) -> str:
    """``75`` → ``1 min 15 s``: how a supervisor reads a wait."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def percent(value: float) -> str:
    """``0.853`` → ``85.3 %``."""
    return f"{value * 100:.1f} %"
