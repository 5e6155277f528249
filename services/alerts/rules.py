"""The alert rules of METRICS.md, one object per rule: condition, threshold, severity, message.

Each rule reads a :class:`RoomView` (the figures the live state has just computed) and returns
its verdicts as :class:`~services.alerts.book.Condition` s, or ``None`` when it cannot judge
this time (``staffing_gap`` without a plan): the alert book then leaves that rule's alerts
alone. Thresholds come from the line's profile (``PACESETTER_LINE_PROFILES``), so a force that
changes a threshold changes it in one place, and so does the severity a line's alerts carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from services.alerts.book import Condition, duration_text, percent
from services.contract.settings import LineProfile

# The fewest calls a rate is judged on (METRICS.md, "Alerts"): below them a rate is noise.
SERVICE_LEVEL_MIN_ANSWERED = 10
ABANDONMENT_MIN_OFFERED = 20
FAILURE_DEMAND_MIN_OFFERED = 50


@dataclass(frozen=True)
class LineView:
    """What the line rules read: one line's live figures (METRICS.md, "Live state")."""

    line: str
    profile: LineProfile
    interval_start: str  # the current interval: an alert of an interval ends with it
    interval: dict[str, Any] | None  # the current interval record, if any call was offered
    in_queue: int
    longest_wait_seconds: float | None
    rolling_60m: dict[str, Any]
    rolling_24h: dict[str, Any]
    plan: dict[str, Any] | None  # the staffing plan row of this interval, if there is a plan


@dataclass(frozen=True)
class AwaitingIncident:
    """An incident created and not yet dispatched."""

    id: str
    grade: str
    age_seconds: float
    target_seconds: float | None  # the grade's attendance target; None: no target


@dataclass(frozen=True)
class RoomView:
    """Everything the rules judge at one moment in one room."""

    lines: Sequence[LineView]
    awaiting: Sequence[AwaitingIncident]
    handlers_logged_in: int
    required_handlers: float | None  # from the staffing plans; None without any plan


class Rule:
    """One alert rule: ``check`` returns its verdicts, or ``None`` when it cannot judge now."""

    name: ClassVar[str]

    def check(self, room: RoomView) -> list[Condition] | None:
        """The verdicts of this rule on every subject it watches."""
        raise NotImplementedError


class LineRule(Rule):
    """A rule judged on each line separately."""

    def check(self, room: RoomView) -> list[Condition] | None:
        """The verdicts of this rule on every line that it can judge."""
        found = [c for view in room.lines if (c := self.check_line(view)) is not None]
        return found if room.lines else None

    def check_line(self, view: LineView) -> Condition | None:
        """The verdict on one line; ``None`` when the rule does not apply to it."""
        raise NotImplementedError


class ServiceLevelBelowTarget(LineRule):
    """The current interval's service level (answered) under the line's target."""

    name = "service_level_below_target"

    def check_line(self, view: LineView) -> Condition:
        """Judged on at least ten answered calls; ends with its interval."""
        target = view.profile.service_level_target
        record = view.interval
        if record is None or record["answered"] < SERVICE_LEVEL_MIN_ANSWERED:
            return Condition(self.name, view.line, False, None, target,
                             "too few answered calls to judge", line=view.line,
                             episode=view.interval_start)
        level = record["service_level"]["answered"]
        return Condition(
            self.name, view.line, level < target, level, target,
            f"{view.line}: {percent(level)} of calls answered within "
            f"{view.profile.threshold_seconds:g} s this interval (target {percent(target)})",
            severity=view.profile.alert_severity, line=view.line, episode=view.interval_start,
        )


class AbandonmentAboveStandard(LineRule):
    """The last hour's abandonment rate over the line's standard (lines that have one)."""

    name = "abandonment_above_standard"

    def check_line(self, view: LineView) -> Condition | None:
        """Judged on at least twenty offered calls in the hour."""
        standard = view.profile.abandonment_standard
        if standard is None:
            return None
        hour = view.rolling_60m
        rate = hour["abandonment_rate"]
        firing = rate is not None and hour["offered"] >= ABANDONMENT_MIN_OFFERED and rate > standard
        return Condition(
            self.name, view.line, firing, rate, standard,
            f"{view.line}: {percent(rate or 0)} of callers hung up in the last hour "
            f"(standard at most {percent(standard)})",
            line=view.line,
        )


class LongWait(LineRule):
    """A caller waiting longer than the line's longest-wait limit."""

    name = "long_wait"

    def check_line(self, view: LineView) -> Condition:
        """Clears when the queue head is answered or gone."""
        longest = view.longest_wait_seconds
        limit = view.profile.longest_wait_alert_seconds
        return Condition(
            self.name, view.line, longest is not None and longest > limit, longest, limit,
            f"{view.line}: a caller has waited {duration_text(longest or 0)} "
            f"(limit {duration_text(limit)})",
            severity=view.profile.alert_severity, line=view.line,
        )


class FailureDemandHigh(LineRule):
    """The last 24 hours' failure-demand rate over the line's limit."""

    name = "failure_demand_high"

    def check_line(self, view: LineView) -> Condition:
        """Judged on at least fifty offered calls in the 24 hours."""
        day = view.rolling_24h
        rate = day["failure_demand_rate"]
        limit = view.profile.failure_demand_limit
        return Condition(
            self.name, view.line,
            rate is not None and day["offered"] >= FAILURE_DEMAND_MIN_OFFERED and rate > limit,
            rate, limit,
            f"{view.line}: {percent(rate or 0)} of calls in the last 24 h were failure demand "
            f"(callers ringing again)",
            line=view.line,
        )


class DemandAboveForecast(LineRule):
    """More calls this interval than the forecast's upper bound (lines with a plan)."""

    name = "demand_above_forecast"

    def check(self, room: RoomView) -> list[Condition] | None:
        """Not judged at all while no line has a plan."""
        if not any(view.plan is not None for view in room.lines):
            return None
        return [c for view in room.lines if (c := self.check_line(view)) is not None]

    def check_line(self, view: LineView) -> Condition | None:
        """Ends with its interval."""
        if view.plan is None or view.plan.get("calls_upper") is None:
            return None
        offered = view.interval["offered"] if view.interval is not None else 0
        upper = float(view.plan["calls_upper"])
        return Condition(
            self.name, view.line, offered > upper, float(offered), upper,
            f"{view.line}: {offered} calls this interval, above the forecast's upper bound "
            f"{upper:.0f}",
            line=view.line, episode=view.interval_start,
        )


class StaffingGap(Rule):
    """Fewer call handlers logged in than the staffing plans need now."""

    name = "staffing_gap"

    def check(self, room: RoomView) -> list[Condition] | None:
        """Not judged without a plan."""
        if room.required_handlers is None:
            return None
        logged_in, required = room.handlers_logged_in, room.required_handlers
        return [Condition(
            self.name, "room", logged_in < required, float(logged_in), required,
            f"{logged_in} call handlers logged in, the plan needs {required:g} now",
        )]


class IncidentAwaitingBeyondTarget(Rule):
    """An incident not dispatched after its grade's attendance target: reassess its risk."""

    name = "incident_awaiting_beyond_target"
    critical_grades: ClassVar[frozenset[str]] = frozenset({"immediate"})

    def check(self, room: RoomView) -> list[Condition]:
        """Always judged: a dispatched incident's alert ends."""
        return [
            Condition(
                self.name, incident.id, True, incident.age_seconds, incident.target_seconds,
                f"{incident.grade} incident {incident.id} has waited "
                f"{duration_text(incident.age_seconds)} for dispatch "
                f"(target {duration_text(incident.target_seconds)}): reassess its risk",
                severity="critical" if incident.grade in self.critical_grades else "warning",
                incident=incident.id,
            )
            for incident in room.awaiting
            if incident.target_seconds is not None
            and incident.age_seconds > incident.target_seconds
        ]


RULES: tuple[Rule, ...] = (
    ServiceLevelBelowTarget(),
    AbandonmentAboveStandard(),
    LongWait(),
    FailureDemandHigh(),
    StaffingGap(),
    DemandAboveForecast(),
    IncidentAwaitingBeyondTarget(),
)
RULE_NAMES = tuple(rule.name for rule in RULES)


def judge(room: RoomView, rules: Iterable[Rule] = RULES) -> tuple[list[Condition], set[str]]:
    """Every rule's verdicts, and the names of the rules that could judge this time."""
    conditions: list[Condition] = []
    evaluated: set[str] = set()
    for rule in rules:
        verdicts = rule.check(room)
        if verdicts is not None:
            evaluated.add(rule.name)
            conditions += verdicts
    # line by line, then incidents, then the room: the order transitions are published in
    order = {view.line: i for i, view in enumerate(room.lines)}
    conditions.sort(key=lambda c: ((0, order[c.subject]) if c.line is not None
                                   else (1 if c.incident is not None else 2, 0)))
    return conditions, evaluated
