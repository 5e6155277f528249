"""The fast path (engine.decode_fast, compiled with the engine) against the careful one.

The careful path (``decode_message`` and ``parse_event``) names the field and the fix of
every broken event; the fast path checks a message whole. It must accept only what the
careful path accepts, with identical events.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contract.events import Event, InvalidEvent, decode_message, parse_event
from services.figures.engine import decode_fast
from tests.services.contract.test_events import EXAMPLE, FULL, NOW_US, make, mutated


def careful(data: bytes, key_room: str | None) -> list[Event] | None:
    """What decode_message and parse_event make of a message: its events, or None if any of
    it is rejected."""
    try:
        items = decode_message(data)
    except InvalidEvent:
        return None
    events = []
    for item in items:
        try:
            event = parse_event(item, now_us=NOW_US, max_future_seconds=86400)
        except InvalidEvent:
            return None
        if key_room is not None and event.room != key_room:
            return None
        events.append(event)
    return events


def fast(data: bytes, key_room: str | None) -> list[Event] | None:
    return decode_fast(data, key_room, NOW_US, 86400)


def described(events: list[Event]) -> list[tuple[Any, ...]]:
    return [(type(e), e.type, e.to_dict(), e.at_us, e.at) for e in events]


def assert_agrees(data: bytes, key_room: str | None) -> list[Event] | None:
    """The fast path's events, if it takes the message: the careful path's, exactly."""
    events = fast(data, key_room)
    if events is not None:
        slow = careful(data, key_room)
        assert slow is not None, data
        assert described(events) == described(slow)
    return events


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=4), st.booleans(),
       st.sampled_from([None, "north", "south"]))
def test_the_fast_path_accepts_only_what_the_careful_path_accepts_and_agrees(
    values: list[Any], as_batch: bool, key_room: str | None
) -> None:
    try:  # the standard library writes any integer, as a producer in another language may
        data = json.dumps(values if as_batch else values[0], allow_nan=False).encode()
    except ValueError:
        return  # NaN or infinity: not JSON
    assert_agrees(data, key_room)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(FULL)), min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 59), st.integers(0, 10**9 - 1), st.integers(0, 9)),
                min_size=1, max_size=3))
def test_valid_batches_take_the_fast_path_with_the_same_events(
    types: list[str], times: list[tuple[int, int, int]]
) -> None:
    values = []
    for i, etype in enumerate(types):
        second, nanos, digits = times[i % len(times)]
        at = f"2026-11-21T22:15:{second:02d}" + (f".{nanos:09d}"[:digits + 1] if digits else "")
        values.append(make(etype, id=f"e-{i}", at=at + "Z"))
    data = orjson.dumps(values)
    taken = assert_agrees(data, "north")
    assert taken is not None
    # the same again, now that the minute is known
    assert described(fast(data, "north") or []) == described(taken)


def test_the_events_md_example_takes_the_fast_path() -> None:
    data = b"[" + b",".join(EXAMPLE.splitlines()) + b"]"
    events = assert_agrees(data, "north")
    assert events is not None
    assert [e.id for e in events] == ["e-1", "e-2", "e-3", "e-4", "e-5", "e-6"]


@pytest.mark.parametrize("times", [
    ["2026-11-21T22:15:03Z", "2026-11-21T22:15:04.5+00:00", "2026-11-21T22:15:05.123456789Z"],
    ["2026-11-21T22:15:03.250Z", "2026-11-21T22:15:03.25Z", "2026-11-21T22:15:59.999Z"],
    ["2026-11-21T22:15:03Z", "2026-11-21T22:15:60Z"],
    ["2026-11-21T22:15:03Z", "2026-11-21T22:15:0٣Z"],  # an Arabic-Indic digit
    ["2026-11-21T22:15:03Z", "2026-11-21t22:15:04Z", "2026-11-21T22:15:05z"],
    ["2026-11-21T22:15:03.1234Z", "2026-11-21T22:16:00.000Z", "2026-11-21T22:15:03.000Z"],
])
def test_times_sharing_a_minute_in_other_forms_are_read_as_the_careful_path_reads_them(
    times: list[str],
) -> None:
    data = orjson.dumps([make("call.abandoned", id=f"e-{i}", at=at)
                         for i, at in enumerate(times)])
    for _ in range(2):  # the minute unknown, then known
        assert_agrees(data, "north")


@pytest.mark.parametrize("changes", [
    {"line": "07700900123"}, {"line": "Line 1"}, {"line": ""},
    {"caller": "+44 7700 900123"}, {"caller": "07700900123"}, {"caller": "(01632) 960-001"},
])
def test_neither_path_takes_a_phone_number_or_a_bad_line(changes: dict[str, str]) -> None:
    good = make("call.offered", id="e-0")
    data = orjson.dumps([good, make("call.offered", id="e-1", **changes)])
    assert fast(data, "north") is None and careful(data, "north") is None
    assert assert_agrees(orjson.dumps([good]), "north") is not None
