"""An open interval's running tally gives, at every step, the record of a walk over its calls.

The stream republishes each changed open interval ten times a second, from a tally that every
(re)derived call updates (``calls.BucketTally``); ``kpis.interval_record`` walks the calls and is
the reference. Random sequences of offers, exits (conflicting, before the offer, duplicated),
ends, callback attempts and late arrivals must leave the two equal, float for float, for any
clock, open or final; and the live view's bucket summaries equal ``BucketStats.of`` the calls.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.alerts.book import AlertBook
from services.contract.events import (
    CallAbandoned,
    CallAnswered,
    CallbackAttempted,
    CallbackRequested,
    CallEnded,
    CallOffered,
    Event,
)
from services.contract.settings import Settings
from services.figures import kpis
from services.figures.calls import BucketStats, CallBook, Child, SortedInts
from services.figures.config import Config
from services.figures.engine import Engine
from services.figures.kpis import INTERVAL_US, US, iso
from services.figures.live import live_state
from services.simulation.simulator import simulate_events
from tests.chaos import hostile

START = 1_800_000_000 * US - (1_800_000_000 * US) % INTERVAL_US
EXITS = (CallAnswered, CallAbandoned, CallbackRequested)
# wrap-up seconds whose float sums depend on the order of the additions, and a few extremes
WRAPS = (0.0, 0.1, 0.2, 0.3, 1e-300, 5e-324, 12.345, 59.99, 1e16, 3.0, 1.7e308)
OUTCOMES = ("resolved", "unresolved", "advice", None)

offset = st.integers(min_value=-30 * US, max_value=700 * US)  # around a call's offer
ops = st.lists(st.one_of(
    # offer: interval (0 or 1), second in it, line, caller (None or one of a few), reason
    st.tuples(st.just("offer"), st.integers(0, 1), st.integers(0, 899),
              st.sampled_from(["999", "101"]), st.sampled_from([None, "a", "b", "c"]),
              st.sampled_from([None, "progress_chase"])),
    st.tuples(st.just("exit"), st.integers(0, 60), st.integers(0, 2), offset),
    st.tuples(st.just("end"), st.integers(0, 60), offset, st.sampled_from(WRAPS),
              st.sampled_from(OUTCOMES)),
    st.tuples(st.just("attempt"), st.integers(0, 60), st.booleans()),
    st.tuples(st.just("again"), st.integers(0, 200)),  # a duplicate of an earlier child
    st.tuples(st.just("check"), st.integers(0, 4 * 3600)),
    st.tuples(st.just("finalize"),),
), max_size=120)


class Book:
    """A CallBook fed events made up on the spot, checked against the walk."""

    def __init__(self) -> None:
        self.book = CallBook("north", Config.of(Settings()))
        self.seq = 0
        self.calls: list[Any] = []
        self.children: list[Child] = []
        self.closed = START  # intervals starting before this are final

    def event(self, cls: type[Event], at_us: int, **fields: Any) -> Event:
        self.seq += 1
        return cls(v=1, id=f"e{self.seq}", room="north", at_text=iso(at_us), at_us=at_us,
                   **fields)

    def attach(self, index: int, cls: type[Event], at: int, **fields: Any) -> None:
        if not self.calls:
            return
        call = self.calls[index % len(self.calls)]
        if call.final:
            return  # the room turns these away as too late
        child = Child(self.event(cls, call.offered_us + at, call=call.id, **fields), self.seq)
        self.children.append(child)
        self.book.attach(call, child)

    def run(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "offer":
            _, interval, second, line, caller, reason = op
            at = START + interval * INTERVAL_US + second * US
            if at < self.closed:
                return
            event = self.event(CallOffered, at, call=f"c{self.seq}", line=line, caller=caller,
                               reason=reason)
            self.calls.append(self.book.offer(event, self.seq))
        elif kind == "exit":
            self.attach(op[1], EXITS[op[2]], op[3])
        elif kind == "end":
            self.attach(op[1], CallEnded, op[2], wrap_seconds=op[3], outcome=op[4])
        elif kind == "attempt":
            self.attach(op[1], CallbackAttempted, 0, success=op[2])
        elif kind == "again" and self.children:
            child = self.children[op[1] % len(self.children)]
            call = self.book.get(child.event.call or "")
            if call is not None and not call.final:
                self.seq += 1
                self.book.attach(call, Child(child.event, self.seq))
        elif kind == "check":
            self.check(START + op[1] * US)
        elif kind == "finalize":
            self.finalize()

    def check(self, now: int) -> None:
        book = self.book
        book.derive()
        for key in book.buckets:
            for at, final in ((now, False), (now + 3600 * US, False), (now, True)):
                assert same(book._record(key, at, final), walk(book, key, at, final))
        stats = book.stats()
        for key, calls in book.buckets.items():
            expected = BucketStats.of(calls, book.config.limits(key[0]).short_abandon_us)
            assert stats[key] == expected

    def finalize(self) -> None:
        book = self.book
        book.derive()
        closed = self.closed + INTERVAL_US
        now = closed + book.config.grace_us
        expected = {book._key(key): walk(book, key, now, True)
                    for key in book.buckets if key[1] + INTERVAL_US <= closed}
        records: list[Any] = []
        book.finalize(closed, records, lambda *_: None)
        assert {name: record for _, name, record in records}.keys() == expected.keys()
        for _, name, record in records:
            assert same(record, expected[name])
        self.closed = closed


def walk(book: CallBook, key: tuple[str, int], now: int, final: bool) -> dict[str, Any]:
    """The reference: the record of a walk over every call of the bucket."""
    line, start = key
    return kpis.interval_record(book.room, line, start, book.buckets[key],
                                book.config.limits(line), now, final, book.config.max_queue_us)


def same(a: Any, b: Any) -> bool:
    """Equal, floats bit for bit (an infinite AHT, when wrap-up seconds overflow, included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_the_tally_gives_the_walks_record_at_every_step(steps: list[tuple[Any, ...]]) -> None:
    book = Book()
    for step in steps:
        book.run(step)
    book.check(START + 2 * INTERVAL_US)
    book.finalize()
    book.finalize()
    assert not book.book.tallies and not book.book.buckets


def test_wrap_seconds_sum_exactly_whatever_their_order() -> None:
    # 0.1 + 0.2 + 0.3 is 0.6000000000000001 left to right and 0.6 right to left; the record
    # takes the exact sum rounded once, so every order (and the tally) gives the same AHT
    wraps = [0.1, 0.2, 0.3]
    assert sum(wraps) != sum(reversed(wraps))
    units = [kpis.wrap_units(w) for w in wraps]
    assert kpis.units_seconds(sum(units)) == math.fsum(wraps) == 0.6
    assert kpis.units_seconds(sum(units) - units[1]) == math.fsum([0.1, 0.3])
    assert kpis.units_seconds(kpis.wrap_units(5e-324)) == 5e-324
    assert kpis.units_seconds(2 * kpis.wrap_units(1.7e308)) == math.inf
    book = Book()
    for wrap in (0.1, 0.2, 0.3):
        book.run(("offer", 0, 1, "999", None, None))
        book.run(("exit", len(book.calls) - 1, 0, 5 * US))
        book.run(("end", len(book.calls) - 1, 65 * US, wrap, "resolved"))
    book.check(START + 100 * US)
    record = book.book._record(("999", START), START + 100 * US)
    assert record["aht_seconds"] == (3 * 60 + 0.6) / 3


def test_open_intervals_of_a_hostile_feed_match_the_walk() -> None:
    # the whole engine: simulated hours with duplicates, reordering and broken lines; the live
    # state is evaluated now and then, as the worker does after its flushes
    lines = hostile(list(simulate_events(rooms=1, days=0.2, seed=23)), 23)
    engine = Engine(Settings())
    wall_us = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) * US
    book = AlertBook("north")
    compared = 0
    for number, raw in enumerate(lines):
        engine.process(raw, wall_us)
        if number % 500:
            continue
        room = engine.rooms.get("north")
        if room is None:
            continue
        engine.flush()
        live_state(room, book)
        calls = room.calls
        calls.derive()
        for key in calls.buckets:
            now = room.now_us
            assert same(calls._record(key, now), walk(calls, key, now, False))
            compared += 1
    assert compared > 50


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_sorted_ints_hold_what_a_sorted_list_holds(rng: Any) -> None:
    # thousands of values, so that chunks split and empty; few distinct ones, so many repeat
    values = SortedInts()
    plain: list[int] = []
    spread = rng.choice([5, 300, 10**9])
    for _ in range(rng.randrange(1500, 4000)):
        if plain and rng.random() < 0.3:
            value = rng.choice(plain)
            values.change(value, -1)
            plain.remove(value)
        else:
            value = rng.randrange(spread)
            values.change(value, 1)
            plain.append(value)
    plain.sort()
    assert values.values() == plain and values.size == len(plain)
    assert all(len(chunk) for chunk in values.chunks)
    if plain:
        assert values.last() == plain[-1]
        for k in {0, len(plain) // 2, len(plain) - 1, rng.randrange(len(plain))}:
            assert values.kth(k) == plain[k]
    for bound in (-1, 0, spread // 2, spread, rng.randrange(spread)):
        assert values.count_at_most(bound) == sum(1 for v in plain if v <= bound)


SCENARIOS = {
    # a later call of the same caller becomes failure demand when the earlier one is abandoned
    "abandoned_before_the_repeat": [
        ("offer", 0, 10, "999", "a", None), ("offer", 0, 100, "999", "a", None),
        ("check", 0), ("exit", 0, 1, 20 * US), ("check", 0), ("check", 3000)],
    # ... or ends unresolved; then an earlier offer of the caller arrives late
    "unresolved_then_an_earlier_offer": [
        ("offer", 1, 10, "101", "b", None), ("offer", 1, 300, "101", "b", None),
        ("exit", 0, 0, 5 * US), ("check", 900), ("end", 0, 60 * US, 1.5, "unresolved"),
        ("check", 1200), ("offer", 0, 600, "101", "b", "progress_chase"), ("check", 1300)],
    # an earlier answer and its end arrive together: the same handling time, another wrap-up
    "same_handling_other_wrap": [
        ("offer", 0, 0, "999", None, None), ("exit", 0, 0, 10 * US),
        ("end", 0, 70 * US, 1.0, "resolved"), ("check", 200), ("exit", 0, 0, 5 * US),
        ("end", 0, 65 * US, 2.0, "resolved"), ("check", 200)],
    # the exit changes kind: a callback request before the answer, then its successful attempt
    "exit_changes_kind": [
        ("offer", 0, 0, "999", None, None), ("exit", 0, 0, 50 * US), ("check", 100),
        ("exit", 0, 2, 40 * US), ("check", 100), ("attempt", 0, True), ("check", 100)],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_kind_of_change_reaches_the_tally(name: str) -> None:
    book = Book()
    for step in SCENARIOS[name]:
        book.run(step)
    book.finalize()
    book.finalize()
