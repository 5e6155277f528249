"""Calls of one room: offered calls and their exits, intervals, repeat contacts, live queues.

Each call is a record keyed by its id, its figures derived from its own events, so applying an
event twice changes nothing (DEFINITIONS.md). The room (``engine.Room``) decides which events
arrive in time and hands them here; this part keeps the calls until their interval is final
and their caller's repeat window has passed.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from services.contract.events import Event
from services.figures import kpis
from services.figures.config import Config
from services.figures.kpis import (
    ABANDONED,
    ANSWERED,
    CALLBACK,
    INTERVAL_US,
    US,
    interval_start,
    iso,
)

BUCKETS_SECONDS = (1, 5, 10, 20, 30, 60, 120, 300, 600)
Record = tuple[str, str, dict[str, Any]]
# (reason, error, event): a call's event that does not count, found when its interval closes
Reject = Callable[[str, str, Event], None]


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


class CallBook:
    """The calls of one room, bucketed by line and interval until their interval is final."""

    def __init__(self, room: str, config: Config):
        self.room = room
        self.config = config
        self.calls: dict[str, Call] = {}
        self.buckets: dict[tuple[str, int], list[Call]] = {}
        self.open_starts: list[int] = []  # heap of starts of open call buckets
        self.open_start_set: set[int] = set()
        self.callers: dict[str, list[tuple[int, int, Call]]] = {}
        self.offers: deque[Call] = deque()  # accepted calls in arrival order, for pruning
        self.dirty_calls: set[Call] = set()
        self.dirty_buckets: set[tuple[str, int]] = set()
        # for the live view: calls with no exit by line, and per open bucket its summary
        self.queued: dict[str, set[Call]] = {}
        self.stats_dirty: set[tuple[str, int]] = set()
        self.bucket_stats: dict[tuple[str, int], BucketStats] = {}
        self.lines: set[str] = set()
        self.final_summaries: dict[str, list[tuple[int, int, int, int]]] = {}
        self.final_totals: dict[str, dict[str, Any]] = {}

    # --------------------------------------------------------------- events

    def get(self, call_id: str) -> Call | None:
        """The call with this id, while it is remembered."""
        return self.calls.get(call_id)

    def offer(self, event: Event, seq: int) -> Call:
        """Take a ``call.offered`` of an open interval whose id is new."""
        call = Call(event, seq)
        self.calls[call.id] = call
        self.offers.append(call)
        self.lines.add(call.line)
        start = call.start
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
        return call

    def attach(self, call: Call, child: Child) -> None:
        """Add an exit, end or callback attempt to its call."""
        etype = child.event.type
        if etype == "call.ended":
            call.ends.append(child)
        elif etype == "callback.attempted":
            call.attempts.append(child)
        else:
            call.exits.append(child)
        self.dirty_calls.add(call)

    # ------------------------------------------------------------ derivation

    def derive(self) -> None:
        """Re-derive changed calls: own state first, then repeat contacts and failure demand."""
        if not self.dirty_calls:
            return
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

    # -------------------------------------------------------------- records

    def flush(self, now: int, records: list[Record]) -> None:
        """The interval records of buckets that changed (derive first)."""
        for key in self.dirty_buckets:
            if key in self.buckets:
                records.append(("interval", self._key(key), self._record(key, now)))
        self.dirty_buckets = set()

    def _key(self, key: tuple[str, int]) -> str:
        return f"{self.room}|{key[0]}|{iso(key[1])}"

    def _record(self, key: tuple[str, int], now: int, final: bool = False) -> dict[str, Any]:
        line, start = key
        return kpis.interval_record(
            self.room, line, start, self.buckets[key], self.config.limits(line), now, final,
            self.config.max_queue_us,
        )

    def refresh_current(self) -> None:
        """Mark the buckets whose figures change with the clock alone: open queues."""
        for (line, start), bucket in self.buckets.items():
            if any(c.exit_type is None for c in bucket):
                self.dirty_buckets.add((line, start))

    # ----------------------------------------------------------- finalizing

    def finalizable(self, closed_us: int) -> bool:
        """Whether an open interval ends at or before ``closed_us``."""
        heap = self.open_starts
        return bool(heap) and heap[0] + INTERVAL_US <= closed_us

    def finalize(self, closed_us: int, records: list[Record], reject: Reject) -> None:
        """Final records of the intervals ending by ``closed_us`` (derive first)."""
        heap = self.open_starts
        while heap and heap[0] + INTERVAL_US <= closed_us:
            start = heapq.heappop(heap)
            self.open_start_set.discard(start)
            for line in sorted(self.lines):
                key = (line, start)
                bucket = self.buckets.get(key)
                if bucket is None:
                    continue
                record = self._record(key, closed_us + self.config.grace_us, final=True)
                del self.buckets[key]
                self.dirty_buckets.discard(key)
                self.stats_dirty.discard(key)
                self.bucket_stats.pop(key, None)
                records.append(("interval", self._key(key), record))
                self._remember(line, start, record, bucket)
                queued = self.queued.get(line, set())
                for call in bucket:
                    if call.has_rejected():
                        for reason, child, error in call.rejected_children():
                            reject(reason, error, child.event)
                    call.compact()
                    if call.exit_type is None:
                        queued.discard(call)

    def _remember(self, line: str, start: int, record: dict[str, Any], calls: list[Call]) -> None:
        summaries = self.final_summaries.setdefault(line, [])
        summaries.append((start, record["offered"], record["failure_demand"], 0))
        horizon = start - 24 * 3600 * US
        while summaries and summaries[0][0] < horizon:
            summaries.pop(0)
        totals = self.final_totals.setdefault(line, new_totals())
        add_totals(totals, calls)

    def prune(self, oldest: int) -> None:
        """Forget calls offered before ``oldest`` (memory only: no figure depends on when)."""
        # Calls in arrival order: a call that arrived late behind a younger one goes at a
        # later pruning.
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

    # ------------------------------------------------------------- live view

    def stats(self) -> dict[tuple[str, int], BucketStats]:
        """Summaries of the open buckets, recomputed only for buckets that changed."""
        for key in self.stats_dirty:
            calls = self.buckets.get(key)
            if calls is not None:
                self.bucket_stats[key] = BucketStats.of(
                    calls, self.config.limits(key[0]).short_abandon_us)
        self.stats_dirty = set()
        return self.bucket_stats

    def queue(self, line: str, now: int) -> tuple[int, int | None]:
        """Calls of ``line`` waiting now (not yet orphaned), and the longest wait in µs."""
        limit = self.config.max_queue_us
        count = 0
        longest: int | None = None
        for call in self.queued.get(line, ()):
            wait = now - call.offered_us
            if wait < limit:
                count += 1
                if longest is None or wait > longest:
                    longest = wait
        return count, longest

    def interval_now(self, line: str, start: int, now: int) -> dict[str, Any] | None:
        """The open interval record of ``line`` starting at ``start``, if it has calls."""
        key = (line, start)
        return self._record(key, now) if key in self.buckets else None

    def line_figures(self, now: int) -> dict[str, LineFigures]:
        """Per line: the last hour, the last 24 hours and the totals (derive first)."""
        short_by_line: dict[str, list[tuple[int, BucketStats]]] = {}
        # Summaries per open bucket, recomputed only where something changed: walking every
        # open call on each evaluation cost ~70 ms a room at 2,000 events/s.
        for (line, start), stats in self.stats().items():
            short_by_line.setdefault(line, []).append((start, stats))
        hour_from = now - 3600 * US
        figures = {}
        for line in sorted(self.lines):
            short_us = self.config.limits(line).short_abandon_us
            hour_offered = abandoned = short = 0
            day_offered = day_failure = 0
            totals = _copy_totals(self.final_totals.get(line) or new_totals())
            for start, stats in short_by_line.get(line, ()):
                day_offered += stats.offered
                day_failure += stats.failure_demand
                merge_totals(totals, stats.totals)
                if start >= hour_from:  # the whole bucket is inside the last hour
                    hour_offered += stats.offered
                    abandoned += stats.abandoned
                    short += stats.short_abandoned
                elif start + INTERVAL_US > hour_from:  # the bucket the hour starts in
                    for c in self.buckets[(line, start)]:
                        if c.offered_us >= hour_from:
                            hour_offered += 1
                            if c.exit_type == ABANDONED:
                                abandoned += 1
                                short += c.exit_us - c.offered_us < short_us
            for start, offered, failure, _ in self.final_summaries.get(line, ()):
                if start >= now - 24 * 3600 * US:
                    day_offered += offered
                    day_failure += failure
            figures[line] = LineFigures(hour_offered, abandoned, short, day_offered,
                                        day_failure, totals)
        return figures


@dataclass
class LineFigures:
    """What the live state shows of a line beyond its current interval."""

    hour_offered: int
    hour_abandoned: int
    hour_short_abandoned: int
    day_offered: int
    day_failure_demand: int
    totals: dict[str, Any]  # cumulative since the room started (TOPICS.md ``totals``)


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


def merge_totals(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Add one set of cumulative line totals to another."""
    for name, value in more.items():
        if name == "answer_wait_buckets":
            buckets = into[name]
            for bound, count in value.items():
                buckets[bound] += count
        else:
            into[name] += value


def _copy_totals(totals: dict[str, Any]) -> dict[str, Any]:
    return {**totals, "answer_wait_buckets": dict(totals["answer_wait_buckets"])}
