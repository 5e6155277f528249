"""Independent batch oracle of METRICS.md / DEFINITIONS.md, for the stream engine's tests.

Written from the specifications only (METRICS.md, EVENTS.md, API.md,
services/figures/DEFINITIONS.md, services/kafka/TOPICS.md); it shares nothing with the
production metric code except the event contract
(``services.contract.events``), which is tested on its own.

It is deliberately plain rather than fast, in two steps:

1. **Arrival pass** (inherently sequential): events are taken one by one in arrival order to
   decide validity, duplicates, the room's watermark, too-late events, waiting children,
   orphans and conflicts. What survives is a set of *accepted* events.
2. **Batch figures**: every record is then computed from plain lists of the accepted events,
   straight from the definitions (sort, filter, count), with "now" = the room's final
   watermark (replay mode).

Times are integer epoch microseconds throughout; a duration becomes seconds only at the end
(``us / 1e6``). Means are the exactly rounded sum of the seconds (``math.fsum``) over the count;
percentiles are nearest rank with integer ceilings; nothing is rounded.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.contract.events import Event, InvalidEvent, decode_message, parse_event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000
INTERVAL_US = 15 * 60 * US

CALL_EXITS = ("call.answered", "call.abandoned", "call.callback_requested")
CALL_CHILDREN = (*CALL_EXITS, "call.ended", "callback.attempted")
INCIDENT_CHILDREN = ("incident.dispatched", "incident.arrived", "incident.closed")
HANDLER_STATES = ("available", "on_call", "wrap_up", "unavailable", "logged_out")

DEFAULT_PROFILE = {"threshold_seconds": 60, "short_abandon_seconds": 5}
BUILTIN_PROFILES = {"999": {"threshold_seconds": 10, "short_abandon_seconds": 5}}

# Attendance targets in seconds (DEFINITIONS.md, "Attendance"); None = no target.
TARGETS: dict[str, dict[str | None, int | None]] = {
    "immediate": {"urban": 900, "rural": 1200, None: 1200},
    "priority": {"urban": 3600, "rural": 3600, None: 3600},
    "scheduled": {"urban": 172800, "rural": 172800, None: 172800},
    "resolution": {"urban": None, "rural": None, None: None},
}


# ---------------------------------------------------------------------------------------------
# Small exact helpers
# ---------------------------------------------------------------------------------------------


def to_us(at: datetime) -> int:
    """Epoch microseconds of an aware datetime, exactly."""
    return (at - EPOCH) // timedelta(microseconds=1)


def seconds_to_us(seconds: float) -> int:
    """A configured duration in seconds as whole microseconds."""
    return round(seconds * US)


def interval_of(at_us: int) -> int:
    """Start (epoch µs) of the 15-minute UTC interval holding ``at_us``."""
    return at_us - at_us % INTERVAL_US


def iso(us: int) -> str:
    """RFC 3339 UTC text with ``Z``; a fractional part only when there is one."""
    at = EPOCH + timedelta(microseconds=us)
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    if at.microsecond:
        text += f".{at.microsecond:06d}".rstrip("0")
    return text + "Z"


def secs(us: int) -> float:
    """A duration in microseconds as float seconds."""
    return us / 1e6


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` when the denominator is 0."""
    return None if denominator == 0 else numerator / denominator


def mean(values: list[float]) -> float | None:
    """Exactly rounded sum over count; ``None`` for no values."""
    return math.fsum(values) / len(values) if values else None


def nearest_rank(sorted_us: list[int], tenths: int) -> float | None:
    """Nearest-rank percentile ``w[⌈q·n⌉]`` (1-based) with ``q = tenths / 10``, in seconds."""
    n = len(sorted_us)
    if n == 0:
        return None
    rank = (tenths * n + 9) // 10  # exact integer ceiling of q·n
    return secs(sorted_us[rank - 1])


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrived:
    """A valid event with its arrival rank (global, 0-based) and exact time."""

    seq: int
    event: Event
    at_us: int


@dataclass
class OracleResult:
    """Everything the oracle computes, keyed as the stream publishes it (TOPICS.md)."""

    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    attendance: dict[str, dict[str, Any]] = field(default_factory=dict)
    handlers: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, str] = field(default_factory=dict)
    # Children whose parent has not come yet and whose own interval is still open at the end.
    waiting: int = 0
    # Every accepted call with its derived state (exit, end), for figures finer than intervals.
    calls: list[_Call] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Step 1: the arrival pass
# ---------------------------------------------------------------------------------------------


@dataclass
class _Arrivals:
    """State of the sequential arrival pass."""

    grace_us: int
    horizon_us: int
    rejected: Counter[str] = field(default_factory=Counter)
    seen: set[tuple[str, str]] = field(default_factory=set)
    watermark: dict[str, int] = field(default_factory=dict)
    calls: dict[tuple[str, str], Arrived] = field(default_factory=dict)
    call_events: dict[tuple[str, str], list[Arrived]] = field(
        default_factory=lambda: defaultdict(list)
    )
    incidents: dict[tuple[str, str], Arrived] = field(default_factory=dict)
    incident_events: dict[tuple[str, str], list[Arrived]] = field(
        default_factory=lambda: defaultdict(list)
    )
    handler_events: dict[str, list[Arrived]] = field(default_factory=lambda: defaultdict(list))
    # room -> children waiting for an unknown parent, in arrival order
    waiting: dict[str, list[Arrived]] = field(default_factory=lambda: defaultdict(list))

    def is_final(self, room: str, start_us: int, horizon_us: int) -> bool:
        """Whether interval ``start_us`` is final at the room's current watermark."""
        now = self.watermark.get(room)
        return now is not None and now >= start_us + INTERVAL_US + horizon_us

    def arrive(self, item: Arrived) -> None:
        """Take one valid event in arrival order."""
        ev = item.event
        room = ev.room
        if (room, ev.id) in self.seen:
            self.rejected["duplicate"] += 1
            return
        self.seen.add((room, ev.id))
        # DEFINITIONS.md 4: the watermark includes the arriving event, updated before judging.
        self.watermark[room] = max(self.watermark.get(room, item.at_us), item.at_us)
        self.judge(item)
        self.orphan_expired(room)

    def judge(self, item: Arrived) -> None:
        """Accept or reject one event against the room's current state."""
        ev = item.event
        room = ev.room
        if ev.type == "call.offered":
            key = (room, ev.call or "")
            if self.is_final(room, interval_of(item.at_us), self.grace_us):
                self.rejected["too_late"] += 1
            elif key in self.calls:
                self.rejected["conflict"] += 1
            else:
                self.calls[key] = item
                self.adopt(room, "call", key[1])
        elif ev.type in CALL_CHILDREN:
            parent = self.calls.get((room, ev.call or ""))
            if parent is None:
                self.waiting[room].append(item)
            elif self.is_final(room, interval_of(parent.at_us), self.grace_us):
                self.rejected["too_late"] += 1
            else:
                self.call_events[(room, ev.call or "")].append(item)
        elif ev.type == "incident.created":
            key = (room, ev.incident or "")
            if self.is_final(room, interval_of(item.at_us), self.horizon_us):
                self.rejected["too_late"] += 1
            elif key in self.incidents:
                self.rejected["conflict"] += 1
            else:
                self.incidents[key] = item
                self.adopt(room, "incident", key[1])
        elif ev.type in INCIDENT_CHILDREN:
            parent = self.incidents.get((room, ev.incident or ""))
            if parent is None:
                self.waiting[room].append(item)
            elif self.is_final(room, interval_of(parent.at_us), self.horizon_us):
                # DEFINITIONS.md 6: a closure changes no attendance figure, so it is never late
                if ev.type != "incident.closed":
                    self.rejected["too_late"] += 1
            else:
                self.incident_events[(room, ev.incident or "")].append(item)
        elif ev.type == "handler.state":
            if self.is_final(room, interval_of(item.at_us), self.grace_us):
                self.rejected["too_late"] += 1
            else:
                self.handler_events[room].append(item)
        else:  # pragma: no cover - the contract admits no other type
            raise AssertionError(ev.type)

    def adopt(self, room: str, kind: str, ident: str) -> None:
        """Judge a new parent's waiting children, in arrival order, as if just arrived."""
        mine = [w for w in self.waiting[room] if _parent_of(w.event) == (kind, ident)]
        self.waiting[room] = [w for w in self.waiting[room] if _parent_of(w.event) != (kind, ident)]
        for child in mine:
            self.judge(child)

    def orphan_expired(self, room: str) -> None:
        """Dead-letter waiting children whose own interval has become final."""
        keep = []
        for child in self.waiting[room]:
            kind, _ = _parent_of(child.event)
            horizon = self.horizon_us if kind == "incident" else self.grace_us
            if self.is_final(room, interval_of(child.at_us), horizon):
                self.rejected["orphan"] += 1
            else:
                keep.append(child)
        self.waiting[room] = keep


def _parent_of(ev: Event) -> tuple[str, str]:
    """``("call", id)`` or ``("incident", id)`` of a child event."""
    if ev.type in CALL_CHILDREN:
        return "call", ev.call or ""
    return "incident", ev.incident or ""


# ---------------------------------------------------------------------------------------------
# Step 2: derived state and figures
# ---------------------------------------------------------------------------------------------


def _first(items: list[Arrived]) -> Arrived | None:
    """The first item by ``(at, arrival)``."""
    return min(items, key=lambda a: (a.at_us, a.seq), default=None)


@dataclass
class _Call:
    """A call's derived state (DEFINITIONS.md, "A call's derived state")."""

    offered: Arrived
    exit: Arrived | None
    end: Arrived | None
    callback_success: bool
    rejections: Counter[str]

    @property
    def room(self) -> str:
        return self.offered.event.room

    @property
    def line(self) -> str:
        return self.offered.event.line or ""

    @property
    def exit_type(self) -> str | None:
        return self.exit.event.type if self.exit else None

    @property
    def wait_us(self) -> int | None:
        return self.exit.at_us - self.offered.at_us if self.exit else None


def derive_call(offered: Arrived, children: list[Arrived]) -> _Call:
    """Exit, end, callback success and derivation rejections of one call."""
    rejections: Counter[str] = Counter()
    exits = [c for c in children if c.event.type in CALL_EXITS]
    negative = [c for c in exits if c.at_us < offered.at_us]
    rejections["negative_wait"] += len(negative)
    candidates = [c for c in exits if c.at_us >= offered.at_us]
    exit_ = _first(candidates)
    rejections["conflicting_exit"] += max(len(candidates) - 1, 0)

    ends = [c for c in children if c.event.type == "call.ended"]
    end = None
    if exit_ is not None and exit_.event.type == "call.answered":
        end = _first([c for c in ends if c.at_us >= exit_.at_us])
    rejections["invalid_end"] += len(ends) - (1 if end is not None else 0)

    attempts = [c for c in children if c.event.type == "callback.attempted"]
    is_callback = exit_ is not None and exit_.event.type == "call.callback_requested"
    success = is_callback and any(a.event.success for a in attempts)
    if not is_callback:
        rejections["invalid_callback"] += len(attempts)
    return _Call(offered, exit_, end, success, +rejections)


def previous_contact(call: _Call, same_caller: list[_Call], window_us: int) -> _Call | None:
    """The same caller's accepted call with the largest ``offered.at`` in ``[at − W, at)``."""
    at = call.offered.at_us
    earlier = [p for p in same_caller if at - window_us <= p.offered.at_us < at]
    return max(earlier, key=lambda p: (p.offered.at_us, p.offered.seq), default=None)


def is_failure_demand(call: _Call, previous: _Call) -> bool:
    """Failure demand of a repeat contact, as of its own ``offered.at``."""
    at = call.offered.at_us
    if call.offered.event.reason == "progress_chase":
        return True
    if previous.exit is not None and previous.exit_type == "call.abandoned":
        if previous.exit.at_us <= at:
            return True
    end = previous.end
    return end is not None and end.event.outcome == "unresolved" and end.at_us <= at


def interval_record(
    room: str,
    line: str,
    start_us: int,
    calls: list[_Call],
    *,
    now_us: int,
    final: bool,
    profile: dict[str, Any],
    max_queue_us: int,
    repeat: set[int],
    failure: set[int],
) -> dict[str, Any]:
    """One interval record (API.md) from the calls offered in it on the line."""
    threshold_us = seconds_to_us(profile["threshold_seconds"])
    short_us = seconds_to_us(profile["short_abandon_seconds"])

    def no_exit_is_orphaned(c: _Call) -> bool:
        return final or now_us - c.offered.at_us >= max_queue_us

    answered = [c for c in calls if c.exit_type == "call.answered"]
    abandoned = [c for c in calls if c.exit_type == "call.abandoned"]
    callbacks = [c for c in calls if c.exit_type == "call.callback_requested"]
    queued = [c for c in calls if c.exit is None and not no_exit_is_orphaned(c)]
    orphaned = [c for c in calls if c.exit is None and no_exit_is_orphaned(c)]

    answer_waits = sorted(c.wait_us for c in answered if c.wait_us is not None)
    abandon_waits = [c.wait_us for c in abandoned if c.wait_us is not None]
    short = sum(1 for w in abandon_waits if w < short_us)
    answered_within = sum(1 for w in answer_waits if w < threshold_us)
    abandoned_within = sum(1 for w in abandon_waits if w < threshold_us)

    exited_waits = [c.wait_us for c in calls if c.wait_us is not None]
    queue_seconds = math.fsum(secs(w) for w in exited_waits)
    if not final:
        exited_waits += [now_us - c.offered.at_us for c in queued]
    handling = [
        secs(c.end.at_us - c.exit.at_us) + (c.end.event.wrap_seconds or 0.0)
        for c in answered
        if c.end is not None and c.exit is not None
    ]
    n_offered = len(calls)
    n_answered = len(answered)
    n_abandoned = len(abandoned)
    n_callbacks = len(callbacks)
    successes = sum(1 for c in callbacks if c.callback_success)
    n_repeat = sum(1 for c in calls if c.offered.seq in repeat)
    n_failure = sum(1 for c in calls if c.offered.seq in failure)
    return {
        "room": room,
        "line": line,
        "interval_start": iso(start_us),
        "interval_end": iso(start_us + INTERVAL_US),
        "final": final,
        "definitions_version": 1,
        "threshold_seconds": profile["threshold_seconds"],
        "short_abandon_seconds": profile["short_abandon_seconds"],
        "offered": n_offered,
        "answered": n_answered,
        "abandoned": n_abandoned,
        "short_abandoned": short,
        "callbacks_requested": n_callbacks,
        "in_queue": len(queued),
        "orphaned": len(orphaned),
        "answered_within_threshold": answered_within,
        "abandoned_within_threshold": abandoned_within,
        "service_level": {
            "answered": ratio(answered_within, n_answered),
            "offered": ratio(answered_within, n_answered + n_abandoned - short),
            "excl_early_abandons": ratio(
                answered_within, n_answered + n_abandoned - abandoned_within
            ),
        },
        "abandonment_rate": ratio(n_abandoned - short, n_offered - short),
        "asa_seconds": mean([secs(w) for w in answer_waits]),
        "answer_wait_p50_seconds": nearest_rank(answer_waits, 5),
        "answer_wait_p90_seconds": nearest_rank(answer_waits, 9),
        "max_wait_seconds": secs(max(exited_waits)) if exited_waits else None,
        "queue_seconds": queue_seconds,
        "answer_bands": {
            "under_10s": sum(1 for w in answer_waits if w < 10 * US),
            "from_10s_to_60s": sum(1 for w in answer_waits if 10 * US <= w < 60 * US),
            "60s_and_over": sum(1 for w in answer_waits if w >= 60 * US),
        },
        "aht_seconds": mean(handling),
        "callback_successes": successes,
        "callback_success_rate": ratio(successes, n_callbacks),
        "repeat_contacts": n_repeat,
        "failure_demand": n_failure,
        "failure_demand_rate": ratio(n_failure, n_offered),
    }


@dataclass
class _Incident:
    """An incident's derived state."""

    created: Arrived
    dispatched: Arrived | None
    arrived: Arrived | None


def attendance_record(
    room: str,
    grade: str,
    start_us: int,
    incidents: list[_Incident],
    calls: dict[tuple[str, str], Arrived],
    *,
    final: bool,
) -> dict[str, Any]:
    """One attendance record (API.md) from the incidents of a grade created in the interval."""
    from_call: list[tuple[int, int | None]] = []  # (clock µs, target µs)
    from_dispatch: list[tuple[int, int | None]] = []
    for inc in incidents:
        if inc.arrived is None:
            continue
        created = inc.created.event
        target_s = TARGETS[grade][created.area]
        target = None if target_s is None else target_s * US
        linked = calls.get((room, created.call)) if created.call else None
        start = linked.at_us if linked is not None else inc.created.at_us
        from_call.append((inc.arrived.at_us - start, target))
        if inc.dispatched is not None:
            from_dispatch.append((inc.arrived.at_us - inc.dispatched.at_us, target))

    def within(clocks: list[tuple[int, int | None]]) -> int | None:
        if TARGETS[grade][None] is None:
            return None
        return sum(1 for clock, target in clocks if target is not None and clock <= target)

    call_us = sorted(c for c, _ in from_call)
    dispatch_us = sorted(c for c, _ in from_dispatch)
    return {
        "room": room,
        "grade": grade,
        "interval_start": iso(start_us),
        "interval_end": iso(start_us + INTERVAL_US),
        "final": final,
        "created": len(incidents),
        "dispatched": sum(1 for i in incidents if i.dispatched is not None),
        "arrived": sum(1 for i in incidents if i.arrived is not None),
        "attend_from_call_mean_seconds": mean([secs(c) for c in call_us]),
        "attend_from_call_p90_seconds": nearest_rank(call_us, 9),
        "attend_from_dispatch_mean_seconds": mean([secs(c) for c in dispatch_us]),
        "attend_from_dispatch_p90_seconds": nearest_rank(dispatch_us, 9),
        "within_target_from_call": within(from_call),
        "within_target_from_dispatch": within(from_dispatch),
        "attend_from_call_seconds": [secs(c) for c in call_us],
        "attend_from_dispatch_seconds": [secs(c) for c in dispatch_us],
    }


def handler_records(
    room: str, events: list[Arrived], *, now_us: int, grace_us: int
) -> dict[str, dict[str, Any]]:
    """Handler records (API.md) for every interval from the first state up to now's."""
    per_interval: dict[int, Counter[str]] = defaultdict(Counter)  # start -> state -> µs
    by_handler: dict[str, list[Arrived]] = defaultdict(list)
    for item in events:
        by_handler[item.event.handler or ""].append(item)
    for states in by_handler.values():
        states.sort(key=lambda a: (a.at_us, a.seq))
        ends = [s.at_us for s in states[1:]] + [now_us]
        for state, seg_end in zip(states, ends, strict=True):
            seg_start = state.at_us
            start = interval_of(seg_start)
            while start < seg_end:
                overlap = min(seg_end, start + INTERVAL_US) - max(seg_start, start)
                if overlap > 0:
                    per_interval[start][state.event.state or ""] += overlap
                start += INTERVAL_US
    records: dict[str, dict[str, Any]] = {}
    first = interval_of(min(a.at_us for a in events))
    for start in range(first, interval_of(now_us) + 1, INTERVAL_US):
        spent = per_interval.get(start, Counter())
        busy = spent["on_call"] + spent["wrap_up"]
        records[f"{room}|handlers|{iso(start)}"] = {
            "room": room,
            "interval_start": iso(start),
            "interval_end": iso(start + INTERVAL_US),
            "final": now_us >= start + INTERVAL_US + grace_us,
            "seconds": {state: secs(spent[state]) for state in HANDLER_STATES},
            "occupancy": ratio(busy, spent["available"] + busy),
        }
    return records


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def compute(
    lines: Iterable[bytes],
    *,
    grace_seconds: float = 7200,
    repeat_window_seconds: float = 7 * 86400,
    max_queue_seconds: float = 3600,
    max_future_seconds: float = 86400,
    attendance_horizon_seconds: float = 50 * 3600,
    profiles: dict[str, dict[str, Any]] | None = None,
    wall_clock: datetime | None = None,
) -> OracleResult:
    """Compute every record of a JSONL event stream (arrival order), in replay mode.

    Args:
        lines: JSONL lines as bytes; a line may hold one event or a batch (JSON array) of one
            room's events. Blank lines are skipped.
        grace_seconds: how long after its end an interval stays open.
        repeat_window_seconds: the look-back window ``W`` for repeat contacts.
        max_queue_seconds: a call queued this long without an exit is orphaned.
        max_future_seconds: events further than this ahead of ``wall_clock`` are invalid.
        attendance_horizon_seconds: how long after its end an attendance record stays open.
        profiles: per-line overrides of ``threshold_seconds`` / ``short_abandon_seconds``
            (key ``"*"`` for every line without its own entry).
        wall_clock: the clock for the ``max_future_seconds`` rule only (default: now).

    Returns:
        The records keyed as on ``pacesetter.intervals``, rejection counts by reason, each
        room's final watermark and the number of children still waiting for their parent.
    """
    clock = wall_clock if wall_clock is not None else datetime.now(UTC)
    grace_us = seconds_to_us(grace_seconds)
    state = _Arrivals(grace_us=grace_us, horizon_us=seconds_to_us(attendance_horizon_seconds))

    seq = 0
    for raw in lines:
        stripped = raw.strip()
        if not stripped:
            continue
        try:
            values = decode_message(stripped)
        except InvalidEvent as exc:  # malformed JSON or a batch mixing rooms: rejected whole
            state.rejected[exc.reason] += 1
            continue
        for value in values:
            try:
                event = parse_event(
                    value, now_us=to_us(clock), max_future_seconds=max_future_seconds
                )
            except InvalidEvent as exc:
                state.rejected[exc.reason] += 1
                continue
            state.arrive(Arrived(seq, event, to_us(event.at)))
            seq += 1
    for room in state.waiting:  # a no-op: the watermark last moved on each room's last event
        state.orphan_expired(room)

    result = OracleResult(watermarks={room: iso(w) for room, w in state.watermark.items()})
    rejected = state.rejected

    # Calls, their derived state, repeat contacts and failure demand.
    calls = [derive_call(o, state.call_events.get(key, [])) for key, o in state.calls.items()]
    result.calls = calls
    by_caller: dict[tuple[str, str], list[_Call]] = defaultdict(list)
    for call in calls:
        if call.offered.event.caller is not None:
            by_caller[(call.room, call.offered.event.caller)].append(call)
    repeat: set[int] = set()
    failure: set[int] = set()
    window_us = seconds_to_us(repeat_window_seconds)
    for call in calls:
        caller = call.offered.event.caller
        if caller is None:
            continue
        previous = previous_contact(call, by_caller[(call.room, caller)], window_us)
        if previous is not None:
            repeat.add(call.offered.seq)
            if is_failure_demand(call, previous):
                failure.add(call.offered.seq)

    groups: dict[tuple[str, str, int], list[_Call]] = defaultdict(list)
    for call in calls:
        groups[(call.room, call.line, interval_of(call.offered.at_us))].append(call)
    for (room, line, start), members in sorted(groups.items()):
        now_us = state.watermark[room]
        final = now_us >= start + INTERVAL_US + grace_us
        if final:  # derivation verdicts are counted once the call's interval is final
            for call in members:
                rejected.update(call.rejections)
        profile = dict(DEFAULT_PROFILE)
        profile.update(BUILTIN_PROFILES.get(line, {}))
        profile.update((profiles or {}).get(line, (profiles or {}).get("*", {})))
        result.intervals[f"{room}|{line}|{iso(start)}"] = interval_record(
            room,
            line,
            start,
            members,
            now_us=now_us,
            final=final,
            profile=profile,
            max_queue_us=seconds_to_us(max_queue_seconds),
            repeat=repeat,
            failure=failure,
        )

    # Incidents and attendance.
    by_grade: dict[tuple[str, str, int], list[_Incident]] = defaultdict(list)
    for key, created in state.incidents.items():
        children = state.incident_events.get(key, [])
        incident = _Incident(
            created,
            _first([c for c in children if c.event.type == "incident.dispatched"]),
            _first([c for c in children if c.event.type == "incident.arrived"]),
        )
        grade = created.event.grade or ""
        by_grade[(key[0], grade, interval_of(created.at_us))].append(incident)
    horizon_us = seconds_to_us(attendance_horizon_seconds)
    for (room, grade, start), incidents in sorted(by_grade.items()):
        final = state.watermark[room] >= start + INTERVAL_US + horizon_us
        result.attendance[f"{room}|grade:{grade}|{iso(start)}"] = attendance_record(
            room, grade, start, incidents, state.calls, final=final
        )

    # Handlers.
    for room, events in sorted(state.handler_events.items()):
        if events:
            result.handlers.update(
                handler_records(room, events, now_us=state.watermark[room], grace_us=grace_us)
            )

    result.rejected = {reason: n for reason, n in sorted(rejected.items()) if n}
    result.waiting = sum(len(w) for w in state.waiting.values())
    return result
