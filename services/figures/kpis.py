"""The exact figures of METRICS.md as pure functions: intervals, attendance, handlers, ratios.

Times are integer epoch microseconds so that every wait is exact; seconds appear only in the
records. The stream worker and ``pacesetter report`` both build their records here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from services.contract.events import format_time, from_us

DEFINITIONS_VERSION = 1
INTERVAL_US = 15 * 60 * 1_000_000
US = 1_000_000

ANSWERED = "call.answered"
ABANDONED = "call.abandoned"
CALLBACK = "call.callback_requested"

HANDLER_STATES = ("available", "on_call", "wrap_up", "unavailable", "logged_out")
GRADES = ("immediate", "priority", "scheduled", "resolution")


def interval_start(at_us: int) -> int:
    """Start of the 15-minute interval holding ``at_us`` (aligned to the quarter hour, UTC)."""
    return at_us - at_us % INTERVAL_US


@lru_cache(maxsize=1 << 16)
def iso(us: int) -> str:
    """RFC 3339 UTC text of epoch microseconds (mostly interval bounds: remembered)."""
    return format_time(from_us(us))


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` when the denominator is 0."""
    return numerator / denominator if denominator else None


def nearest_rank(sorted_values: Sequence[int], num: int, den: int) -> int | None:
    """Nearest-rank percentile ``w[ceil(q*n)]`` with ``q = num/den``, in exact integers."""
    n = len(sorted_values)
    return sorted_values[rank_index(n, num, den)] if n else None


def rank_index(n: int, num: int, den: int) -> int:
    """Index of the nearest-rank percentile ``num/den`` among ``n > 0`` sorted values."""
    return max(1, -(-num * n // den)) - 1


def seconds(us: int | None) -> float | None:
    """Microseconds as float seconds (``None`` stays ``None``)."""
    return None if us is None else us / US


class CallView(Protocol):
    """What the interval figures need to know of one call."""

    offered_us: int
    exit_type: str | None
    exit_us: int
    end_us: int | None
    wrap_seconds: float
    callback_success: bool
    repeat: bool
    failure: bool


@dataclass(frozen=True)
class Thresholds:
    """A line's thresholds in microseconds."""

    threshold_us: int
    short_abandon_us: int
    threshold_seconds: float
    short_abandon_seconds: float

    @classmethod
    def of(cls, threshold_seconds: float, short_abandon_seconds: float) -> Thresholds:
        """Thresholds from seconds."""
        return cls(
            round(threshold_seconds * US),
            round(short_abandon_seconds * US),
            threshold_seconds,
            short_abandon_seconds,
        )


# A float's exact value is an integer multiple of 2**-1074 (the smallest subnormal), so a sum
# of wrap-up seconds kept as that integer is exact whatever the order of the additions and
# removals, and rounds once at the end: the open interval's running tally (calls.BucketTally)
# and the walk over the calls below then give the very same float.
WRAP_SCALE = 1 << 1074


def wrap_units(seconds: float) -> int:
    """The exact value of a finite float, in units of 2**-1074."""
    # seconds = mantissa * 2**exponent with 53 bits of mantissa: an integer times
    # 2**(exponent - 53), that is, times 2**(exponent + 1021) units (a shift; a subnormal's
    # low bits are zero). ``as_integer_ratio`` and dividing the 1075-bit scale by its
    # denominator cost more than the rest of a call's tally. Infinity and NaN raise, as they did.
    mantissa, exponent = math.frexp(seconds)
    whole = int(mantissa * 9007199254740992.0)  # 2**53: exact
    shift = exponent + 1021
    return whole << shift if shift >= 0 else whole >> -shift


def units_seconds(units: int) -> float:
    """A sum of :func:`wrap_units` as the nearest float (infinity beyond the largest float)."""
    try:
        return units / WRAP_SCALE  # int / int rounds correctly (to nearest, ties to even)
    except OverflowError:
        return float("inf")


def interval_record(
    room: str,
    line: str,
    start_us: int,
    calls: Iterable[CallView],
    limits: Thresholds,
    now_us: int,
    final: bool,
    max_queue_us: int,
) -> dict[str, Any]:
    """The interval record of API.md for the calls offered on ``line`` in one interval.

    This walks every call: the open intervals of the stream keep a running tally instead
    (``calls.BucketTally``, which the tests hold to this function).
    """
    offered = answered = abandoned = callbacks = in_queue = orphaned = 0
    short_abandoned = answered_within = abandoned_within = 0
    callback_successes = repeat_contacts = failure_demand = 0
    band_10 = band_60 = band_over = 0
    waits: list[int] = []
    max_wait: int | None = None
    queued_us = 0
    ended = 0
    handle_us = 0
    wrap_total = 0
    threshold = limits.threshold_us
    short = limits.short_abandon_us
    for call in calls:
        offered += 1
        if call.repeat:
            repeat_contacts += 1
            if call.failure:
                failure_demand += 1
        kind = call.exit_type
        if kind is None:
            age = now_us - call.offered_us
            if final or age >= max_queue_us:
                orphaned += 1
            else:
                in_queue += 1
                age = max(age, 0)
                if max_wait is None or age > max_wait:
                    max_wait = age
            continue
        wait = call.exit_us - call.offered_us
        queued_us += wait
        if max_wait is None or wait > max_wait:
            max_wait = wait
        if kind == ANSWERED:
            answered += 1
            waits.append(wait)
            if wait < threshold:
                answered_within += 1
            if wait < 10 * US:
                band_10 += 1
            elif wait < 60 * US:
                band_60 += 1
            else:
                band_over += 1
            if call.end_us is not None:
                ended += 1
                handle_us += call.end_us - call.exit_us
                wrap_total += wrap_units(call.wrap_seconds)
        elif kind == ABANDONED:
            abandoned += 1
            if wait < short:
                short_abandoned += 1
            if wait < threshold:
                abandoned_within += 1
        else:
            callbacks += 1
            if call.callback_success:
                callback_successes += 1
    waits.sort()
    return interval_fields(
        room, line, start_us, limits, final,
        IntervalCounts(
            offered=offered, answered=answered, abandoned=abandoned,
            short_abandoned=short_abandoned, callbacks=callbacks, in_queue=in_queue,
            orphaned=orphaned, answered_within=answered_within,
            abandoned_within=abandoned_within, band_10=band_10, band_60=band_60,
            band_over=band_over, callback_successes=callback_successes,
            repeat_contacts=repeat_contacts, failure_demand=failure_demand, ended=ended,
        ),
        nearest_rank(waits, 1, 2), nearest_rank(waits, 9, 10), sum(waits), max_wait,
        queued_us, handle_us, wrap_total,
    )


class IntervalCounts:
    """The counts of an interval record, however they were tallied."""

    __slots__ = (
        "offered", "answered", "abandoned", "short_abandoned", "callbacks", "in_queue",
        "orphaned", "answered_within", "abandoned_within", "band_10", "band_60", "band_over",
        "callback_successes", "repeat_contacts", "failure_demand", "ended",
    )  # fmt: skip

    def __init__(
        self, offered: int, answered: int, abandoned: int, short_abandoned: int,
        callbacks: int, in_queue: int, orphaned: int, answered_within: int,
        abandoned_within: int, band_10: int, band_60: int, band_over: int,
        callback_successes: int, repeat_contacts: int, failure_demand: int, ended: int,
    ):
        self.offered = offered
        self.answered = answered
        self.abandoned = abandoned
        self.short_abandoned = short_abandoned
        self.callbacks = callbacks
        self.in_queue = in_queue
        self.orphaned = orphaned
        self.answered_within = answered_within
        self.abandoned_within = abandoned_within
        self.band_10 = band_10
        self.band_60 = band_60
        self.band_over = band_over
        self.callback_successes = callback_successes
        self.repeat_contacts = repeat_contacts
        self.failure_demand = failure_demand
        self.ended = ended


def interval_fields(
    room: str,
    line: str,
    start_us: int,
    limits: Thresholds,
    final: bool,
    counts: IntervalCounts,
    p50_us: int | None,
    p90_us: int | None,
    waits_sum: int,
    max_wait: int | None,
    queued_us: int,
    handle_us: int,
    wrap_units_total: int,
) -> dict[str, Any]:
    """The interval record of API.md from its tallies (``p50_us``, ``p90_us``: answer waits)."""
    c = counts
    answered, abandoned, short_abandoned = c.answered, c.abandoned, c.short_abandoned
    answered_within, offered, ended = c.answered_within, c.offered, c.ended
    return {
        "room": room,
        "line": line,
        "interval_start": iso(start_us),
        "interval_end": iso(start_us + INTERVAL_US),
        "final": final,
        "definitions_version": DEFINITIONS_VERSION,
        "threshold_seconds": limits.threshold_seconds,
        "short_abandon_seconds": limits.short_abandon_seconds,
        "offered": offered,
        "answered": answered,
        "abandoned": abandoned,
        "short_abandoned": short_abandoned,
        "callbacks_requested": c.callbacks,
        "in_queue": c.in_queue,
        "orphaned": c.orphaned,
        "answered_within_threshold": answered_within,
        "abandoned_within_threshold": c.abandoned_within,
        "service_level": {
            "answered": ratio(answered_within, answered),
            "offered": ratio(answered_within, answered + abandoned - short_abandoned),
            "excl_early_abandons": ratio(
                answered_within, answered + abandoned - c.abandoned_within
            ),
        },
        "abandonment_rate": ratio(abandoned - short_abandoned, offered - short_abandoned),
        "asa_seconds": waits_sum / answered / US if answered else None,
        "answer_wait_p50_seconds": seconds(p50_us),
        "answer_wait_p90_seconds": seconds(p90_us),
        "max_wait_seconds": seconds(max_wait),
        # total queue time of the calls that left the queue: Erlang A's patience estimate is
        # this over the abandons (METRICS.md, "Forecasts and staffing")
        "queue_seconds": queued_us / US,
        "answer_bands": {
            "under_10s": c.band_10,
            "from_10s_to_60s": c.band_60,
            "60s_and_over": c.band_over,
        },
        "aht_seconds": (
            (handle_us / US + units_seconds(wrap_units_total)) / ended if ended else None
        ),
        "callback_successes": c.callback_successes,
        "callback_success_rate": ratio(c.callback_successes, c.callbacks),
        "repeat_contacts": c.repeat_contacts,
        "failure_demand": c.failure_demand,
        "failure_demand_rate": ratio(c.failure_demand, offered),
    }


# Attendance targets in seconds by grade, (urban, rural-or-unknown); None: no target.
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "immediate": (900.0, 1200.0),
    "priority": (3600.0, 3600.0),
    "scheduled": (172800.0, 172800.0),
    "resolution": (None, None),
}


def attendance_target_us(grade: str, area: str | None) -> int | None:
    """The grade's attendance target in microseconds (``None`` for ``resolution``)."""
    urban, other = TARGETS[grade]
    target = urban if area == "urban" else other
    return None if target is None else round(target * US)


class IncidentView(Protocol):
    """What the attendance figures need to know of one incident."""

    grade: str
    area: str | None
    clock_start_us: int
    dispatched_us: int | None
    arrived_us: int | None


def attendance_record(
    room: str, grade: str, start_us: int, incidents: Iterable[IncidentView], final: bool
) -> dict[str, Any]:
    """The attendance record of API.md for one grade and interval of incident creation."""
    created = dispatched = arrived = 0
    from_call: list[int] = []
    from_dispatch: list[int] = []
    within_call = within_dispatch = 0
    has_target = TARGETS[grade][0] is not None
    for incident in incidents:
        created += 1
        if incident.dispatched_us is not None:
            dispatched += 1
        if incident.arrived_us is None:
            continue
        arrived += 1
        target = attendance_target_us(grade, incident.area)
        clock = incident.arrived_us - incident.clock_start_us
        from_call.append(clock)
        if target is not None and clock <= target:
            within_call += 1
        if incident.dispatched_us is not None:
            clock = incident.arrived_us - incident.dispatched_us
            from_dispatch.append(clock)
            if target is not None and clock <= target:
                within_dispatch += 1
    from_call.sort()
    from_dispatch.sort()
    return {
        "room": room,
        "grade": grade,
        "interval_start": iso(start_us),
        "interval_end": iso(start_us + INTERVAL_US),
        "final": final,
        "created": created,
        "dispatched": dispatched,
        "arrived": arrived,
        "attend_from_call_mean_seconds": _mean_seconds(from_call),
        "attend_from_call_p90_seconds": seconds(nearest_rank(from_call, 9, 10)),
        "attend_from_dispatch_mean_seconds": _mean_seconds(from_dispatch),
        "attend_from_dispatch_p90_seconds": seconds(nearest_rank(from_dispatch, 9, 10)),
        "within_target_from_call": within_call if has_target else None,
        "within_target_from_dispatch": within_dispatch if has_target else None,
        # Every arrived incident's clocks, ascending: a month's mean, p90 and distribution are
        # exact from these, where the interval's own mean and p90 cannot be combined.
        "attend_from_call_seconds": [c / US for c in from_call],
        "attend_from_dispatch_seconds": [c / US for c in from_dispatch],
    }


def _mean_seconds(values: Sequence[int]) -> float | None:
    return sum(values) / len(values) / US if values else None


def first_from(timeline: list[tuple[int, int, str]], at_us: int) -> int:
    """Index of a handler's first state at or after ``at_us`` (its timeline is sorted).

    ``bisect_left(timeline, (at_us,))``, compiled to integer comparisons where ``bisect``
    compares tuples.
    """
    low, high = 0, len(timeline)
    while low < high:
        middle = (low + high) >> 1
        if timeline[middle][0] < at_us:
            low = middle + 1
        else:
            high = middle
    return low


def handler_record(
    room: str,
    start_us: int,
    timelines: Iterable[list[tuple[int, int, str]]],
    now_us: int,
    final: bool,
) -> dict[str, Any]:
    """The handler record of API.md: seconds per state inside one interval, and occupancy.

    Args:
        room: the room.
        start_us: the interval start.
        timelines: per handler, its state events ``(at_us, arrival, state)`` sorted; a state
            lasts until the next event, the latest until ``now_us``.
        now_us: the room's now.
        final: whether the interval is final.
    """
    end_us = start_us + INTERVAL_US
    # µs per state (HANDLER_STATES), as compiled integers rather than a dict's objects
    available = on_call = wrap_up = unavailable = logged_out = 0
    for timeline in timelines:
        # the state in force at the interval's start is the last one before it
        first = max(first_from(timeline, start_us) - 1, 0)
        size = len(timeline)
        for index in range(first, size):
            at_us, _seq, state = timeline[index]
            if at_us >= end_us:
                break
            until = timeline[index + 1][0] if index + 1 < size else now_us
            lo = max(at_us, start_us)
            hi = min(until, end_us)
            if hi > lo:
                if state == "available":
                    available += hi - lo
                elif state == "on_call":
                    on_call += hi - lo
                elif state == "wrap_up":
                    wrap_up += hi - lo
                elif state == "unavailable":
                    unavailable += hi - lo
                elif state == "logged_out":
                    logged_out += hi - lo
                else:
                    raise KeyError(state)  # as the dict of HANDLER_STATES would
    totals = dict(zip(HANDLER_STATES, (available, on_call, wrap_up, unavailable, logged_out),
                      strict=True))
    busy = totals["on_call"] + totals["wrap_up"]
    return {
        "room": room,
        "interval_start": iso(start_us),
        "interval_end": iso(end_us),
        "final": final,
        "seconds": {state: totals[state] / US for state in HANDLER_STATES},
        "occupancy": ratio(busy, busy + totals["available"]),
    }
