"""A checkpoint restores a room exactly: what follows it decides everything as a full replay does.

Engine A applies a hostile stream (duplicates, reordering, broken lines, late events, orphans)
from the start; engine B applies it up to a cut and exports its rooms; a fresh engine C
imports that and applies the rest. Everything C hands over after the cut (records of every
interval, dead letters), its live states and the open intervals must be A's. Compiled and as
pure Python.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import services.figures
from services.alerts.book import AlertBook
from services.contract.settings import Settings
from services.figures import _native
from services.figures.checkpoint import encode, fingerprint, import_engine, take_state
from services.figures.engine import Engine, Output
from services.figures.kpis import US
from services.figures.live import live_state
from services.simulation.simulator import simulate_events
from tests.chaos import hostile


def export_engine(engine: Engine, fingerprint_: str, rooms: list[str] | None = None) -> bytes:
    return encode(take_state(engine, fingerprint_, rooms))

ROOT = Path(__file__).resolve().parents[3]
# Short horizons so that a day holds every path: intervals final, too-late events, orphans,
# rotated event ids, pruned calls and incidents; and the defaults' long horizons.
SETTINGS = {
    "short": {"grace_seconds": 600, "repeat_window_seconds": 3 * 3600,
              "attendance_horizon_seconds": 2 * 3600, "max_future_seconds": 600,
              "line_profiles": '{"101": {"threshold_seconds": 30}}'},
    "default": {},
}
FLUSH_EVERY = 40  # messages between flushes, as the worker flushes a few times a second


def at_us(event: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp() * US)


def stream(seed: int) -> tuple[list[bytes], list[int]]:
    """Hostile messages and the wall clock each is applied at (running close behind them)."""
    rng = random.Random(seed)
    events = list(simulate_events(rooms=2, days=0.6, seed=seed))
    # calls whose offer never comes: their children wait, then are orphans
    events = [e for e in events if not (e["type"] == "call.offered" and rng.random() < 0.01)]
    lines = hostile(events, seed, displace_seconds=2400)
    lines.append(b'{"v":1,"id":"nowhere","type":"call.offered"}')  # no room at all
    first, last = at_us(events[0]), at_us(events[-1])
    step = (last - first) // len(lines)
    # the clock runs a few minutes behind the events at first, then catches up: rooms go from
    # replay to live
    walls = [first + i * step + (120 * US if i > len(lines) // 2 else -600 * US)
             for i in range(len(lines))]
    return lines, walls


def run(engine: Engine, lines: list[bytes], walls: list[int], start: int,
        outputs: list[Output]) -> None:
    """Apply ``lines[start:]`` as the worker does: flush and tick every few messages."""
    for index in range(start, len(lines)):
        engine.process(lines[index], walls[index])
        if index % FLUSH_EVERY == FLUSH_EVERY - 1:
            engine.tick(walls[index])
            outputs.append(engine.flush())
    outputs.append(engine.flush())


def decided(outputs: list[Output]) -> list[Any]:
    """What a sequence of flushes handed over: records (order within a flush is free)."""
    return [(sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in out.records),
             [(d.reason, d.error, d.room, d.event_id, d.type, d.raw, d.source)
             for d in out.dead_letters]) for out in outputs]


def looks(engine: Engine) -> dict[str, Any]:
    """What a reader sees of every room now: live state, open intervals, counters."""
    seen: dict[str, Any] = {}
    for name, room in sorted(engine.rooms.items()):
        state, _ = live_state(room, AlertBook(name), evaluate_alerts=False)
        now = room.now_us
        intervals = {f"{line}|{start}": room.calls.interval_now(line, start, now)
                     for line, start in sorted(room.calls.tallies)}
        seen[name] = (state, intervals, room.seq, room.waiting_for_parent(),
                      sorted(room.seen), sorted(room.seen_before))
    seen["unroomed"] = dict(engine.rejected_unroomed)
    return seen


def check(variant: str, seed: int, cuts: tuple[float, ...]) -> None:
    """C (B's checkpoint + the rest) decides what A (everything) decides, at each cut."""
    settings = Settings(**SETTINGS[variant])
    lines, walls = stream(seed)
    whole = Engine(settings)
    all_out: list[Output] = []
    run(whole, lines, walls, 0, all_out)
    rejected = {reason for room in whole.rooms.values() for reason in room.rejected}
    if variant == "short":  # the stream holds every hostile case
        assert {"duplicate", "too_late", "orphan"} <= rejected, rejected
    want = looks(whole)
    for fraction in cuts:
        cut = int(len(lines) * fraction)
        before = Engine(settings)
        before_out: list[Output] = []
        for index in range(cut):  # the same flushes as A up to the cut, none at the cut
            before.process(lines[index], walls[index])
            if index % FLUSH_EVERY == FLUSH_EVERY - 1:
                before.tick(walls[index])
                before_out.append(before.flush())
        blob = export_engine(before, fingerprint(settings))
        after = Engine(settings)
        assert import_engine(after, blob, fingerprint(settings)) == list(before.rooms)
        after_out: list[Output] = []
        run(after, lines, walls, cut, after_out)
        assert decided(before_out) == decided(all_out[:len(before_out)])
        assert decided(after_out) == decided(all_out[len(before_out):]), (variant, fraction)
        assert looks(after) == want, (variant, fraction)


@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_a_restored_engine_decides_what_a_full_replay_decides(variant: str) -> None:
    check(variant, seed=31, cuts=(0.05, 0.37, 0.5 + 1 / FLUSH_EVERY / 7, 0.83))


def test_the_same_as_pure_python() -> None:
    if not _native.is_fresh():
        pytest.skip("no native build: the test above ran as pure Python")
    assert services.figures.NATIVE
    env = dict(os.environ, PACESETTER_PURE_PYTHON="1")
    code = ("import services.figures as f; assert not f.NATIVE\n"
            "from tests.services.figures.test_checkpoint import check\n"
            "check('short', 32, (0.29, 0.71))\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=600)


def test_a_checkpoint_of_other_settings_or_format_is_refused() -> None:
    settings = Settings(**SETTINGS["short"])
    lines, walls = stream(33)
    engine = Engine(settings)
    run(engine, lines[:2000], walls, 0, [])
    blob = export_engine(engine, fingerprint(settings))
    other = Settings(**SETTINGS["short"], **{"live_lag_seconds": 60})
    assert fingerprint(other) != fingerprint(settings)
    assert fingerprint(Settings(grace_seconds=601)) != fingerprint(Settings(grace_seconds=600))
    # settings that change no figure leave it as it is
    assert fingerprint(Settings(checkpoint_seconds=5, worker_id="x")) == fingerprint(Settings())
    fresh = Engine(other)
    assert import_engine(fresh, blob, fingerprint(other)) is None
    assert import_engine(fresh, blob[:len(blob) // 2], fingerprint(settings)) is None
    assert import_engine(fresh, b"\x93\x02", fingerprint(settings)) is None
    assert fresh.rooms == {}
    # only some rooms: the others are not in it, and what no room holds is left alone
    name = sorted(engine.rooms)[0]
    part = Engine(settings)
    assert import_engine(part, export_engine(engine, fingerprint(settings), [name]),
                         fingerprint(settings)) == [name]
    assert list(part.rooms) == [name]
    assert looks(part)[name] == looks(engine)[name]
