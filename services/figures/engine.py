"""The room state machine: applies events idempotently and derives every figure of METRICS.md.

State is *records keyed by identity* (calls, incidents, handler timelines, seen event ids);
figures are derived from the records, never counted on the fly, so applying an event twice
changes nothing and a worker can rebuild a room exactly by replaying its events. The choices
METRICS.md leaves open are pinned down in services/figures/DEFINITIONS.md.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.contract import events as contract
from services.contract.events import (
    LINE_RE,
    ROOM_RE,
    CallOffered,
    Event,
    InvalidEvent,
    decode_message,
    decode_structs,
    parse_event,
)
from services.contract.privacy import PHONE_RE, redact, redact_text
from services.contract.settings import Settings
from services.figures.calls import CallBook, Child, LineFigures
from services.figures.config import Config
from services.figures.handlers import HandlerBook
from services.figures.incidents import IncidentBook
from services.figures.kpis import (
    ABANDONED,
    ANSWERED,
    CALLBACK,
    INTERVAL_US,
    US,
    interval_start,
    iso,
)

log = logging.getLogger(__name__)

CALL_CHILDREN = frozenset(
    {ANSWERED, ABANDONED, CALLBACK, "call.ended", "callback.attempted"}
)
# Pruning walks the oldest calls and every incident: a few times a day of event time is
# plenty, or once per horizon when the horizons are shorter (soak runs).
PRUNE_EVERY_US = 6 * 3600 * US


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
            # any field may hold what the sender put there: a phone number in an id, say
            "error": redact_text(self.error),
            "room": redact_text(self.room),
            "event_id": redact_text(self.event_id),
            "type": redact_text(self.type),
            "raw": redact(self.raw).decode("utf-8", "replace"),
            "source": self.source,
            "rejected_at": iso(rejected_at_us),
        }


@dataclass
class Output:
    """What changed: records to publish and dead letters to write."""

    records: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Room:
    """The state of one control room: which events count, and when intervals become final.

    The room judges each event (duplicate, too late, conflicting, waiting for its parent) and
    hands it to one of three parts: its calls, its incidents and its handlers. It owns the
    clocks that make intervals final and the dead letters of what it rejects.
    """

    def __init__(self, name: str, config: Config):
        self.name = name
        self.config = config
        # the clocks' settings, read at every event: a field each (``Config`` is not compiled)
        self.grace_us = config.grace_us
        self.horizon_us = config.attendance_horizon_us
        self.live_lag_us = config.live_lag_us
        self.seen_generation_us = config.seen_generation_us
        self.seq = 0
        # Event ids in two generations, rotated as the watermark passes
        # ``config.seen_generation_us``: ids are remembered for at least that long, never more
        # than twice that.
        self.seen: set[str] = set()
        self.seen_before: set[str] = set()
        self.seen_rotated_us: int | None = None
        self.watermark_us: int | None = None
        self.live = False
        self.wall_us = 0
        self.closed_us = -(1 << 62)  # intervals ending at or before this are final
        self.inc_closed_us = -(1 << 62)
        self.calls = CallBook(name, config)
        self.incidents = IncidentBook(name)
        self.handlers = HandlerBook(name)
        self.pending: dict[tuple[str, str], list[Child]] = {}
        # (deadline, seq, id) of waiting children, for calls and for incidents
        self.pending_heaps: dict[str, list[tuple[int, int, str]]] = {"c": [], "i": []}
        self.pruned_at = -(1 << 62)
        self.expire_due = False
        self.events_total: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
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
        closed = now - self.grace_us
        if closed > self.closed_us:
            # Intervals start on quarter hours, so what is final, and which waiting children
            # expire, changes only when ``closed`` passes a quarter hour: only then is there
            # work (and the exact ``closed`` then dates what is finalized).
            crossed = closed - closed % INTERVAL_US > self.closed_us
            self.closed_us = closed
            if crossed:
                self.expire_due = True
                self._finalize_calls()
                self.handlers.finalize(closed, self.out.records)
        inc_closed = now - self.horizon_us
        if inc_closed > self.inc_closed_us:
            crossed = inc_closed - inc_closed % INTERVAL_US > self.inc_closed_us
            self.inc_closed_us = inc_closed
            if crossed:
                self.expire_due = True
                if self.incidents.finalizable(inc_closed):
                    self.derive()
                    self.incidents.finalize(inc_closed, self.out.records)
        if expire and self.expire_due:
            self._expire_pending()

    # --------------------------------------------------------------- events

    def apply(self, event: Event, wall_us: int, source: dict[str, Any] | None = None) -> None:
        """Apply one valid event of this room (arrival order)."""
        event_id = event.id
        seen = self.seen
        if event_id in seen or event_id in self.seen_before:
            self.count("duplicate")
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
            self.live = wall_us - at_us <= self.live_lag_us
            self.lag_us = wall_us - at_us
            if self.seen_rotated_us is None:
                self.seen_rotated_us = at_us
            elif at_us - self.seen_rotated_us >= self.seen_generation_us:
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
            start = interval_start(at_us)
            if self.is_final(start):
                self._too_late(event, start, source)
            else:
                self.handlers.state(event, self.seq, at_us, start)
        elif etype == "incident.created":
            self._incident_created(event, self.seq, source)
        else:
            self._incident_child(Child(event, self.seq), source)
        if self.expire_due:
            self._expire_pending()

    def reject(self, reason: str, error: str, event: Event, source: Any = None) -> None:
        """Count an event that does not count and dead-letter it."""
        self.count(reason)
        self.out.dead_letters.append(
            DeadLetter(reason, error, self.name, event.id, event.type, event.to_json(), source)
        )

    def reject_message(self, reason: str, error: str, raw: bytes, event_id: str | None,
                       event_type: str | None, source: Any = None) -> None:
        """Count and dead-letter a message of this room that is not a valid event."""
        self.count(reason)
        self.out.dead_letters.append(
            DeadLetter(reason, error, self.name, event_id, event_type, raw, source))

    def count(self, reason: str) -> None:
        """Count a rejection by reason (the live state's ``rejected`` totals)."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def _too_late(self, event: Event, start_us: int, source: Any, horizon: str = "") -> None:
        self.reject(
            "too_late",
            f"at: it changes the interval {iso(start_us)}, final since its end plus "
            f"{horizon or 'grace'} passed (now {iso(self.now_us)}); send events sooner",
            event,
            source,
        )

    def _offered(self, event: Event, seq: int, source: Any) -> None:
        call_id = event.call
        assert call_id is not None
        start = interval_start(event.at_us)
        if self.is_final(start):
            self._too_late(event, start, source)
            return
        calls = self.calls
        if calls.get(call_id) is not None:
            self.reject("conflict", f"call: {call_id!r} was already offered in this room",
                        event, source)
            return
        call = calls.offer(event, seq)
        self.incidents.call_arrived(call_id)
        for child in self.pending.pop(("c", call_id), ()):
            calls.attach(call, child)

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
        self.calls.attach(call, child)

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
        self.reject(
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
        incidents = self.incidents
        if incidents.get(incident_id) is not None:
            self.reject("conflict", f"incident: {incident_id!r} was already created in this room",
                        event, source)
            return
        call_id = event.call
        known = bool(call_id) and self.calls.get(call_id or "") is not None
        incident = incidents.create(event, seq, known)
        for child in self.pending.pop(("i", incident_id), ()):
            incidents.attach(incident, child)

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
        self.incidents.attach(incident, child)

    # ------------------------------------------------------------ derivation

    def derive(self) -> None:
        """Bring derived call and incident state up to date."""
        self.calls.derive()
        self.incidents.derive(self.calls.calls)

    def flush(self) -> Output:
        """Derive what changed and hand over the records to publish and the dead letters."""
        self.derive()
        out = self.out
        now = self.now_us
        self.calls.flush(now, out.records)
        self.incidents.flush(out.records)
        self.handlers.flush(now, out.records)
        self.out = Output()
        return out

    def refresh_current(self) -> None:
        """Mark what changes with the clock alone: open queues and the current handler interval."""
        self.calls.refresh_current()
        self.handlers.refresh_current(self.now_us)

    # ----------------------------------------------------------- finalizing

    def _finalize_calls(self) -> None:
        if not self.calls.finalizable(self.closed_us):
            return
        self.derive()
        self.calls.finalize(self.closed_us, self.out.records, self.reject)
        self._prune()

    def _prune(self) -> None:
        """Forget calls older than the repeat window, and incidents long final."""
        horizon = max(self.config.repeat_window_us, self.config.attendance_horizon_us)
        if self.closed_us - self.pruned_at < min(PRUNE_EVERY_US, horizon):
            return
        self.pruned_at = self.closed_us
        oldest = self.closed_us - horizon - INTERVAL_US
        self.calls.prune(oldest)
        self.incidents.prune(oldest)

    # ------------------------------------------------------------- live view

    def line_figures(self) -> dict[str, LineFigures]:
        """Per line, the last hour, the last 24 hours and the totals, as of now."""
        self.derive()
        return self.calls.line_figures(self.now_us)

    def waiting_for_parent(self) -> int:
        """Events held until their call or incident arrives."""
        return sum(len(v) for v in self.pending.values())


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
        events = decode_fast(value, key_room, wall_us, self.config.max_future_seconds)
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
                self.room(key_room).reject_message(exc.reason, str(exc), value, None, None,
                                                   source)
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
                    self.room(room_name).reject_message(
                        exc.reason, str(exc), raw, _get(item, "id"), _get(item, "type"), source)
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


def decode_fast(value: bytes, key_room: str | None, now_us: int,
                max_future_seconds: float) -> list[Event] | None:
    """The fast path: a message of valid events of one room, decoded and checked whole.

    A batch or a single event, decoded and type-checked in C (``decode_structs``); its room,
    times, clock, and a call.offered's line and caller checked here, compiled with the engine:
    this is the stream's per-event hot path, and run as Python it cost as much as decoding.
    ``None`` if anything in it is not plainly valid, for ``decode_message`` and
    ``parse_event`` to say exactly what and reject only that. Accepts exactly what those
    accept (never more): the same events, in the same order (held to it by
    tests/services/figures/test_fast_path.py).
    """
    events = decode_structs(value)
    if not events:
        return events
    room = events[0].room
    if key_room is not None and room != key_room:
        return None
    if not ROOM_RE.match(room):
        return None
    limit = now_us + max_future_seconds * 1_000_000
    minutes: dict[str, int] = contract._MINUTES
    tails: dict[str, int] = contract._TAILS
    previous: str | None = None  # events of a batch often share their time
    minute = ""  # ... and more often their minute: its "YYYY-MM-DDTHH:MM" and epoch µs
    minute_us = 0
    at_us = 0
    for event in events:
        if event.room != room:
            return None
        if type(event) is CallOffered and not _offer_ok(event):
            return None
        text = event.at_text
        if text != previous:
            base: int | None = minute_us
            if not (minute and text.startswith(minute)):
                base = minutes.get(text[:16])
                if base is not None:
                    minute, minute_us = text[:16], base
            offset: int | None = None
            if base is not None:
                offset = _plain_tail_us(text)
                if offset is None:
                    tail = text[16:]
                    offset = tails.get(tail)
                    if offset is None:  # a new second or fraction of a known minute
                        offset = contract._tail_us(tail)
                        if offset is not None:
                            if len(tails) >= 200_000:
                                tails.clear()
                            tails[tail] = offset
            if base is not None and offset is not None:
                at_us = base + offset
            else:
                try:
                    at_us = contract._at_us(text)
                except InvalidEvent:
                    return None
            if at_us > limit:
                return None
            previous = text
        event.at_us = at_us
    return events


# Lines of call.offered events the fast path found valid (LINE_RE), and how many it keeps.
_LINES: set[str] = set()
_LINES_KEPT = 1_000


def _offer_ok(event: Event) -> bool:
    """Whether a decoded call.offered has a valid line and a caller that is no phone number.

    The rules of ``parse_event`` (msgspec checked the rest). Lines are few: one once matched
    is remembered.
    """
    line = event.line
    if line is None:
        return False
    if line not in _LINES:
        if not LINE_RE.match(line):
            return False
        if len(_LINES) < _LINES_KEPT:
            _LINES.add(line)
    caller = event.caller
    return caller is None or not PHONE_RE.match(caller)


def _plain_tail_us(text: str) -> int | None:
    """µs into the minute of an ``at`` ending ``:SSZ`` or ``:SS.fffZ`` (ASCII digits), else None.

    What ``contract._tail_us`` gives the rest of such a text (the common forms), read digit by
    digit: no slice, no look-up. None sends any other form there.
    """
    size = len(text)
    if (size != 20 and size != 24) or text[16] != ":" or text[size - 1] != "Z":
        return None
    tens, units = ord(text[17]) - 48, ord(text[18]) - 48
    if not (0 <= tens <= 5 and 0 <= units <= 9):
        return None
    us = (tens * 10 + units) * 1_000_000
    if size == 20:
        return us
    if text[19] != ".":
        return None
    first, second, third = ord(text[20]) - 48, ord(text[21]) - 48, ord(text[22]) - 48
    if not (0 <= first <= 9 and 0 <= second <= 9 and 0 <= third <= 9):
        return None
    return us + (first * 100 + second * 10 + third) * 1000


def _get(item: Any, name: str) -> Any:
    value = item.get(name) if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


def _dumps(item: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(item)
    except TypeError:
        return repr(item).encode()
