"""Checkpoints of room state: export what rooms hold, import it into a fresh engine.

A worker that takes over a partition rebuilds its rooms by replaying the partition's events:
two weeks of a force's events, on every rebalance, deploy or crash. A checkpoint is the state
of the partition's rooms after the message below an offset, so a rebuild imports it and
replays only the messages after that offset, as Kafka Streams restores a changelog or Flink a
checkpoint. Compiled classes cannot be pickled generically (their closures and constructors
are not picklable), so every part of a room is written out field by field as plain lists,
dicts and numbers, encoded with msgpack: everything that decides a later output (seen ids,
finality clocks, waiting children, calls with their events and tallies, incidents, handler
timelines, records and dead letters not yet handed over, sequence counters).

Shared objects (a call is in its id map, its bucket, its caller's history, its tally, the
queue) are written once and referred to by index, so the import rebuilds the same sharing.
A checkpoint carries a format version and a fingerprint of the settings that change figures;
one of another version or fingerprint is refused (``None``): the caller replays everything.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar, Union

import msgspec
import orjson

from services.contract.events import EVENT_TYPES, CallOffered, Event, IncidentCreated
from services.contract.settings import Settings
from services.figures import _native
from services.figures.calls import BucketStats, BucketTally, Call, CallBook, Child, SortedInts
from services.figures.engine import DeadLetter, Engine, Output, Room
from services.figures.handlers import HandlerBook
from services.figures.incidents import Incident, IncidentBook
from services.figures.kpis import DEFINITIONS_VERSION, Thresholds

# Bump when the layout below or what a room holds changes: older checkpoints are then refused.
FORMAT_VERSION = 1

T = TypeVar("T")

_AnyEvent: Any = Union[tuple(EVENT_TYPES.values())]  # noqa: UP007 - built at runtime


# A checkpoint as encoded: (format version, fingerprint, events, rooms, what no room holds);
# the events (msgspec structs) decoded typed, the rest plain values. A plain tuple, no struct
# class, so that mypyc can compile the module (tried: ~10 % faster, not worth a compiled module).
Snapshot = tuple[int, str, list[Event], list[Any], Any]
_SCHEMA: Any = tuple.__class_getitem__((int, str, list.__class_getitem__(_AnyEvent), Any, Any))
_ENCODER = msgspec.msgpack.Encoder()
_DECODER: Any = msgspec.msgpack.Decoder(_SCHEMA)


def fingerprint(settings: Settings) -> str:
    """What a checkpoint's figures depend on besides the events: the settings that decide them.

    Grace, horizons, windows, the future limit, the live lag and every line's profile change
    which events count or what a record says; a checkpoint taken under other values would give
    other figures than a full replay under these, so it is refused. So is one taken by other
    code of the engine (a deploy that changed how a figure is derived): the sources of the
    modules that hold a room's state are part of it.
    """
    decided = {
        "format": FORMAT_VERSION,
        "definitions": DEFINITIONS_VERSION,
        "engine": _engine_sources(),
        "grace": settings.grace_seconds,
        "repeat_window": settings.repeat_window_seconds,
        "max_queue": settings.max_queue_seconds,
        "max_future": settings.max_future_seconds,
        "live_lag": settings.live_lag_seconds,
        "attendance_horizon": settings.attendance_horizon_seconds,
        "profiles": {line: profile.model_dump()
                     for line, profile in sorted(settings.line_profiles.items())},
    }
    return hashlib.sha256(orjson.dumps(decided, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _engine_sources() -> str:
    """A digest of the engine's sources and of this module's."""
    digest = hashlib.sha256()
    for name in dict.fromkeys((*_native.COMPILED, "config", "checkpoint")):
        digest.update((_native.PACKAGE / f"{name}.py").read_bytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- export


def _copy_totals(totals: dict[str, Any]) -> dict[str, Any]:
    return {**totals, "answer_wait_buckets": dict(totals["answer_wait_buckets"])}


class _Writer:
    """Collects the events a state refers to, each written once by index."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def event(self, event: Event | None) -> int:
        if event is None:
            return -1
        self.events.append(event)
        return len(self.events) - 1

    def children(self, children: list[Child]) -> list[Any]:
        return [(self.event(child.event), child.seq) for child in children]


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """The collector paused while a state is written or read.

    That makes hundreds of thousands of containers, and the collections they trigger walk the
    whole engine again and again: most of the time of an export or import, measured.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def take_state(engine: Engine, fingerprint_: str, rooms: list[str] | None = None) -> Snapshot:
    """The state of ``rooms`` now (default: every room, and what no room holds), as plain values.

    Nothing in it is shared with the engine (every mutable part is copied), so it may be
    encoded (:func:`encode`) in another thread while the engine goes on.
    """
    with _no_collection():
        return _take(engine, fingerprint_, rooms)


def encode(snapshot: Snapshot) -> bytes:
    """A state as bytes."""
    with _no_collection():
        return _ENCODER.encode(snapshot)


def _take(engine: Engine, fingerprint_: str, rooms: list[str] | None) -> Snapshot:
    writer = _Writer()
    names = list(engine.rooms) if rooms is None else [n for n in rooms if n in engine.rooms]
    states = [_room_state(engine.rooms[name], writer) for name in names]
    unroomed: Any = None
    if rooms is None:
        unroomed = (_output_state(engine.unroomed), dict(engine.rejected_unroomed))
    return (FORMAT_VERSION, fingerprint_, writer.events, states, unroomed)


def _output_state(out: Output) -> Any:
    return (
        [(kind, key, record) for kind, key, record in out.records],
        [(d.reason, d.error, d.room, d.event_id, d.type, d.raw, d.source)
         for d in out.dead_letters],
    )


def _room_state(room: Room, writer: _Writer) -> Any:
    pending = [(key[0], key[1], writer.children(children))
               for key, children in room.pending.items()]
    heaps = {kind: list(heap) for kind, heap in room.pending_heaps.items()}
    return (
        room.name, room.seq, list(room.seen), list(room.seen_before), room.seen_rotated_us,
        room.watermark_us, room.live, room.wall_us, room.closed_us, room.inc_closed_us,
        room.pruned_at, room.expire_due, dict(room.events_total), dict(room.rejected),
        room.lag_us, pending, heaps, _output_state(room.out),
        _calls_state(room.calls, writer), _incidents_state(room.incidents),
        _handlers_state(room.handlers),
    )


class _Refs(Generic[T]):
    """Objects several structures share, each numbered once in the order first referred to."""

    def __init__(self) -> None:
        self.index: dict[int, int] = {}
        self.items: list[T] = []

    def ref(self, item: T) -> int:
        """The item's number."""
        found = self.index.get(id(item))
        if found is None:
            found = self.index[id(item)] = len(self.items)
            self.items.append(item)
        return found


def _calls_state(book: CallBook, writer: _Writer) -> Any:
    refs: _Refs[Call] = _Refs()
    ref, calls = refs.ref, refs.items  # (a bound method: called for every reference)
    offers = [ref(call) for call in book.offers]
    by_id = [(key, ref(call)) for key, call in book.calls.items()]
    buckets = [(key[0], key[1], [ref(call) for call in bucket])
               for key, bucket in book.buckets.items()]
    callers = [(caller, [(offered, seq, ref(call)) for offered, seq, call in history])
               for caller, history in book.callers.items()]
    dirty = [ref(call) for call in book.dirty_calls]
    queued = [(line, [ref(call) for call in waiting]) for line, waiting in book.queued.items()]
    tallies = [(key[0], key[1], _tally_state(tally, ref)) for key, tally in book.tallies.items()]
    stats = [(key[0], key[1], s.offered, s.abandoned, s.short_abandoned, s.failure_demand,
              _copy_totals(s.totals)) for key, s in book.bucket_stats.items()]
    # every call referred to is known now: write their fields
    rows = [(
        c.id, c.line, c.offered_us, c.start, c.caller, c.reason, c.seq, writer.event(c.event),
        writer.children(c.exits), writer.children(c.ends), writer.children(c.attempts),
        c.final, c.exit_type, c.exit_us, c.exit_seq, c.end_us, c.wrap_seconds, c.outcome,
        c.callback_success, c.repeat, c.failure, c.tallied,
    ) for c in calls]
    return (
        rows, offers, by_id, buckets, list(book.open_starts), list(book.open_start_set),
        callers, dirty, [list(key) for key in book.dirty_buckets], queued,
        [list(key) for key in book.stats_dirty], stats, tallies, list(book.lines),
        {line: [list(s) for s in summaries] for line, summaries in book.final_summaries.items()},
        {line: _copy_totals(totals) for line, totals in book.final_totals.items()},
    )


def _tally_state(tally: BucketTally, ref: Any) -> Any:
    return (
        tally.threshold_us, tally.short_us, tally.offered, tally.answered, tally.abandoned,
        tally.short_abandoned, tally.callbacks, tally.answered_within, tally.abandoned_within,
        tally.band_10, tally.band_60, tally.band_over, tally.callback_successes,
        tally.repeat_contacts, tally.failure_demand, tally.ended,
        [list(chunk) for chunk in tally.answer_waits.chunks],
        [list(chunk) for chunk in tally.other_waits.chunks], tally.waits_sum, tally.queued_us,
        # wrap-up seconds are summed exactly in units of 2**-1074: beyond msgpack's integers
        tally.handle_us, str(tally.wrap_units), [ref(call) for call in tally.waiting],
    )


def _incidents_state(book: IncidentBook) -> Any:
    refs: _Refs[Incident] = _Refs()
    ref, incidents = refs.ref, refs.items
    by_id = [(key, ref(incident)) for key, incident in book.incidents.items()]
    buckets = [(key[0], key[1], [ref(incident) for incident in bucket])
               for key, bucket in book.buckets.items()]
    awaiting = [(key, ref(incident)) for key, incident in book.awaiting.items()]
    waiting_calls = [(call_id, [ref(incident) for incident in found])
                     for call_id, found in book.call_incidents.items()]
    dirty = [ref(incident) for incident in book.dirty]
    rows = [(
        i.id, i.grade, i.area, i.created_us, i.start, i.call_id, i.seq, list(i.dispatches),
        list(i.arrivals), list(i.closures), i.final, i.clock_start_us, i.dispatched_us,
        i.arrived_us, i.closed_us,
    ) for i in incidents]
    return (rows, by_id, buckets, list(book.open_starts), list(book.open_set), awaiting,
            waiting_calls, dirty, [list(key) for key in book.dirty_buckets])


def _handlers_state(book: HandlerBook) -> Any:
    return ({handler: list(timeline) for handler, timeline in book.timelines.items()},
            book.first_start, book.final_upto, book.dirty_from,
            book.emitted_upto, book.emitted_now)


# ----------------------------------------------------------------------------- import


def import_engine(engine: Engine, blob: bytes, fingerprint_: str) -> list[str] | None:
    """Put the checkpoint's rooms into ``engine`` (replacing rooms of the same name).

    Returns the rooms imported, or None when the checkpoint is of another format version or
    fingerprint, or cannot be read: then nothing is changed and the caller replays everything.
    """
    with _no_collection():
        return _import(engine, blob, fingerprint_)


def _import(engine: Engine, blob: bytes, fingerprint_: str) -> list[str] | None:
    try:
        version, found, events, states, unroomed = _DECODER.decode(blob)
    except (msgspec.DecodeError, ValueError, TypeError):
        return None
    if version != FORMAT_VERSION or found != fingerprint_:
        return None
    rooms = [_room(state, engine, events) for state in states]
    for room in rooms:
        engine.rooms[room.name] = room
    if unroomed is not None:
        out, rejected = unroomed
        engine.unroomed = _output(out)
        engine.rejected_unroomed = dict(rejected)
    return [room.name for room in rooms]


def _output(state: Any) -> Output:
    records, dead = state
    return Output(
        [(kind, key, record) for kind, key, record in records],
        [DeadLetter(reason, error, room, event_id, etype, raw, source)
         for reason, error, room, event_id, etype, raw, source in dead],
    )


def _children(state: Any, events: list[Event]) -> list[Child]:
    return [Child(events[index], seq) for index, seq in state]


def _room(state: Any, engine: Engine, events: list[Event]) -> Room:
    (name, seq, seen, seen_before, seen_rotated_us, watermark_us, live, wall_us, closed_us,
     inc_closed_us, pruned_at, expire_due, events_total, rejected, lag_us, pending, heaps, out,
     calls, incidents, handlers) = state
    room = Room(name, engine.config)
    room.seq = seq
    room.seen = set(seen)
    room.seen_before = set(seen_before)
    room.seen_rotated_us = seen_rotated_us
    room.watermark_us = watermark_us
    room.live = live
    room.wall_us = wall_us
    room.closed_us = closed_us
    room.inc_closed_us = inc_closed_us
    room.pruned_at = pruned_at
    room.expire_due = expire_due
    room.events_total = dict(events_total)
    room.rejected = dict(rejected)
    room.lag_us = lag_us
    room.pending = {(kind, ident): _children(children, events)
                    for kind, ident, children in pending}
    room.pending_heaps = {kind: [(d, s, i) for d, s, i in heap] for kind, heap in heaps.items()}
    room.out = _output(out)
    _restore_calls(room.calls, calls, events)
    _restore_incidents(room.incidents, incidents)
    _restore_handlers(room.handlers, handlers)
    return room


# What a call or incident is constructed from before its fields are set from the state (the
# classes are built from their first event); typed loosely: mypy takes the fields every event
# reads as ``None`` for constructor arguments.
_CALL_OFFERED: Any = CallOffered
_INCIDENT_CREATED: Any = IncidentCreated
_PLACEHOLDER_CALL: Event = _CALL_OFFERED(v=1, id="-", room="-", at_text="-", call="-", line="-")
_PLACEHOLDER_INCIDENT: Event = _INCIDENT_CREATED(v=1, id="-", room="-", at_text="-",
                                                 incident="-", grade="resolution")
_PLACEHOLDER_LIMITS = Thresholds.of(60.0, 5.0)


def _restore_calls(book: CallBook, state: Any, events: list[Event]) -> None:
    (rows, offers, by_id, buckets, open_starts, open_start_set, callers, dirty, dirty_buckets,
     queued, stats_dirty, stats, tallies, lines, final_summaries, final_totals) = state
    calls: list[Call] = []
    for row in rows:
        (call_id, line, offered_us, start, caller, reason, seq, event, exits, ends, attempts,
         final, exit_type, exit_us, exit_seq, end_us, wrap_seconds, outcome, callback_success,
         repeat, failure, tallied) = row
        call = Call(_PLACEHOLDER_CALL, seq)
        call.id = call_id
        call.line = line
        call.offered_us = offered_us
        call.start = start
        call.caller = caller
        call.reason = reason
        call.event = events[event] if event >= 0 else None
        call.exits = _children(exits, events)
        call.ends = _children(ends, events)
        call.attempts = _children(attempts, events)
        call.final = final
        call.exit_type = exit_type
        call.exit_us = exit_us
        call.exit_seq = exit_seq
        call.end_us = end_us
        call.wrap_seconds = wrap_seconds
        call.outcome = outcome
        call.callback_success = callback_success
        call.repeat = repeat
        call.failure = failure
        call.tallied = tallied
        calls.append(call)
    book.offers = deque(calls[i] for i in offers)
    book.calls = {key: calls[i] for key, i in by_id}
    book.buckets = {(line, start): [calls[i] for i in bucket] for line, start, bucket in buckets}
    book.open_starts = list(open_starts)
    book.open_start_set = set(open_start_set)
    book.callers = {caller: [(offered, seq, calls[i]) for offered, seq, i in history]
                    for caller, history in callers}
    book.dirty_calls = {calls[i] for i in dirty}
    book.dirty_buckets = {(line, start) for line, start in dirty_buckets}
    book.queued = {line: {calls[i] for i in waiting} for line, waiting in queued}
    book.stats_dirty = {(line, start) for line, start in stats_dirty}
    book.bucket_stats = {
        (line, start): BucketStats(offered, abandoned, short, failure, totals)
        for line, start, offered, abandoned, short, failure, totals in stats}
    book.tallies = {(line, start): _tally(tally, calls) for line, start, tally in tallies}
    book.lines = set(lines)
    book.final_summaries = {line: [(a, b, c, d) for a, b, c, d in summaries]
                            for line, summaries in final_summaries.items()}
    book.final_totals = {line: _copy_totals(totals) for line, totals in final_totals.items()}


def _sorted_ints(chunks: list[list[int]]) -> SortedInts:
    values = SortedInts()
    values.chunks = [list(chunk) for chunk in chunks]
    values.maxes = [chunk[-1] for chunk in values.chunks]
    values.size = sum(len(chunk) for chunk in values.chunks)
    return values


def _tally(state: Any, calls: list[Call]) -> BucketTally:
    (threshold_us, short_us, offered, answered, abandoned, short_abandoned, callbacks,
     answered_within, abandoned_within, band_10, band_60, band_over, callback_successes,
     repeat_contacts, failure_demand, ended, answer_waits, other_waits, waits_sum, queued_us,
     handle_us, wrap_units, waiting) = state
    tally = BucketTally(_PLACEHOLDER_LIMITS)
    tally.threshold_us = threshold_us
    tally.short_us = short_us
    tally.offered = offered
    tally.answered = answered
    tally.abandoned = abandoned
    tally.short_abandoned = short_abandoned
    tally.callbacks = callbacks
    tally.answered_within = answered_within
    tally.abandoned_within = abandoned_within
    tally.band_10 = band_10
    tally.band_60 = band_60
    tally.band_over = band_over
    tally.callback_successes = callback_successes
    tally.repeat_contacts = repeat_contacts
    tally.failure_demand = failure_demand
    tally.ended = ended
    tally.answer_waits = _sorted_ints(answer_waits)
    tally.other_waits = _sorted_ints(other_waits)
    tally.waits_sum = waits_sum
    tally.queued_us = queued_us
    tally.handle_us = handle_us
    tally.wrap_units = int(wrap_units)
    tally.waiting = {calls[i] for i in waiting}
    return tally


def _restore_incidents(book: IncidentBook, state: Any) -> None:
    (rows, by_id, buckets, open_starts, open_set, awaiting, waiting_calls, dirty,
     dirty_buckets) = state
    incidents: list[Incident] = []
    for row in rows:
        (incident_id, grade, area, created_us, start, call_id, seq, dispatches, arrivals,
         closures, final, clock_start_us, dispatched_us, arrived_us, closed_us) = row
        incident = Incident(_PLACEHOLDER_INCIDENT, seq)
        incident.id = incident_id
        incident.grade = grade
        incident.area = area
        incident.created_us = created_us
        incident.start = start
        incident.call_id = call_id
        incident.dispatches = [(at, s) for at, s in dispatches]
        incident.arrivals = [(at, s) for at, s in arrivals]
        incident.closures = [(at, s) for at, s in closures]
        incident.final = final
        incident.clock_start_us = clock_start_us
        incident.dispatched_us = dispatched_us
        incident.arrived_us = arrived_us
        incident.closed_us = closed_us
        incidents.append(incident)
    book.incidents = {key: incidents[i] for key, i in by_id}
    book.buckets = {(grade, start): [incidents[i] for i in bucket]
                    for grade, start, bucket in buckets}
    book.open_starts = list(open_starts)
    book.open_set = set(open_set)
    book.awaiting = {key: incidents[i] for key, i in awaiting}
    book.call_incidents = {call_id: [incidents[i] for i in found]
                           for call_id, found in waiting_calls}
    book.dirty = {incidents[i] for i in dirty}
    book.dirty_buckets = {(grade, start) for grade, start in dirty_buckets}


def _restore_handlers(book: HandlerBook, state: Any) -> None:
    timelines, first_start, final_upto, dirty_from, emitted_upto, emitted_now = state
    book.timelines = {handler: [(at, seq, value) for at, seq, value in timeline]
                      for handler, timeline in timelines.items()}
    book.first_start = first_start
    book.final_upto = final_upto
    book.dirty_from = dirty_from
    book.emitted_upto = emitted_upto
    book.emitted_now = emitted_now
