"""The live state's rolling figures and totals agree with a plain count over the same calls."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from services.alerts.book import AlertBook
from services.contract.settings import Settings
from services.figures.engine import Engine
from services.figures.kpis import ABANDONED, US
from services.figures.live import live_state
from services.simulation.simulator import simulate_events
from tests import oracle
from tests.chaos import hostile

WALL = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("hours", [5.25, 9.6, 30.1])
def test_live_figures_equal_a_plain_count(hours: float) -> None:
    lines = hostile(list(simulate_events(rooms=1, days=hours / 24, seed=71)), 71)
    engine = Engine(Settings())
    wall_us = int(WALL.timestamp()) * US
    half = len(lines) // 2
    for raw in lines[:half]:
        engine.process(raw, wall_us)
    room = engine.rooms["north"]
    book = AlertBook("north")
    live_state(room, book)  # cached bucket summaries must then follow the changes below
    for raw in lines[half:]:
        engine.process(raw, wall_us)
    state, _ = live_state(room, book)
    now = room.now_us
    computed = oracle.compute(lines, wall_clock=WALL)
    records = computed.intervals
    for line, figures in state["lines"].items():
        mine = [r for r in records.values() if r["line"] == line]
        totals = state["totals"]["lines"][line]
        assert totals["offered"] == sum(r["offered"] for r in mine)
        assert totals["answered"] == sum(r["answered"] for r in mine)
        assert totals["abandoned"] == sum(r["abandoned"] for r in mine)
        assert totals["answer_wait_count"] == totals["answered"]
        assert totals["answer_wait_buckets"]["10"] == sum(
            r["answer_bands"]["under_10s"] for r in mine)
        day = [r for r in mine
               if datetime.fromisoformat(r["interval_start"]).timestamp() * US
               >= now - 24 * 3600 * US]
        assert figures["rolling_24h"]["offered"] == sum(r["offered"] for r in day)
        assert figures["rolling_24h"]["failure_demand"] == sum(r["failure_demand"] for r in day)
        # the last hour and the queue lie in open intervals (grace 2 h > max queue 1 h)
        calls = [c for c in computed.calls if c.line == line]
        hour = [c for c in calls if now - 3600 * US <= c.offered.at_us <= now]
        assert figures["rolling_60m"]["offered"] == len(hour)
        assert figures["rolling_60m"]["abandoned"] == sum(
            1 for c in hour if c.exit_type == ABANDONED)
        queued = [c for c in calls if c.exit is None and c.offered.at_us <= now
                  and now - c.offered.at_us < 3600 * US]
        assert figures["in_queue"] == len(queued)
    assert orjson.loads(orjson.dumps(state)) == state


def test_a_live_state_shows_the_interval_record_the_flush_made_only_while_it_is_exact() -> None:
    from services.figures.kpis import iso
    from services.figures.live import computed_records

    engine = Engine(Settings())
    start_us = int(WALL.timestamp()) * US

    def event(n: int, kind: str, **fields: object) -> bytes:
        return orjson.dumps({"v": 1, "id": f"e{n}", "type": kind, "room": "north",
                             "at": iso(start_us + n * US), **fields})

    for n in range(0, 40, 2):
        engine.process(event(n, "call.offered", call=f"c{n}", line="999"), start_us + n * US)
        if n % 4 == 0:
            engine.process(event(n + 1, "call.answered", call=f"c{n}", handler="h1"),
                           start_us + (n + 1) * US)
    room = engine.rooms["north"]
    out = engine.flush()
    computed = computed_records(engine.rooms, out.records)
    record = next(r for kind, _k, r in out.records if kind == "interval" and not r["final"])
    shared, _ = live_state(room, AlertBook("north"), computed=computed["north"])
    fresh, _ = live_state(room, AlertBook("north"))
    assert shared == fresh
    assert shared["lines"]["999"]["interval"] is record  # taken, not computed again
    # a call offered since: that record is stale, and is computed again
    engine.process(event(41, "call.offered", call="c41", line="999"), start_us + 41 * US)
    again, _ = live_state(room, AlertBook("north"), computed=computed["north"])
    assert again == live_state(room, AlertBook("north"))[0]
    assert again["lines"]["999"]["interval"]["offered"] == record["offered"] + 1
