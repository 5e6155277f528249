"""Each alert rule object on its own: condition, threshold from the line profile, severity."""

from __future__ import annotations

from typing import Any

import pytest

from services.alerts.rules import (
    RULE_NAMES,
    RULES,
    AbandonmentAboveStandard,
    AwaitingIncident,
    DemandAboveForecast,
    FailureDemandHigh,
    IncidentAwaitingBeyondTarget,
    LineView,
    LongWait,
    RoomView,
    ServiceLevelBelowTarget,
    StaffingGap,
    judge,
)
from services.contract.settings import LineProfile, Settings


def line(name: str = "101", profile: LineProfile | None = None, **figures: Any) -> LineView:
    fields: dict[str, Any] = {
        "interval": None, "in_queue": 0, "longest_wait_seconds": None, "plan": None,
        "rolling_60m": {"offered": 0, "abandonment_rate": None},
        "rolling_24h": {"offered": 0, "failure_demand_rate": None},
    }
    fields.update(figures)
    return LineView(line=name, profile=profile or Settings().profile(name),
                    interval_start="2026-11-21T22:00:00Z", **fields)


def room(*lines: LineView, awaiting: tuple[AwaitingIncident, ...] = (), logged_in: int = 0,
         required: float | None = None) -> RoomView:
    return RoomView(lines, awaiting, logged_in, required)


def interval(answered: int, level: float, offered: int | None = None) -> dict[str, Any]:
    return {"answered": answered, "offered": answered if offered is None else offered,
            "service_level": {"answered": level}}


def test_every_rule_of_metrics_md_is_one_object_with_its_own_name() -> None:
    assert RULE_NAMES == ("service_level_below_target", "abandonment_above_standard",
                          "long_wait", "failure_demand_high", "staffing_gap",
                          "demand_above_forecast", "incident_awaiting_beyond_target")
    assert len({type(rule) for rule in RULES}) == len(RULES)


def test_service_level_uses_the_line_target_and_severity_and_needs_ten_answered() -> None:
    rule = ServiceLevelBelowTarget()
    [c] = rule.check(room(line("999", interval=interval(10, 0.85))))
    assert c.firing and c.threshold == 0.90 and c.severity == "critical"
    assert c.episode == "2026-11-21T22:00:00Z" and "target 90.0 %" in c.message
    [c] = rule.check(room(line("999", interval=interval(9, 0.0))))
    assert not c.firing and c.value is None
    [c] = rule.check(room(line("101", interval=interval(10, 0.85))))
    assert not c.firing and c.severity == "warning"  # 101's target is 80 %
    strict = LineProfile(service_level_target=0.95, alert_severity="critical")
    [c] = rule.check(room(line("101", strict, interval=interval(20, 0.90))))
    assert c.firing and c.threshold == 0.95 and c.severity == "critical"


def test_abandonment_above_standard_needs_twenty_offered_and_skips_lines_without_one() -> None:
    rule = AbandonmentAboveStandard()
    hour = {"offered": 20, "abandonment_rate": 0.06}
    [c] = rule.check(room(line("101", rolling_60m=hour)))
    assert c.firing and c.threshold == 0.05
    [c] = rule.check(room(line("101", rolling_60m={**hour, "offered": 19})))
    assert not c.firing
    [c] = rule.check(room(line("101", rolling_60m={**hour, "abandonment_rate": 0.05})))
    assert not c.firing  # at the standard is within it
    assert rule.check(room(line("999", rolling_60m=hour))) == []  # 999 has no standard


def test_long_wait_uses_the_line_limit() -> None:
    rule = LongWait()
    [c] = rule.check(room(line("999", longest_wait_seconds=61.0)))
    assert c.firing and c.threshold == 60 and c.severity == "critical"
    assert "1 min 1 s" in c.message
    [c] = rule.check(room(line("101", longest_wait_seconds=61.0)))
    assert not c.firing and c.threshold == 600
    [c] = rule.check(room(line("101", longest_wait_seconds=None)))
    assert not c.firing


def test_failure_demand_high_uses_the_configurable_limit_and_fifty_offered() -> None:
    rule = FailureDemandHigh()
    day = {"offered": 50, "failure_demand_rate": 0.21}
    [c] = rule.check(room(line("101", rolling_24h=day)))
    assert c.firing and c.threshold == 0.20
    [c] = rule.check(room(line("101", rolling_24h={**day, "offered": 49})))
    assert not c.firing
    [c] = rule.check(room(line("101", LineProfile(failure_demand_limit=0.25), rolling_24h=day)))
    assert not c.firing and c.threshold == 0.25


def test_staffing_gap_is_not_judged_without_a_plan() -> None:
    rule = StaffingGap()
    assert rule.check(room(line(), logged_in=3)) is None
    [c] = rule.check(room(line(), logged_in=3, required=4.0))
    assert c.firing and c.subject == "room" and c.value == 3 and c.threshold == 4.0
    [c] = rule.check(room(line(), logged_in=4, required=4.0))
    assert not c.firing


def test_demand_above_forecast_compares_with_the_upper_bound_of_lines_with_a_plan() -> None:
    rule = DemandAboveForecast()
    assert rule.check(room(line("101", interval=interval(30, 1.0)))) is None
    plan = {"calls_upper": 25.0}
    [c] = rule.check(room(line("101", interval=interval(20, 1.0, offered=26), plan=plan),
                          line("999")))
    assert c.firing and c.line == "101" and c.threshold == 25.0
    [c] = rule.check(room(line("101", interval=interval(20, 1.0, offered=25), plan=plan)))
    assert not c.firing


def test_incident_awaiting_beyond_target_is_critical_for_immediate_grades() -> None:
    rule = IncidentAwaitingBeyondTarget()
    late = AwaitingIncident("i1", "immediate", 901.0, 900.0)
    early = AwaitingIncident("i2", "priority", 30.0, 3600.0)
    untimed = AwaitingIncident("i3", "scheduled", 10**6, None)
    late_priority = AwaitingIncident("i4", "priority", 3601.0, 3600.0)
    found = rule.check(room(awaiting=(late, early, untimed, late_priority)))
    assert [(c.subject, c.severity) for c in found] == [("i1", "critical"), ("i4", "warning")]
    assert rule.check(room()) == []  # judged even with no incident: a dispatched one ends


@pytest.mark.parametrize("required", [None, 5.0])
def test_judge_orders_verdicts_line_by_line_then_incidents_then_the_room(required) -> None:
    views = (line("101", longest_wait_seconds=1.0), line("999", longest_wait_seconds=1.0))
    waiting = (AwaitingIncident("i1", "immediate", 901.0, 900.0),)
    conditions, evaluated = judge(room(*views, awaiting=waiting, logged_in=1,
                                       required=required))
    subjects = [c.subject for c in conditions]
    # 999 has no abandonment standard: three verdicts to 101's four
    assert subjects[:4] == ["101"] * 4 and subjects[4:7] == ["999"] * 3
    assert subjects[7:] == (["i1"] if required is None else ["i1", "room"])
    assert ("staffing_gap" in evaluated) is (required is not None)
    assert "demand_above_forecast" not in evaluated
