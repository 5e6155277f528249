"""The engine's records equal the independent oracle's, on clean and hostile random input."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.contract.settings import Settings
from services.figures.report import compute_records
from tests import oracle
from tests.chaos import hostile

START = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)


def _t(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def random_room_events(seed: int, room: str = "north", calls: int = 400,
                       hours: float = 8) -> list[dict[str, Any]]:
    """Random but lifecycle-shaped events, including the awkward cases of EVENTS.md."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    n = 0

    def add(kind: str, at: datetime, **fields: Any) -> None:
        nonlocal n
        n += 1
        events.append({"v": 1, "id": f"{room}-{n}", "type": kind, "room": room, "at": _t(at),
                       **fields})

    callers = [f"k:{rng.getrandbits(64):016x}" for _ in range(60)]
    for h in range(8):
        add("handler.state", START + timedelta(seconds=rng.uniform(0, 600)), handler=f"h-{h}",
            state="available")
    for c in range(calls):
        offered = START + timedelta(seconds=rng.uniform(0, hours * 3600))
        line = rng.choice(["999", "101", "101", "online"])
        fields: dict[str, Any] = {"call": f"c-{c}", "line": line}
        if rng.random() < 0.9:
            fields["caller"] = rng.choice(callers)
        if rng.random() < 0.05:
            fields["reason"] = "progress_chase"
        add("call.offered", offered, **fields)
        wait = timedelta(seconds=rng.choice([rng.uniform(0, 12), rng.uniform(0, 200),
                                             rng.uniform(0, 4000)]))
        roll = rng.random()
        if roll < 0.7:
            answered = offered + wait
            add("call.answered", answered, call=f"c-{c}", handler=f"h-{rng.randrange(8)}")
            if rng.random() < 0.9:
                ended = answered + timedelta(seconds=rng.uniform(30, 900))
                end_fields: dict[str, Any] = {"call": f"c-{c}", "outcome": rng.choice(
                    ["resolved", "unresolved", "incident", "advice"])}
                if rng.random() < 0.8:
                    end_fields["wrap_seconds"] = round(rng.uniform(0, 120), 3)
                add("call.ended", ended, **end_fields)
                if end_fields["outcome"] == "incident":
                    created = ended - timedelta(seconds=rng.uniform(0, 60))
                    inc = f"i-{c}"
                    inc_fields: dict[str, Any] = {"incident": inc, "grade": rng.choice(
                        ["immediate", "priority", "scheduled", "resolution"]), "call": f"c-{c}"}
                    if rng.random() < 0.8:
                        inc_fields["area"] = rng.choice(["urban", "rural"])
                    add("incident.created", created, **inc_fields)
                    if rng.random() < 0.9:
                        dispatched = created + timedelta(seconds=rng.uniform(10, 1500))
                        add("incident.dispatched", dispatched, incident=inc)
                        if rng.random() < 0.85:
                            add("incident.arrived",
                                dispatched + timedelta(seconds=rng.uniform(60, 1800)),
                                incident=inc)
            if rng.random() < 0.03:  # a conflicting later exit
                add("call.abandoned", offered + wait + timedelta(seconds=5), call=f"c-{c}")
        elif roll < 0.9:
            add("call.abandoned", offered + wait, call=f"c-{c}")
        elif roll < 0.95:
            add("call.callback_requested", offered + wait, call=f"c-{c}")
            for _ in range(rng.randrange(3)):
                add("callback.attempted", offered + wait + timedelta(seconds=rng.uniform(60, 900)),
                    call=f"c-{c}", success=rng.random() < 0.7)
        # else: still queued / orphaned
        if rng.random() < 0.01:  # an exit before the offer: negative wait
            add("call.abandoned", offered - timedelta(seconds=3), call=f"c-{c}")
    for _ in range(150):
        add("handler.state", START + timedelta(seconds=rng.uniform(0, hours * 3600)),
            handler=f"h-{rng.randrange(8)}",
            state=rng.choice(["available", "on_call", "wrap_up", "unavailable", "logged_out"]))
    for _ in range(5):  # orphans: children of calls that never come
        add("call.answered", START + timedelta(seconds=rng.uniform(0, 3600)),
            call=f"ghost-{rng.randrange(10**6)}")
    events.sort(key=lambda e: e["at"])
    return events


def assert_same(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    """Integers and structure exact, floats to 1e-9 relative."""
    assert set(actual) == set(expected), f"{where}: keys differ {set(actual) ^ set(expected)}"
    for key, value in expected.items():
        got = actual[key]
        path = f"{where}.{key}"
        if isinstance(value, dict):
            assert isinstance(got, dict), path
            assert_same(got, value, path)
        elif isinstance(value, float) and not isinstance(value, bool):
            assert got is not None and math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9), (
                f"{path}: {got} != {value}")
        else:
            assert got == value, f"{path}: {got!r} != {value!r}"


def compare(lines: list[bytes]) -> None:
    wall = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    wall_us = int(wall.timestamp()) * 1_000_000
    ours = compute_records(lines, Settings(), wall_us=wall_us)
    theirs = oracle.compute(lines, wall_clock=wall)
    for kind in ("intervals", "attendance", "handlers"):
        mine, expected = getattr(ours, kind), getattr(theirs, kind)
        assert set(mine) == set(expected), f"{kind}: keys differ {set(mine) ^ set(expected)}"
        for key in expected:
            assert_same(mine[key], expected[key], f"{kind}[{key}]")
    assert ours.rejected == theirs.rejected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_random_input_matches_oracle(seed: int) -> None:
    compare([orjson.dumps(e) for e in random_room_events(seed)])


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
def test_hostile_random_input_matches_oracle(seed: int) -> None:
    events = random_room_events(seed) + random_room_events(seed + 100, room="south")
    events.sort(key=lambda e: e["at"])
    compare(hostile(events, seed))


@pytest.mark.parametrize("seed", [101, 102, 103])
def test_hostile_simulated_days_match_oracle(seed: int) -> None:
    from services.simulation.simulator import simulate_events

    events = list(simulate_events(rooms=2, days=1, seed=seed))
    compare(hostile(events, seed, duplicates=0.03, displace_seconds=1800))


def test_report_command_prints_the_engine_records(tmp_path: Any, capsys: Any) -> None:
    from pacesetter.cli import main

    lines = hostile(random_room_events(9), 9)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["report", str(path), "--json"]) == 0
    printed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    theirs = oracle.compute(lines)
    intervals = {f"{r['record']['room']}|{r['record']['line']}|{r['record']['interval_start']}":
                 r["record"] for r in printed if r["kind"] == "interval"}
    assert set(intervals) == set(theirs.intervals)
    for key, record in theirs.intervals.items():
        assert_same(intervals[key], record, key)
    assert main(["report", str(path)]) == 0
    table = capsys.readouterr().out
    assert "interval records; rejected:" in table and "duplicate" in table


def test_report_can_keep_final_intervals_in_the_history_store(tmp_path: Any) -> None:
    from pacesetter.cli import main
    from services.history.store import HistoryStore

    lines = [orjson.dumps(e) for e in random_room_events(10)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    url = f"sqlite:///{tmp_path}/history.db"
    assert main(["report", str(path), "--store", url]) == 0
    finals = {k: r for k, r in oracle.compute(lines).intervals.items() if r["final"]}
    assert finals
    with HistoryStore.open(url) as store:
        stored = {f"{r['room']}|{r['line']}|{r['interval_start']}": r
                  for r in store.intervals("north")}
    assert set(stored) == set(finals)
    for key, record in finals.items():
        assert stored[key]["offered"] == record["offered"]
        assert stored[key]["queue_seconds"] == pytest.approx(record["queue_seconds"])
