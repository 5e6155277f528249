"""The room state machine: applies events idempotently and derives every figure of METRICS.md.

State is *records keyed by identity* (calls, incidents, handler timelines, seen event ids);
figures are derived from the records, never counted on the fly, so applying an event twice
changes nothing and a worker can rebuild a room exactly by replaying its events. The choices
METRICS.md leaves open are pinned down in services/figures/DEFINITIONS.md.
"""

from __future__ import annotations

import heapq
import logging
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.contract.events import (
    ROOM_RE,
    Event,
    InvalidEvent,
    decode_batch,
    decode_message,
    parse_event,
)
from services.contract.settings import Settings
from services.figures import kpis
from services.figures.kpis import (
    ABANDONED,
    ANSWERED,
    CALLBACK,
    INTERVAL_US,
    US,
    interval_start,
    iso,
)
from services.kafka.ingest import redact

log = logging.getLogger(__name__)

CALL_CHILDREN = frozenset(
    {ANSWERED, ABANDONED, CALLBACK, "call.ended", "callback.attempted"}
)
INCIDENT_CHILDREN = frozenset({"incident.dispatched", "incident.arrived", "incident.closed"})
BUCKETS_SECONDS = (1, 5, 10, 20, 30, 60, 120, 300, 600)
# How long event ids are remembered at least (by event time): longer than the attendance
# horizon, so a duplicate is told from a too-late event wherever it could still change a figure.
SEEN_GENERATION_US = 3 * 86400 * US


class Child:
    """A call or incident event kept on its parent (or waiting for it)."""

    __slots__ = ("event", "seq", "at_us")

    def __init__(self, event: Event, seq: int):
        self.event = event
        self.seq = seq
        self.at_us = event.at_us


class Call:
    """One offered call: its events and the state derived from them."""

    __slots__ = (
        "id", "line", "offered_us", "start", "caller", "reason", "seq", "event",
        "exits", "ends", "attempts", "final",
        "exit_type", "exit_us", "exit_seq", "end_us", "wrap_seconds", "outcome",
        "callback_success", "repeat", "failure",
    )  # fmt: skip

    def __init__(self, event: Event, seq: int):
        self.id: str = event.call or ""
        self.line: str = event.line or ""
        self.offered_us = event.at_us
        self.start = interval_start(event.at_us)
        self.caller = event.caller
        self.reason = event.reason
        self.seq = seq
        self.event: Event | None = event
        self.exits: list[Child] = []
        self.ends: list[Child] = []
        self.attempts: list[Child] = []
        self.final = False
        self.exit_type: str | None = None
        self.exit_us = 0
        self.exit_seq = 0
        self.end_us: int | None = None
        self.wrap_seconds = 0.0
        self.outcome: str | None = None
        self.callback_success = False
        self.repeat = False
        self.failure = False

    def derive_own(self) -> None:
        """Exit, end and callback success from this call's own events (DEFINITIONS.md)."""
        best: Child | None = None
        for child in self.exits:
            if child.at_us >= self.offered_us and (
                best is None or (child.at_us, child.seq) < (best.at_us, best.seq)
            ):
                best = child
        if best is None:
            self.exit_type, self.exit_us, self.exit_seq = None, 0, 0
        else:
            self.exit_type, self.exit_us, self.exit_seq = best.event.type, best.at_us, best.seq
        end: Child | None = None
        if self.exit_type == ANSWERED:
            for child in self.ends:
                if child.at_us >= self.exit_us and (
                    end is None or (child.at_us, child.seq) < (end.at_us, end.seq)
                ):
                    end = child
        if end is None:
            self.end_us, self.wrap_seconds, self.outcome = None, 0.0, None
        else:
            self.end_us = end.at_us
            self.wrap_seconds = end.event.wrap_seconds or 0.0
            self.outcome = end.event.outcome
        self.callback_success = self.exit_type == CALLBACK and any(
            c.event.success for c in self.attempts
        )

    def rejected_children(self) -> Iterator[tuple[str, Child, str]]:
        """The events of this call that do not count, with reason and explanation."""
        for child in self.exits:
            if child.at_us < self.offered_us:
                yield "negative_wait", child, (
                    f"at: {child.event.at_text} is before the call was offered "
                    f"({iso(self.offered_us)}): the wait would be negative"
                )
            elif child.seq != self.exit_seq:
                yield "conflicting_exit", child, (
                    f"type: call {self.id} already left the queue by {self.exit_type} at "
                    f"{iso(self.exit_us)}; the first exit stands"
                )
        for child in self.ends:
            if self.exit_type != ANSWERED:
                yield "invalid_end", child, f"call: call {self.id} was never answered"
            elif child.at_us < self.exit_us:
                yield "invalid_end", child, f"at: call {self.id} ended before it was answered"
            elif child.at_us != self.end_us or child.event.outcome != self.outcome:
                yield "invalid_end", child, f"call: call {self.id} had already ended"
        if self.exit_type != CALLBACK:
            for child in self.attempts:
                yield "invalid_callback", child, (
                    f"call: call {self.id} did not request a callback"
                )

    def has_rejected(self) -> bool:
        """Whether any of this call's events does not count (``rejected_children`` says which).

        The common case, one exit, at most one end and no stray callback attempt, is told
        without walking them.
        """
        exits, ends = self.exits, self.ends
        return (
            len(exits) > 1 or (len(exits) == 1 and exits[0].seq != self.exit_seq)
            or len(ends) > 1 or (len(ends) == 1 and ends[0].at_us != self.end_us)
            or (bool(self.attempts) and self.exit_type != CALLBACK)
        )

    def compact(self) -> None:
        """Drop what a final call no longer needs (its figures are fixed)."""
        self.final = True
        self.event = None
        self.exits = self.ends = self.attempts = []


class Incident:
    """One incident: creation, first dispatch and arrival, closure."""

    __slots__ = ("id", "grade", "area", "created_us", "start", "call_id", "seq",
                 "dispatches", "arrivals", "closures", "final", "clock_start_us",
                 "dispatched_us", "arrived_us", "closed_us")  # fmt: skip

    def __init__(self, event: Event, seq: int):
        self.id: str = event.incident or ""
        self.grade: str = event.grade or "resolution"
        self.area = event.area
        self.created_us = event.at_us
        self.start = interval_start(event.at_us)
        self.call_id = event.call
        self.seq = seq
        self.dispatches: list[tuple[int, int]] = []
        self.arrivals: list[tuple[int, int]] = []
        self.closures: list[tuple[int, int]] = []
        self.final = False
        self.clock_start_us = event.at_us
        self.dispatched_us: int | None = None
        self.arrived_us: int | None = None
        self.closed_us: int | None = None

    def derive(self, calls: dict[str, Call]) -> None:
        """First dispatch, arrival and closure; the clock starts at the linked call."""
        linked = calls.get(self.call_id) if self.call_id else None
        self.clock_start_us = linked.offered_us if linked is not None else self.created_us
        self.dispatched_us = min(self.dispatches)[0] if self.dispatches else None
        self.arrived_us = min(self.arrivals)[0] if self.arrivals else None
        self.closed_us = min(self.closures)[0] if self.closures else None


@dataclass
class DeadLetter:
    """A rejected event, for the dead-letter topic."""

    reason: str
    error: str
    room: str | None
    event_id: str | None
    type: str | None
    raw: bytes
    source: dict[str, Any] | None = None

    def to_dict(self, rejected_at_us: int) -> dict[str, Any]:
        """The dead-letter message value (TOPICS.md)."""
        return {
            "reason": self.reason,
            "error": self.error,
            "room": self.room,
            "event_id": self.event_id,
            "type": self.type,
            "raw": redact(self.raw).decode("utf-8", "replace"),
            "source": self.source,
            "rejected_at": iso(rejected_at_us),
        }


@dataclass
class Config:
    """The settings a room needs, in microseconds."""

    grace_us: int
    repeat_window_us: int
    max_queue_us: int
    max_future_seconds: float
    live_lag_us: int
    attendance_horizon_us: int
    limits: Callable[[str], kpis.Thresholds]
    settings: Settings

    @classmethod
    def of(cls, settings: Settings) -> Config:
        """Config from settings."""
        cache: dict[str, kpis.Thresholds] = {}

        def limits(line: str) -> kpis.Thresholds:
            found = cache.get(line)
            if found is None:
                profile = settings.profile(line)
                found = cache[line] = kpis.Thresholds.of(
                    profile.threshold_seconds, profile.short_abandon_seconds
                )
            return found

        return cls(
            grace_us=round(settings.grace_seconds * US),
            repeat_window_us=round(settings.repeat_window_seconds * US),
            max_queue_us=round(settings.max_queue_seconds * US),
            max_future_seconds=settings.max_future_seconds,
            live_lag_us=round(settings.live_lag_seconds * US),
            attendance_horizon_us=round(settings.attendance_horizon_seconds * US),
            limits=limits,
            settings=settings,
        )


@dataclass
class Output:
    """What changed: records to publish and dead letters to write."""

    records: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Room:
    """The state of one control room."""

    def __init__(self, name: str, config: Config):
        self.name = name
        self.config = config
        self.seq = 0
        # Event ids in two generations, rotated as the watermark passes SEEN_GENERATION_US:
        # ids are remembered for at least that long, never more than twice that.
        self.seen: set[str] = set()
        self.seen_before: set[str] = set()
        self.seen_rotated_us: int | None = None
        self.watermark_us: int | None = None
        self.live = False
        self.wall_us = 0
        self.closed_us = -(1 << 62)  # intervals ending at or before this are final
        self.inc_closed_us = -(1 << 62)
        self.calls: dict[str, Call] = {}
        self.buckets: dict[tuple[str, int], list[Call]] = {}
        self.open_starts: list[int] = []  # heap of starts of open call buckets
        self.open_start_set: set[int] = set()
        self.callers: dict[str, list[tuple[int, int, Call]]] = {}
        self.offers: deque[Call] = deque()  # accepted calls in arrival order, for pruning
        self.pending: dict[tuple[str, str], list[Child]] = {}
        # (deadline, seq, id) of waiting children, for calls and for incidents
        self.pending_heaps: dict[str, list[tuple[int, int, str]]] = {"c": [], "i": []}
        self.pruned_at = -(1 << 62)
        self.expire_due = False
        self.incidents: dict[str, Incident] = {}
        self.inc_buckets: dict[tuple[str, int], list[Incident]] = {}
        self.inc_open_starts: list[int] = []
        self.inc_open_set: set[int] = set()
        self.awaiting: dict[str, Incident] = {}  # created, not dispatched, not closed
        self.call_incidents: dict[str, list[Incident]] = {}
        self.handlers: dict[str, list[tuple[int, int, str]]] = {}
        self.handler_first_start: int | None = None
        self.handler_final_upto: int | None = None  # next handler interval start not yet final
        self.handler_dirty_from: int | None = None
        self.handler_emitted_upto: int | None = None
        self.handler_emitted_now: int | None = None
        self.dirty_calls: set[Call] = set()
        self.dirty_buckets: set[tuple[str, int]] = set()
        # for the live view: calls with no exit by line, and per open bucket its summary
        self.queued: dict[str, set[Call]] = {}
        self.stats_dirty: set[tuple[str, int]] = set()
        self.bucket_stats: dict[tuple[str, int], BucketStats] = {}
        self.dirty_incidents: set[Incident] = set()
        self.dirty_inc_buckets: set[tuple[str, int]] = set()
        self.lines: set[str] = set()
        self.events_total: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.final_summaries: dict[str, list[tuple[int, int, int, int]]] = {}
        self.final_totals: dict[str, dict[str, Any]] = {}
        self.lag_us = 0
        self.out = Output()

    # ------------------------------------------------------------------ time

    @property
    def now_us(self) -> int:
        """Now: the wall clock for a live room, the watermark for a replayed one."""
        if self.watermark_us is None:
            return self.wall_us
        return self.wall_us if self.live else self.watermark_us

    def is_final(self, start_us: int) -> bool:
        """Whether the call or handler interval starting at ``start_us`` is final."""
        return start_us + INTERVAL_US <= self.closed_us

    def advance(self, wall_us: int, expire: bool = True) -> None:
        """Move finality forward to ``now − grace`` (never back); close what that finalizes.

        Args:
            wall_us: the wall clock.
            expire: also dead-letter waiting children whose interval is now final; an arriving
                event is judged (and adopts its children) before that happens.
        """
        if wall_us > self.wall_us:
            self.wall_us = wall_us
        if self.watermark_us is None:
            return
        now = self.now_us
        config = self.config
        closed = now - config.grace_us
        if closed > self.closed_us:
            # Intervals start on quarter hours, so what is final, and which waiting children
            # expire, changes only when ``closed`` passes a quarter hour: only then is there
            # work (and the exact ``closed`` then dates what is finalized).
            crossed = closed - closed % INTERVAL_US > self.closed_us
            self.closed_us = closed
            if crossed:
                self.expire_due = True
                self._finalize_calls()
                self._finalize_handlers()
        inc_closed = now - config.attendance_horizon_us
        if inc_closed > self.inc_closed_us:
            crossed = inc_closed - inc_closed % INTERVAL_US > self.inc_closed_us
            self.inc_closed_us = inc_closed
            if crossed:
                self.expire_due = True
                self._finalize_incidents()
        if expire and self.expire_due:
            self._expire_pending()

    # --------------------------------------------------------------- events

    def apply(self, event: Event, wall_us: int, source: dict[str, Any] | None = None) -> None:
        """Apply one valid event of this room (arrival order)."""
        event_id = event.id
        seen = self.seen
        if event_id in seen or event_id in self.seen_before:
            self._count("duplicate")
            return
        seen.add(event_id)
        self.seq += 1
        etype = event.type
        totals = self.events_total
        totals[etype] = totals.get(etype, 0) + 1
        at_us = event.at_us
        watermark = self.watermark_us
        if watermark is None or at_us > watermark:
            self.watermark_us = at_us
            self.live = wall_us - at_us <= self.config.live_lag_us
            self.lag_us = wall_us - at_us
            if self.seen_rotated_us is None:
                self.seen_rotated_us = at_us
            elif at_us - self.seen_rotated_us >= SEEN_GENERATION_US:
                self.seen_before, self.seen = self.seen, set()
                self.seen.add(event_id)
                self.seen_rotated_us = at_us
            self.advance(wall_us, expire=False)
        elif self.live:
            self.advance(wall_us, expire=False)
        if etype == "call.offered":
            self._offered(event, self.seq, source)
        elif etype in CALL_CHILDREN:
            self._call_child(Child(event, self.seq), source)
        elif etype == "handler.state":
            self._handler_state(event, self.seq, source)
        elif etype == "incident.created":
            self._incident_created(event, self.seq, source)
        else:
            self._incident_child(Child(event, self.seq), source)
        if self.expire_due:
            self._expire_pending()

    def _reject(self, reason: str, error: str, event: Event, source: Any = None) -> None:
        self._count(reason)
        self.out.dead_letters.append(
            DeadLetter(reason, error, self.name, event.id, event.type, event.to_json(), source)
        )

    def _count(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def _too_late(self, event: Event, start_us: int, source: Any, horizon: str = "") -> None:
        self._reject(
            "too_late",
            f"at: it changes the interval {iso(start_us)}, final since its end plus "
            f"{horizon or 'grace'} passed (now {iso(self.now_us)}); send events sooner",
            event,
            source,
        )

    def _offered(self, event: Event, seq: int, source: Any) -> None:
        call_id = event.call
        assert call_id is not None and event.line is not None
        start = interval_start(event.at_us)
        if self.is_final(start):
            self._too_late(event, start, source)
            return
        if call_id in self.calls:
            self._reject("conflict", f"call: {call_id!r} was already offered in this room",
                         event, source)
            return
        call = Call(event, seq)
        self.calls[call_id] = call
        self.offers.append(call)
        self.lines.add(call.line)
        key = (call.line, start)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = []
            if start not in self.open_start_set:
                self.open_start_set.add(start)
                heapq.heappush(self.open_starts, start)
        bucket.append(call)
        if call.caller is not None:
            history = self.callers.get(call.caller)
            entry = (call.offered_us, seq, call)
            if history is None:
                self.callers[call.caller] = [entry]
            elif history[-1][0] <= call.offered_us:  # in time order (seq only grows)
                history.append(entry)
            else:
                insort(history, entry, key=lambda item: (item[0], item[1]))
        self.dirty_calls.add(call)
        for incident in self.call_incidents.pop(call_id, ()):
            self.dirty_incidents.add(incident)
        for child in self.pending.pop(("c", call_id), ()):
            self._attach_call_child(call, child)

    def _call_child(self, child: Child, source: Any) -> None:
        call_id = child.event.call
        assert call_id is not None
        call = self.calls.get(call_id)
        if call is None:
            self._wait(("c", call_id), child, interval_start(child.at_us) + INTERVAL_US)
            return
        if call.final:
            self._too_late(child.event, call.start, source)
            return
        self._attach_call_child(call, child)

    def _attach_call_child(self, call: Call, child: Child) -> None:
        etype = child.event.type
        if etype == "call.ended":
            call.ends.append(child)
        elif etype == "callback.attempted":
            call.attempts.append(child)
        else:
            call.exits.append(child)
        self.dirty_calls.add(call)

    def _wait(self, key: tuple[str, str], child: Child, deadline_end: int) -> None:
        closed = self.closed_us if key[0] == "c" else self.inc_closed_us
        if deadline_end <= closed:
            self._orphan(child)
            return
        self.pending.setdefault(key, []).append(child)
        heapq.heappush(self.pending_heaps[key[0]], (deadline_end, child.seq, key[1]))

    def _orphan(self, child: Child) -> None:
        kind = "incident" if child.event.type.startswith("incident") else "call"
        ident = child.event.incident if kind == "incident" else child.event.call
        self._reject(
            "orphan",
            f"{kind}: no {kind} {ident!r} arrived in this room within the grace period",
            child.event,
        )

    def _expire_pending(self) -> None:
        self.expire_due = False
        for kind, closed in (("c", self.closed_us), ("i", self.inc_closed_us)):
            self._expire(kind, closed)

    def _expire(self, kind: str, closed: int) -> None:
        heap = self.pending_heaps[kind]
        while heap and heap[0][0] <= closed:
            _deadline, seq, ident = heapq.heappop(heap)
            waiting = self.pending.get((kind, ident))
            if not waiting:
                continue
            keep = []
            for child in waiting:
                if child.seq == seq:
                    self._orphan(child)
                else:
                    keep.append(child)
            if keep:
                self.pending[(kind, ident)] = keep
            else:
                del self.pending[(kind, ident)]

    def _incident_created(self, event: Event, seq: int, source: Any) -> None:
        incident_id = event.incident
        assert incident_id is not None
        start = interval_start(event.at_us)
        if start + INTERVAL_US <= self.inc_closed_us:
            self._too_late(event, start, source, "the attendance horizon")
            return
        if incident_id in self.incidents:
            self._reject("conflict", f"incident: {incident_id!r} was already created in this room",
                         event, source)
            return
        incident = Incident(event, seq)
        self.incidents[incident_id] = incident
        key = (incident.grade, start)
        bucket = self.inc_buckets.get(key)
        if bucket is None:
            bucket = self.inc_buckets[key] = []
            if start not in self.inc_open_set:
                self.inc_open_set.add(start)
                heapq.heappush(self.inc_open_starts, start)
        bucket.append(incident)
        if incident.call_id and incident.call_id not in self.calls:
            self.call_incidents.setdefault(incident.call_id, []).append(incident)
        self.awaiting[incident_id] = incident
        self.dirty_incidents.add(incident)
        for child in self.pending.pop(("i", incident_id), ()):
            self._attach_incident_child(incident, child)

    def _incident_child(self, child: Child, source: Any) -> None:
        incident_id = child.event.incident
        assert incident_id is not None
        incident = self.incidents.get(incident_id)
        if incident is None:
            self._wait(("i", incident_id), child, interval_start(child.at_us) + INTERVAL_US)
            return
        if incident.final:
            if child.event.type != "incident.closed":  # a closure changes no figure
                self._too_late(child.event, incident.start, source, "the attendance horizon")
            return
        self._attach_incident_child(incident, child)

    def _attach_incident_child(self, incident: Incident, child: Child) -> None:
        mark = (child.at_us, child.seq)
        etype = child.event.type
        if etype == "incident.dispatched":
            incident.dispatches.append(mark)
        elif etype == "incident.arrived":
            incident.arrivals.append(mark)
        else:
            incident.closures.append(mark)
        if etype != "incident.arrived":
            self.awaiting.pop(incident.id, None)
        self.dirty_incidents.add(incident)

    def _handler_state(self, event: Event, seq: int, source: Any) -> None:
        start = interval_start(event.at_us)
        if self.is_final(start):
            self._too_late(event, start, source)
            return
        assert event.handler is not None and event.state is not None
        timeline = self.handlers.get(event.handler)
        mark = (event.at_us, seq, event.state)
        if timeline is None:
            self.handlers[event.handler] = [mark]
        elif timeline[-1][0] < mark[0]:  # the usual case: in time order
            timeline.append(mark)
        else:
            insort(timeline, mark)
        if self.handler_first_start is None or start < self.handler_first_start:
            self.handler_first_start = start
            if self.handler_final_upto is None or start < self.handler_final_upto:
                self.handler_final_upto = start
        if self.handler_dirty_from is None or start < self.handler_dirty_from:
            self.handler_dirty_from = start

    # ------------------------------------------------------------ derivation

    def _derive(self) -> None:
        """Re-derive dirty calls: own state first, then repeat contacts and failure demand."""
        if self.dirty_calls:
            self._derive_calls()
        for incident in self.dirty_incidents:
            incident.derive(self.calls)
            self.dirty_inc_buckets.add((incident.grade, incident.start))
        self.dirty_incidents = set()

    def _derive_calls(self) -> None:
        dirty = self.dirty_calls
        for call in dirty:
            call.derive_own()
            queued = self.queued.setdefault(call.line, set())
            if call.exit_type is None:
                queued.add(call)
            else:
                queued.discard(call)
        window = self.config.repeat_window_us
        # A changed call can change the previous contact of the same caller's later calls.
        later: set[Call] = set()
        for call in dirty:
            if call.caller is None:
                continue
            history = self.callers[call.caller]
            index = bisect_left(history, (call.offered_us, call.seq), key=lambda e: (e[0], e[1]))
            limit = call.offered_us + window
            for offered_us, _seq, other in history[index + 1:]:
                if offered_us > limit:
                    break
                if not other.final:
                    later.add(other)
        for call in dirty | later:
            self._derive_repeat(call)
            self.dirty_buckets.add((call.line, call.start))
            self.stats_dirty.add((call.line, call.start))
        self.dirty_calls = set()

    def _derive_repeat(self, call: Call) -> None:
        call.repeat = call.failure = False
        if call.caller is None:
            return
        history = self.callers[call.caller]
        index = bisect_left(history, call.offered_us, key=lambda e: e[0])
        if index == 0:
            return
        prev_us, _seq, prev = history[index - 1]
        if prev_us < call.offered_us - self.config.repeat_window_us:
            return
        call.repeat = True
        at = call.offered_us
        call.failure = (
            call.reason == "progress_chase"
            or (prev.exit_type == ABANDONED and prev.exit_us <= at)
            or (prev.outcome == "unresolved" and prev.end_us is not None and prev.end_us <= at)
        )

    def flush_derive(self) -> None:
        """Bring derived call and incident state up to date."""
        self._derive()

    def flush(self) -> Output:
        """Derive what changed and hand over the records to publish and the dead letters."""
        self._derive()
        out = self.out
        now = self.now_us
        for key in self.dirty_buckets:
            if key in self.buckets:
                out.records.append(("interval", self._interval_key(key), self._interval(key, now)))
        self.dirty_buckets = set()
        for key in self.dirty_inc_buckets:
            if key in self.inc_buckets:
                out.records.append(("attendance", self._attendance_key(key),
                                    self._attendance(key, False)))
        self.dirty_inc_buckets = set()
        self._flush_handlers(now)
        self.out = Output()
        return out

    def _interval_key(self, key: tuple[str, int]) -> str:
        return f"{self.name}|{key[0]}|{iso(key[1])}"

    def _attendance_key(self, key: tuple[str, int]) -> str:
        return f"{self.name}|grade:{key[0]}|{iso(key[1])}"

    def _interval(self, key: tuple[str, int], now: int, final: bool = False) -> dict[str, Any]:
        line, start = key
        return kpis.interval_record(
            self.name, line, start, self.buckets[key], self.config.limits(line), now, final,
            self.config.max_queue_us,
        )

    def _attendance(self, key: tuple[str, int], final: bool) -> dict[str, Any]:
        grade, start = key
        return kpis.attendance_record(self.name, grade, start, self.inc_buckets[key], final)

    def _handler(self, start: int, now: int, final: bool) -> tuple[str, str, dict[str, Any]]:
        record = kpis.handler_record(self.name, start, self.handlers.values(), now, final)
        return ("handlers", f"{self.name}|handlers|{iso(start)}", record)

    def _flush_handlers(self, now: int) -> None:
        """Handler records of open intervals that changed, up to the one holding now."""
        if self.handler_final_upto is None:
            return
        last = interval_start(now)
        start = self.handler_dirty_from
        if self.handler_emitted_now != now:
            # the latest states last "until now": the interval holding now, and any interval
            # now has moved into, change with the clock alone
            emitted = self.handler_emitted_upto
            moved = last if emitted is None else min(emitted, last)
            start = moved if start is None else min(start, moved)
        if start is None:
            return
        start = max(start, self.handler_final_upto)
        while start <= last:
            self.out.records.append(self._handler(start, now, False))
            start += INTERVAL_US
        self.handler_emitted_upto = last
        self.handler_emitted_now = now
        self.handler_dirty_from = None

    def refresh_current(self) -> None:
        """Mark what changes with the clock alone: open queues and the current handler interval."""
        now = self.now_us
        for (line, start), bucket in self.buckets.items():
            if any(c.exit_type is None for c in bucket):
                self.dirty_buckets.add((line, start))
        if self.handlers:
            current = interval_start(now)
            if self.handler_dirty_from is None or current < self.handler_dirty_from:
                self.handler_dirty_from = current

    # ----------------------------------------------------------- finalizing

    def _finalize_calls(self) -> None:
        heap = self.open_starts
        if not heap or heap[0] + INTERVAL_US > self.closed_us:
            return
        self._derive()
        while heap and heap[0] + INTERVAL_US <= self.closed_us:
            start = heapq.heappop(heap)
            self.open_start_set.discard(start)
            for line in sorted(self.lines):
                key = (line, start)
                bucket = self.buckets.pop(key, None)
                if bucket is None:
                    continue
                self.buckets[key] = bucket  # _interval reads it from the map
                record = self._interval(key, self.closed_us + self.config.grace_us, final=True)
                del self.buckets[key]
                self.dirty_buckets.discard(key)
                self.stats_dirty.discard(key)
                self.bucket_stats.pop(key, None)
                self.out.records.append(("interval", self._interval_key(key), record))
                self._remember(line, start, record, bucket)
                queued = self.queued.get(line, set())
                for call in bucket:
                    if call.has_rejected():
                        for reason, child, error in call.rejected_children():
                            self._reject(reason, error, child.event)
                    call.compact()
                    if call.exit_type is None:
                        queued.discard(call)
        self._prune()

    def _remember(self, line: str, start: int, record: dict[str, Any], calls: list[Call]) -> None:
        summaries = self.final_summaries.setdefault(line, [])
        summaries.append((start, record["offered"], record["failure_demand"], 0))
        horizon = start - 24 * 3600 * US
        while summaries and summaries[0][0] < horizon:
            summaries.pop(0)
        totals = self.final_totals.setdefault(line, new_totals())
        add_totals(totals, calls)

    def _finalize_incidents(self) -> None:
        heap = self.inc_open_starts
        if not heap or heap[0] + INTERVAL_US > self.inc_closed_us:
            return
        self._derive()
        while heap and heap[0] + INTERVAL_US <= self.inc_closed_us:
            start = heapq.heappop(heap)
            self.inc_open_set.discard(start)
            for grade in kpis.GRADES:
                key = (grade, start)
                incidents = self.inc_buckets.get(key)
                if incidents is None:
                    continue
                self.out.records.append(("attendance", self._attendance_key(key),
                                         self._attendance(key, True)))
                del self.inc_buckets[key]
                self.dirty_inc_buckets.discard(key)
                for incident in incidents:
                    incident.final = True
                    self.awaiting.pop(incident.id, None)

    def _finalize_handlers(self) -> None:
        if self.handler_final_upto is None:
            return
        start = self.handler_final_upto
        if start + INTERVAL_US > self.closed_us:
            return
        while start + INTERVAL_US <= self.closed_us:
            self.out.records.append(self._handler(start, start + INTERVAL_US, True))
            start += INTERVAL_US
        self.handler_final_upto = start
        # Keep, per handler, only the last state before the open intervals: it carries forward.
        for handler, timeline in self.handlers.items():
            cut = bisect_left(timeline, (start, -1, ""))
            if cut > 1:
                self.handlers[handler] = timeline[cut - 1:]

    def _prune(self) -> None:
        """Forget calls older than the repeat window, and event ids of long-final intervals."""
        if self.closed_us - self.pruned_at < 6 * 3600 * US:
            return  # pruning scans every caller: a few times a day of event time is plenty
        self.pruned_at = self.closed_us
        horizon = max(self.config.repeat_window_us, self.config.attendance_horizon_us)
        oldest = self.closed_us - horizon - INTERVAL_US
        # Calls in arrival order: a call that arrived late behind a younger one goes at a
        # later pruning (memory only: no figure depends on when a call is forgotten).
        offers, calls, callers = self.offers, self.calls, self.callers
        while offers and offers[0].offered_us < oldest:
            call = offers.popleft()
            if calls.get(call.id) is call:
                del calls[call.id]
            history = callers.get(call.caller) if call.caller is not None else None
            if history and history[0][0] < oldest:
                cut = bisect_left(history, oldest, key=lambda e: e[0])
                if cut >= len(history):
                    del callers[call.caller]  # type: ignore[arg-type]
                else:
                    callers[call.caller] = history[cut:]  # type: ignore[index]
        for incident_id in [i for i, inc in self.incidents.items()
                            if inc.final and inc.created_us < oldest]:
            del self.incidents[incident_id]

    # ------------------------------------------------------------- live view

    def open_calls(self) -> Iterator[Call]:
        """Calls of open intervals."""
        for bucket in self.buckets.values():
            yield from bucket

    def stats(self) -> dict[tuple[str, int], BucketStats]:
        """Summaries of the open buckets, recomputed only for buckets that changed."""
        self._derive()
        for key in self.stats_dirty:
            calls = self.buckets.get(key)
            if calls is not None:
                self.bucket_stats[key] = BucketStats.of(
                    calls, self.config.limits(key[0]).short_abandon_us)
        self.stats_dirty = set()
        return self.bucket_stats


@dataclass
class BucketStats:
    """What the live view needs of one open bucket, so it need not walk every call."""

    offered: int
    abandoned: int
    short_abandoned: int
    failure_demand: int
    totals: dict[str, Any]

    @classmethod
    def of(cls, calls: list[Call], short_us: int) -> BucketStats:
        """Summarize a bucket's calls."""
        abandoned = short = failure = 0
        for call in calls:
            if call.exit_type == ABANDONED:
                abandoned += 1
                if call.exit_us - call.offered_us < short_us:
                    short += 1
            if call.repeat and call.failure:
                failure += 1
        totals = new_totals()
        add_totals(totals, calls)
        return cls(len(calls), abandoned, short, failure, totals)


def new_totals() -> dict[str, Any]:
    """Empty cumulative totals of one line (TOPICS.md ``totals``)."""
    return {
        "offered": 0,
        "answered": 0,
        "abandoned": 0,
        "callbacks_requested": 0,
        "answer_wait_buckets": dict.fromkeys([*map(str, BUCKETS_SECONDS), "+Inf"], 0),
        "answer_wait_sum_seconds": 0.0,
        "answer_wait_count": 0,
    }


_BUCKET_KEYS = [*map(str, BUCKETS_SECONDS), "+Inf"]
_BUCKET_BOUNDS_US = [bound * US for bound in BUCKETS_SECONDS]


def add_totals(totals: dict[str, Any], calls: Iterable[Call]) -> None:
    """Add the calls' exits to cumulative totals."""
    buckets = totals["answer_wait_buckets"]
    keys = _BUCKET_KEYS
    offered = answered = abandoned = callbacks = waited = 0
    for call in calls:
        offered += 1
        kind = call.exit_type
        if kind == ANSWERED:
            answered += 1
            wait_us = call.exit_us - call.offered_us
            waited += wait_us
            # cumulative buckets: every bound at or above the wait, and +Inf
            for key in keys[bisect_left(_BUCKET_BOUNDS_US, wait_us):]:
                buckets[key] += 1
        elif kind == ABANDONED:
            abandoned += 1
        elif kind == CALLBACK:
            callbacks += 1
    totals["offered"] += offered
    totals["answered"] += answered
    totals["abandoned"] += abandoned
    totals["callbacks_requested"] += callbacks
    totals["answer_wait_sum_seconds"] += waited / US
    totals["answer_wait_count"] += answered


class Engine:
    """All rooms of one worker (or of a batch report), fed message by message."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.config = Config.of(settings)
        self.rooms: dict[str, Room] = {}
        self.unroomed = Output()
        self.rejected_unroomed: dict[str, int] = {}

    def room(self, name: str) -> Room:
        """The room's state, created on first use."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.config)
        return room

    def process(
        self,
        value: bytes,
        wall_us: int,
        key: bytes | None = None,
        source: dict[str, Any] | None = None,
    ) -> set[str]:
        """Apply one Kafka message (an event or a batch); return the rooms it touched."""
        key_room = key.decode("utf-8", "replace") if key else None
        events = decode_batch(value, key_room, wall_us, self.config.max_future_seconds)
        if events is not None:  # the common case: a valid batch of one room
            if not events:
                return set()
            room = self.room(events[0].room)
            apply = room.apply
            for event in events:
                apply(event, wall_us, source)
            return {room.name}
        touched: set[str] = set()
        try:
            items = decode_message(value)
        except InvalidEvent as exc:
            if key_room and ROOM_RE.match(key_room):
                room = self.room(key_room)
                room._count(exc.reason)
                room.out.dead_letters.append(
                    DeadLetter(exc.reason, str(exc), key_room, None, None, value, source))
                touched.add(key_room)
            else:
                self._reject_unroomed(exc.reason, str(exc), value, key, source)
            return touched
        single = len(items) == 1
        for item in items:
            try:
                event = parse_event(item, now_us=wall_us,
                                    max_future_seconds=self.config.max_future_seconds)
                if key_room is not None and event.room != key_room:
                    raise InvalidEvent(
                        "room", f"{event.room!r} differs from the message key {key_room!r}: "
                        "key each message by its room")
            except InvalidEvent as exc:
                raw = value if single else _dumps(item)
                # The message key names the room (EVENTS.md), so a broken event is still
                # counted where a supervisor will look for it.
                room_name = key_room if key_room and ROOM_RE.match(key_room) else _get(
                    item, "room")
                if room_name is not None and (room_name in self.rooms or (
                        room_name == key_room and ROOM_RE.match(room_name))):
                    room = self.room(room_name)
                    room._count(exc.reason)
                    room.out.dead_letters.append(DeadLetter(
                        exc.reason, str(exc), room_name, _get(item, "id"), _get(item, "type"),
                        raw, source))
                    touched.add(room_name)
                else:
                    self._reject_unroomed(exc.reason, str(exc), raw, key, source, item)
                continue
            self.room(event.room).apply(event, wall_us, source)
            touched.add(event.room)
        return touched

    def _reject_unroomed(self, reason: str, error: str, raw: bytes, key: bytes | None,
                         source: Any, item: Any = None) -> None:
        self.rejected_unroomed[reason] = self.rejected_unroomed.get(reason, 0) + 1
        room = key.decode("utf-8", "replace") if key else None
        self.unroomed.dead_letters.append(DeadLetter(
            reason, error, room, _get(item, "id"), _get(item, "type"), raw, source))

    def tick(self, wall_us: int) -> None:
        """Let the wall clock close intervals of live rooms."""
        for room in self.rooms.values():
            if room.live:
                room.advance(wall_us)

    def flush(self, rooms: Iterable[Room] | None = None) -> Output:
        """Everything to publish from every room (or the records of ``rooms`` only).

        Dead letters are handed over from every room whatever ``rooms`` says: the worker
        acknowledges a message only once its dead letters are published.
        """
        out, self.unroomed = self.unroomed, Output()
        for room in self.rooms.values() if rooms is None else rooms:
            room_out = room.flush()
            out.records.extend(room_out.records)
            out.dead_letters.extend(room_out.dead_letters)
        if rooms is not None:
            for room in self.rooms.values():
                if room.out.dead_letters:
                    out.dead_letters.extend(room.out.dead_letters)
                    room.out.dead_letters = []
        return out

    def dead_letters_waiting(self, rooms: Iterable[str]) -> bool:
        """Whether dead letters of ``rooms`` (or of no room) wait for the next flush."""
        if self.unroomed.dead_letters:
            return True
        for name in rooms:
            room = self.rooms.get(name)
            if room is not None and room.out.dead_letters:
                return True
        return False


def _get(item: Any, name: str) -> Any:
    value = item.get(name) if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


def _dumps(item: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(item)
    except TypeError:
        return repr(item).encode()
