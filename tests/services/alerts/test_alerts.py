"""Each alert rule of METRICS.md fires once when its condition holds and clears once it ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.alerts.book import AlertBook
from services.contract.events import parse_event
from services.contract.settings import Settings
from services.figures.engine import Room
from services.figures.live import live_state
from services.figures.report import Engine

T0 = datetime(2026, 11, 21, 22, 0, tzinfo=UTC)
WALL_US = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp()) * 1_000_000  # replay mode


class Control:
    """A control room driven event by event, with its alert book."""

    def __init__(self, plan: dict[str, Any] | None = None) -> None:
        self.engine = Engine(Settings())
        self.n = 0
        self.book = AlertBook("north")
        self.transitions: list[dict[str, Any]] = []
        self.plan = plan

    def event(self, kind: str, seconds: float, **fields: Any) -> None:
        self.n += 1
        at = (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = parse_event({"v": 1, "id": f"e{self.n}", "type": kind, "room": "north",
                             "at": at, **fields})
        self.engine.room("north").apply(event, WALL_US)

    def call(self, name: str, seconds: float, line: str, wait: float | None,
             exit_kind: str = "call.answered", caller: str | None = None) -> None:
        extra = {"caller": caller} if caller else {}
        self.event("call.offered", seconds, call=name, line=line, **extra)
        if wait is not None:
            self.event(exit_kind, seconds + wait, call=name)

    def evaluate(self) -> list[dict[str, Any]]:
        room: Room = self.engine.room("north")
        lookup = (lambda _room, line, _at: self.plan.get(line)) if self.plan else None
        _state, transitions = live_state(room, self.book, lookup)
        self.transitions += transitions
        return transitions

    def of(self, rule: str) -> list[tuple[str, Any]]:
        return [(t["state"], t["value"]) for t in self.transitions if t["rule"] == rule]


def test_service_level_below_target_fires_then_clears_when_interval_ends() -> None:
    c = Control()
    for i in range(12):  # 12 answered on 999, 5 of them after 10 s or more: 7/12 = 58 %
        c.call(f"c{i}", 10 * i, "999", 30 if i < 5 else 2)
    c.evaluate()
    c.evaluate()  # a second look while still firing opens nothing new
    fired = c.of("service_level_below_target")
    assert [s for s, _ in fired] == ["firing"]
    assert abs(fired[0][1] - 7 / 12) < 1e-12
    assert "target 90.0 %" in c.transitions[0]["message"]
    c.call("next", 16 * 60, "999", 1)  # the next interval starts: the alert ends with its interval
    c.evaluate()
    assert [s for s, _ in c.of("service_level_below_target")] == ["firing", "resolved"]


def test_service_level_alert_clears_when_back_at_target() -> None:
    c = Control()
    for i in range(10):
        c.call(f"slow{i}", 5 * i, "999", 12 if i < 3 else 1)  # 7/10 within 10 s
    c.evaluate()
    for i in range(30):
        c.call(f"fast{i}", 100 + 5 * i, "999", 1)  # 37/40 = 92.5 %
    c.evaluate()
    assert [s for s, _ in c.of("service_level_below_target")] == ["firing", "resolved"]


def test_abandonment_above_standard_fires_and_clears() -> None:
    c = Control()
    for i in range(25):  # 5 of 25 hang up after 30 s: 20 % > 5 %
        kind = "call.abandoned" if i < 5 else "call.answered"
        c.call(f"c{i}", 60 * i, "101", 30, kind)
    c.evaluate()
    for i in range(100):  # 5 of 125: 4 %
        c.call(f"d{i}", 1500 + 10 * i, "101", 20)
    c.evaluate()
    assert [s for s, _ in c.of("abandonment_above_standard")] == ["firing", "resolved"]


def test_short_abandons_do_not_fire_abandonment_alert() -> None:
    c = Control()
    for i in range(25):
        kind = "call.abandoned" if i < 10 else "call.answered"
        c.call(f"c{i}", 60 * i, "101", 2 if i < 10 else 20, kind)  # abandons under 5 s
    c.evaluate()
    assert c.of("abandonment_above_standard") == []


def test_long_wait_fires_while_a_caller_waits_and_clears_when_answered() -> None:
    c = Control()
    c.call("waiting", 0, "999", None)
    c.event("handler.state", 75, handler="h1", state="available")  # the clock moves on
    c.evaluate()
    c.event("call.answered", 80, call="waiting")
    c.evaluate()
    states = c.of("long_wait")
    assert [s for s, _ in states] == ["firing", "resolved"]
    assert states[0][1] == 75.0
    assert "1 min 15 s" in next(t for t in c.transitions if t["rule"] == "long_wait")["message"]


def test_failure_demand_high_fires_and_clears() -> None:
    c = Control()
    for i in range(30):  # 30 callers abandon, then ring again: 30 of 60 calls are failure demand
        c.call(f"first{i}", 20 * i, "101", 30, "call.abandoned", caller=f"k:{i:04d}")
        c.call(f"again{i}", 1000 + 20 * i, "101", 5, caller=f"k:{i:04d}")
    c.evaluate()
    for i in range(150):  # fresh demand: 30 of 210 = 14 %
        c.call(f"new{i}", 2000 + 10 * i, "101", 5, caller=f"k:new{i}")
    c.evaluate()
    assert [s for s, _ in c.of("failure_demand_high")] == ["firing", "resolved"]


def test_staffing_gap_fires_when_too_few_logged_in_and_clears_when_filled() -> None:
    c = Control(plan={"101": {"required_handlers": 5, "calls": 10.0, "calls_upper": 99.0}})
    c.call("c0", 0, "101", 3)
    for h in range(2):
        c.event("handler.state", 10, handler=f"h{h}", state="available")
    c.evaluate()
    for h in range(2, 5):
        c.event("handler.state", 20, handler=f"h{h}", state="available")
    c.evaluate()
    assert [s for s, _ in c.of("staffing_gap")] == ["firing", "resolved"]


def test_staffing_alerts_inactive_without_a_plan() -> None:
    c = Control()
    c.call("c0", 0, "101", 3)
    state, _ = live_state(c.engine.room("north"), c.book, None)
    assert "inactive" in state["staffing_plan"]
    assert c.of("staffing_gap") == [] and c.of("demand_above_forecast") == []


def test_demand_above_forecast_fires_and_clears_when_interval_ends() -> None:
    c = Control(plan={"999": {"required_handlers": 1, "calls": 2.0, "calls_upper": 3.0}})
    for i in range(4):
        c.call(f"c{i}", 10 * i, "999", 2)
    c.evaluate()
    c.call("next", 16 * 60, "999", 2)
    c.evaluate()
    assert [s for s, _ in c.of("demand_above_forecast")] == ["firing", "resolved"]


def test_incident_awaiting_beyond_target_fires_and_clears_on_dispatch() -> None:
    c = Control()
    c.event("incident.created", 0, incident="i1", grade="immediate", area="urban")
    c.event("handler.state", 14 * 60, handler="h1", state="available")
    c.evaluate()
    assert c.of("incident_awaiting_beyond_target") == []  # 14 min < 15 min target
    c.event("handler.state", 16 * 60, handler="h1", state="on_call")
    c.evaluate()
    c.event("incident.dispatched", 17 * 60, incident="i1")
    c.evaluate()
    assert [s for s, _ in c.of("incident_awaiting_beyond_target")] == ["firing", "resolved"]
    firing = c.transitions[0]
    assert firing["incident"] == "i1" and firing["severity"] == "critical"
