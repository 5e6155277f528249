"""A live room forgets by its horizons: what it keeps has a steady size, not the whole run.

Event ids, calls, callers, incidents, handler timelines and waiting children are all kept for
as long as a figure may still need them, and the horizons that say how long are settings
(grace, repeat window, attendance horizon, how far in the future an event may be). With short
horizons, two simulated days fed live leave only the last hour or so in the room's state.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from services.contract.settings import Settings
from services.figures.config import Config
from services.figures.engine import Engine
from services.figures.kpis import INTERVAL_US, US
from services.simulation.simulator import simulate_events

SHORT = {"grace_seconds": 120, "repeat_window_seconds": 120,
         "attendance_horizon_seconds": 120, "max_future_seconds": 60}


def at_us(event: dict) -> int:
    return int(datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp() * US)


def test_event_ids_are_remembered_by_the_horizons_they_protect() -> None:
    default = Config.of(Settings())
    # the attendance horizon (50 h) + an interval + an event's 24 h in the future
    assert default.seen_generation_us == (50 * 3600 + 900 + 86400) * US
    short = Config.of(Settings(**SHORT))
    assert short.seen_generation_us == (120 + 900 + 60) * US


def test_a_live_room_keeps_only_what_its_horizons_need() -> None:
    events = list(simulate_events(rooms=1, days=2, seed=5))
    engine = Engine(Settings(**SHORT))
    config = engine.config
    for event in events:  # live: the wall clock is the event's time
        engine.process(orjson.dumps(event), at_us(event))
    room = engine.rooms["north"]
    end = at_us(events[-1])
    # calls: an interval until final, the grace period, the longer horizon, and up to an
    # interval more until the next pruning (at a quarter hour)
    keep_calls = 2 * INTERVAL_US + config.grace_us + max(config.repeat_window_us,
                                                         config.attendance_horizon_us)
    assert room.calls.calls
    assert min(c.offered_us for c in room.calls.calls.values()) >= end - keep_calls
    assert all(entry[0] >= end - keep_calls
               for history in room.calls.callers.values() for entry in history)
    assert len(room.calls.offers) == len(room.calls.calls)
    # incidents: final an attendance horizon after their interval, then pruned with the calls
    keep_incidents = keep_calls + INTERVAL_US + config.attendance_horizon_us
    assert room.incidents.incidents
    assert min(i.created_us for i in room.incidents.incidents.values()) >= end - keep_incidents
    # event ids: two generations at most
    recent = sum(1 for e in events if at_us(e) >= end - 2 * config.seen_generation_us)
    assert 0 < len(room.seen) + len(room.seen_before) <= recent
    assert len(room.seen) + len(room.seen_before) < len(events) / 10
    # handler timelines: the state carried into the open intervals, and those since
    for timeline in room.handlers.timelines.values():
        assert all(mark[0] >= end - 2 * INTERVAL_US - config.grace_us for mark in timeline[1:])
    # children waiting for their parent expire with their interval
    assert all(child.at_us >= end - 2 * INTERVAL_US - config.attendance_horizon_us
               for waiting in room.pending.values() for child in waiting)
