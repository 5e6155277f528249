"""The engine's compiled event checks (engine.decode_fast) against contract.decode_batch."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contract.events import Event, decode_batch
from services.figures.engine import decode_fast
from tests.services.contract.test_events import FULL, NOW_US, make, mutated


def described(events: list[Event] | None) -> list[tuple[Any, ...]] | None:
    if events is None:
        return None
    return [(type(e), e.to_dict(), e.at_us) for e in events]


def both(data: bytes, key_room: str | None) -> tuple[Any, Any]:
    return (described(decode_fast(data, key_room, NOW_US, 86400)),
            described(decode_batch(data, key_room, NOW_US, 86400)))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=4), st.booleans(),
       st.sampled_from([None, "north", "south"]))
def test_the_engine_decodes_mutated_messages_as_the_contract_does(
    values: list[Any], as_batch: bool, key_room: str | None
) -> None:
    try:
        data = json.dumps(values if as_batch else values[0], allow_nan=False).encode()
    except ValueError:
        return  # NaN or infinity: not JSON
    fast, reference = both(data, key_room)
    assert fast == reference, data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(FULL)), min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 61), st.integers(0, 10**9 - 1), st.integers(0, 9)),
                min_size=1, max_size=3))
def test_the_engine_times_valid_batches_as_the_contract_does(
    types: list[str], times: list[tuple[int, int, int]]
) -> None:
    values = []
    for i, etype in enumerate(types):
        second, nanos, digits = times[i % len(times)]
        at = f"2026-11-21T22:15:{second:02d}" + (f".{nanos:09d}"[:digits + 1] if digits else "")
        values.append(make(etype, id=f"e-{i}", at=at + "Z"))
    data = orjson.dumps(values)
    for _ in range(2):  # the minute unknown, then known
        fast, reference = both(data, "north")
        assert fast == reference
        assert reference is not None or any(s > 59 for s, _, _ in times)


@pytest.mark.parametrize("changes", [
    {"line": "07700900123"}, {"line": "Line 1"}, {"line": ""},
    {"caller": "+44 7700 900123"}, {"caller": "07700900123"}, {"caller": "(01632) 960-001"},
])
def test_neither_path_takes_a_phone_number_or_a_bad_line(changes: dict[str, str]) -> None:
    good = make("call.offered", id="e-0")
    data = orjson.dumps([good, make("call.offered", id="e-1", **changes)])
    assert both(data, "north") == (None, None)
    assert both(orjson.dumps([good]), "north")[0] is not None


@pytest.mark.parametrize("times", [
    ["2026-11-21T22:15:03Z", "2026-11-21T22:15:04.5+00:00", "2026-11-21T22:15:05.123456789Z"],
    ["2026-11-21T22:15:03.250Z", "2026-11-21T22:15:03.25Z", "2026-11-21T22:15:59.999Z"],
    ["2026-11-21T22:15:03Z", "2026-11-21T22:15:60Z"],
    ["2026-11-21T22:15:03Z", "2026-11-21T22:15:0٣Z"],  # an Arabic-Indic digit
    ["2026-11-21T22:15:03Z", "2026-11-21t22:15:04Z", "2026-11-21T22:15:05z"],
    ["2026-11-21T22:15:03.1234Z", "2026-11-21T22:16:00.000Z", "2026-11-21T22:15:03.000Z"],
])
def test_times_sharing_a_minute_in_other_forms_are_read_as_the_contract_reads_them(
    times: list[str],
) -> None:
    data = orjson.dumps([make("call.abandoned", id=f"e-{i}", at=at)
                         for i, at in enumerate(times)])
    for _ in range(2):  # the minute unknown, then known
        fast, reference = both(data, "north")
        assert fast == reference
