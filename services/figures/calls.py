"""Calls of one room: offered calls and their exits, intervals, repeat contacts, live queues.

Each call is a record keyed by its id, its figures derived from its own events, so applying an
event twice changes nothing (DEFINITIONS.md). The room (``engine.Room``) decides which events
arrive in time and hands them here; this part keeps the calls until their interval is final
and their caller's repeat window has passed.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
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
    IntervalCounts,
    Thresholds,
    interval_start,
    iso,
    wrap_units,
)

BUCKETS_SECONDS = (1, 5, 10, 20, 30, 60, 120, 300, 600)
Record = tuple[str, str, dict[str, Any]]
# (reason, error, event): a call's event that does not count, found when its interval closes
Reject = Callable[[str, str, Event], None]
# What one call adds to its interval's tally (BucketTally): exit type, wait µs, handling µs
# (-1 without an end), wrap-up seconds, callback success, repeat, failure demand.
Part = tuple[str | None, int, int, float, bool, bool, bool]


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
        "callback_success", "repeat", "failure", "tallied",
    )  # fmt: skip

    def __init__(self, event: Event, seq: int):
        at_us = event.at_us
        self.id: str = event.call or ""
        self.line: str = event.line or ""
        self.offered_us = at_us
        self.start = interval_start(at_us)
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
        self.tallied = False  # its part is in its open bucket's tally

    def part(self) -> Part:
        """What this call adds to its interval's figures, as derived now."""
        kind = self.exit_type
        if kind is None:
            return (None, 0, -1, 0.0, False, self.repeat, self.failure)
        wait = self.exit_us - self.offered_us
        if kind == ANSWERED:
            end = self.end_us
            if end is None:
                return (kind, wait, -1, 0.0, False, self.repeat, self.failure)
            return (kind, wait, end - self.exit_us, self.wrap_seconds, False, self.repeat,
                    self.failure)
        return (kind, wait, -1, 0.0, kind == CALLBACK and self.callback_success, self.repeat,
                self.failure)

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
        self.tallied = False
        self.event = None
        self.exits = self.ends = self.attempts = []


def _after(history: list[tuple[int, int, Call]], offered_us: int, seq: int) -> int:
    """Index of the first entry after ``(offered_us, seq)`` in a caller's sorted history.

    ``bisect`` with a key would call the key and compare tuples at every step; this compares
    the integers, compiled.
    """
    low, high = 0, len(history)
    while low < high:
        middle = (low + high) >> 1
        entry = history[middle]
        at = entry[0]
        if at < offered_us or (at == offered_us and entry[1] <= seq):
            low = middle + 1
        else:
            high = middle
    return low


class CallBook:
    """The calls of one room, bucketed by line and interval until their interval is final."""

    def __init__(self, room: str, config: Config):
        self.room = room
        self.config = config
        # read per call and per record: a field, and the lines' thresholds in a compiled dict
        # (``Config`` and its ``limits`` are not compiled)
        self.repeat_window_us = config.repeat_window_us
        self.thresholds: dict[str, Thresholds] = {}
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
        # per open bucket, its figures kept up to date as its calls change (BucketTally)
        self.tallies: dict[tuple[str, int], BucketTally] = {}
        self.lines: set[str] = set()
        self.final_summaries: dict[str, list[tuple[int, int, int, int]]] = {}
        self.final_totals: dict[str, dict[str, Any]] = {}

    def limits(self, line: str) -> Thresholds:
        """The line's thresholds (``Config.limits``)."""
        found = self.thresholds.get(line)
        if found is None:
            found = self.thresholds[line] = self.config.limits(line)
        return found

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
            self.tallies[key] = BucketTally(self.limits(call.line))
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
        # what each call added to its bucket's tally before this derivation
        before: dict[Call, Part] = {}
        for call in dirty:
            if call.tallied:
                before[call] = call.part()
            call.derive_own()
            queued = self.queued.get(call.line)
            if queued is None:
                queued = self.queued[call.line] = set()
            if call.exit_type is None:
                queued.add(call)
            else:
                queued.discard(call)
        window = self.repeat_window_us
        # A changed call can change the previous contact of the same caller's later calls.
        later: set[Call] = set()
        for call in dirty:
            if call.caller is None:
                continue
            history = self.callers[call.caller]
            limit = call.offered_us + window
            for index in range(_after(history, call.offered_us, call.seq), len(history)):
                offered_us, _seq, other = history[index]
                if offered_us > limit:
                    break
                if not other.final:
                    later.add(other)
        tallies = self.tallies
        for call in dirty | later:
            old = before.get(call)
            if old is None and call.tallied:
                old = call.part()  # a later call: only its repeat and failure can change
            self._derive_repeat(call)
            key = (call.line, call.start)
            tally = tallies.get(key)
            if tally is not None and not call.final:
                tally.update(call, old)
            self.dirty_buckets.add(key)
            self.stats_dirty.add(key)
        self.dirty_calls = set()

    def _derive_repeat(self, call: Call) -> None:
        call.repeat = call.failure = False
        if call.caller is None:
            return
        history = self.callers[call.caller]
        index = _after(history, call.offered_us - 1, 1 << 62)  # the first at its offer or later
        if index == 0:
            return
        prev_us, _seq, prev = history[index - 1]
        if prev_us < call.offered_us - self.repeat_window_us:
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
        """The bucket's record from its tally (derive first), without walking its calls."""
        line, start = key
        return self.tallies[key].record(
            self.room, line, start, self.limits(line), now, final,
            self.config.max_queue_us,
        )

    def refresh_current(self) -> None:
        """Mark the buckets whose figures change with the clock alone: open queues."""
        for key, tally in self.tallies.items():
            if tally.waiting:
                self.dirty_buckets.add(key)

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
                tally = self.tallies.pop(key)
                self.dirty_buckets.discard(key)
                self.stats_dirty.discard(key)
                self.bucket_stats.pop(key, None)
                records.append(("interval", self._key(key), record))
                self._remember(line, start, record, tally)
                queued = self.queued.get(line, set())
                for call in bucket:
                    if call.has_rejected():
                        for reason, child, error in call.rejected_children():
                            reject(reason, error, child.event)
                    call.compact()
                    if call.exit_type is None:
                        queued.discard(call)

    def _remember(self, line: str, start: int, record: dict[str, Any],
                  tally: BucketTally) -> None:
        summaries = self.final_summaries.setdefault(line, [])
        summaries.append((start, record["offered"], record["failure_demand"], 0))
        horizon = start - 24 * 3600 * US
        while summaries and summaries[0][0] < horizon:
            summaries.pop(0)
        totals = self.final_totals.get(line)
        if totals is None:
            totals = self.final_totals[line] = new_totals()
        # ``add_totals`` of the bucket's calls (the live view's BucketStats.totals), told from
        # the tally's counts and sorted waits instead of walking every call
        totals["offered"] += tally.offered
        totals["answered"] += tally.answered
        totals["abandoned"] += tally.abandoned
        totals["callbacks_requested"] += tally.callbacks
        totals["answer_wait_sum_seconds"] += tally.waits_sum / US
        totals["answer_wait_count"] += tally.answered
        buckets = totals["answer_wait_buckets"]
        waits = tally.answer_waits
        for key, bound in zip(_BUCKET_KEYS[:-1], _BUCKET_BOUNDS_US, strict=True):
            buckets[key] += waits.count_at_most(bound)
        buckets["+Inf"] += tally.answered

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
            tally = self.tallies.get(key)
            if tally is not None:
                self.bucket_stats[key] = tally.stats()
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
        # open call on each evaluation cost ~70 ms a room at 2,000 events/s. In key order: the
        # float sums below then do not depend on the order buckets changed in (a set's), so a
        # room restored from a checkpoint (services/figures/checkpoint.py) sums them alike.
        for (line, start), stats in sorted(self.stats().items()):
            short_by_line.setdefault(line, []).append((start, stats))
        hour_from = now - 3600 * US
        figures = {}
        for line in sorted(self.lines):
            short_us = self.limits(line).short_abandon_us
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


class BucketTally:
    """The figures of one open bucket, kept up to date call by call.

    Its record is the one ``kpis.interval_record`` makes by walking every call, at a cost that
    does not grow with the interval: a flush republishes the record of each changed open
    interval ten times a second, and a busy room's interval holds a quarter hour of calls
    (200,000 at 250 calls/s), so walking them every time let the worker fall behind. When a
    call is (re)derived, its previous part is taken away and its new one added: counts and
    integer sums exactly, the answer waits kept sorted for the percentiles, wrap-up seconds as
    an exact integer (``kpis.wrap_units``). Calls without an exit are kept apart: their figures
    depend on the clock, and they are few.
    """

    __slots__ = (
        "threshold_us", "short_us", "offered", "answered", "abandoned", "short_abandoned",
        "callbacks", "answered_within", "abandoned_within", "band_10", "band_60", "band_over",
        "callback_successes", "repeat_contacts", "failure_demand", "ended", "answer_waits",
        "other_waits", "waits_sum", "queued_us", "handle_us", "wrap_units", "waiting",
    )  # fmt: skip

    def __init__(self, limits: Thresholds):
        self.threshold_us = limits.threshold_us
        self.short_us = limits.short_abandon_us
        self.offered = self.answered = self.abandoned = self.short_abandoned = 0
        self.callbacks = self.answered_within = self.abandoned_within = 0
        self.band_10 = self.band_60 = self.band_over = 0
        self.callback_successes = self.repeat_contacts = self.failure_demand = 0
        self.ended = 0
        self.answer_waits = SortedInts()
        self.other_waits = SortedInts()  # of abandons and callback requests
        self.waits_sum = 0  # of the answer waits
        self.queued_us = 0
        self.handle_us = 0
        self.wrap_units = 0
        self.waiting: set[Call] = set()  # calls with no exit yet

    def update(self, call: Call, old: Part | None) -> None:
        """Replace the call's previous part (``None``: not tallied yet) by its part now.

        Only what changed is taken away and added again (an end leaves the answer wait where
        it is, a repeat changes only the repeat counts): most calls change three times.
        """
        new = call.part()
        if old == new:
            return
        if old is None:
            self.offered += 1
            self._flags(new, 1)
            self._exit(new, call, 1)
            self._end(new, 1)
            call.tallied = True
            return
        if old[5] != new[5] or old[6] != new[6]:
            self._flags(old, -1)
            self._flags(new, 1)
        if old[0] != new[0] or old[1] != new[1] or old[4] != new[4]:
            self._exit(old, call, -1)
            self._exit(new, call, 1)
        if old[2] != new[2] or old[3] != new[3]:
            self._end(old, -1)
            self._end(new, 1)

    def _flags(self, part: Part, sign: int) -> None:
        if part[5]:
            self.repeat_contacts += sign
            if part[6]:
                self.failure_demand += sign

    def _end(self, part: Part, sign: int) -> None:
        handle = part[2]
        if handle >= 0:  # an answered call that ended
            self.ended += sign
            self.handle_us += sign * handle
            wrap = part[3]
            if wrap:  # (units are big integers: none is made for no wrap-up)
                units = wrap_units(wrap)
                self.wrap_units += units if sign > 0 else -units

    def _exit(self, part: Part, call: Call, sign: int) -> None:
        kind, wait = part[0], part[1]
        if kind is None:
            if sign > 0:
                self.waiting.add(call)
            else:
                self.waiting.discard(call)
            return
        self.queued_us += sign * wait
        if kind == ANSWERED:
            self.answered += sign
            self.waits_sum += sign * wait
            self.answer_waits.change(wait, sign)
            if wait < self.threshold_us:
                self.answered_within += sign
            if wait < 10 * US:
                self.band_10 += sign
            elif wait < 60 * US:
                self.band_60 += sign
            else:
                self.band_over += sign
            return
        self.other_waits.change(wait, sign)
        if kind == ABANDONED:
            self.abandoned += sign
            if wait < self.short_us:
                self.short_abandoned += sign
            if wait < self.threshold_us:
                self.abandoned_within += sign
        else:
            self.callbacks += sign
            if part[4]:
                self.callback_successes += sign

    def record(
        self, room: str, line: str, start: int, limits: Thresholds, now: int, final: bool,
        max_queue_us: int,
    ) -> dict[str, Any]:
        """The interval record (``kpis.interval_record`` of the bucket's calls) as of ``now``."""
        waits, others = self.answer_waits, self.other_waits
        max_wait: int | None = None
        if waits.size:
            max_wait = waits.last()
        if others.size and (max_wait is None or others.last() > max_wait):
            max_wait = others.last()
        in_queue = orphaned = 0
        for call in self.waiting:
            age = now - call.offered_us
            if final or age >= max_queue_us:
                orphaned += 1
            else:
                in_queue += 1
                age = max(age, 0)
                if max_wait is None or age > max_wait:
                    max_wait = age
        counts = IntervalCounts(
            offered=self.offered, answered=self.answered, abandoned=self.abandoned,
            short_abandoned=self.short_abandoned, callbacks=self.callbacks, in_queue=in_queue,
            orphaned=orphaned, answered_within=self.answered_within,
            abandoned_within=self.abandoned_within, band_10=self.band_10,
            band_60=self.band_60, band_over=self.band_over,
            callback_successes=self.callback_successes,
            repeat_contacts=self.repeat_contacts, failure_demand=self.failure_demand,
            ended=self.ended,
        )
        n = waits.size
        p50 = waits.kth(kpis.rank_index(n, 1, 2)) if n else None
        p90 = waits.kth(kpis.rank_index(n, 9, 10)) if n else None
        return kpis.interval_fields(
            room, line, start, limits, final, counts, p50, p90, self.waits_sum, max_wait,
            self.queued_us, self.handle_us, self.wrap_units,
        )

    def stats(self) -> BucketStats:
        """The live view's summary of the bucket (``BucketStats.of`` its calls)."""
        totals = new_totals()
        waits = self.answer_waits
        buckets = totals["answer_wait_buckets"]
        for key, bound in zip(_BUCKET_KEYS[:-1], _BUCKET_BOUNDS_US, strict=True):
            buckets[key] = waits.count_at_most(bound)
        buckets["+Inf"] = self.answered
        totals["offered"] = self.offered
        totals["answered"] = self.answered
        totals["abandoned"] = self.abandoned
        totals["callbacks_requested"] = self.callbacks
        totals["answer_wait_sum_seconds"] += self.waits_sum / US
        totals["answer_wait_count"] = self.answered
        return BucketStats(self.offered, self.abandoned, self.short_abandoned,
                           self.failure_demand, totals)


_CHUNK = 512  # SortedInts: values per chunk after a split


class SortedInts:
    """A sorted multiset of integers in chunks, so that adding one costs O(sqrt n), not O(n).

    One flat sorted list moves half its items at each insertion: a busy interval's 200,000
    answer waits made that most of a flush. Chunks hold at most ``2 * _CHUNK`` values, every
    value of a chunk at most every value of the next; ``maxes`` holds each chunk's last.
    """

    __slots__ = ("chunks", "maxes", "size")

    def __init__(self) -> None:
        self.chunks: list[list[int]] = []
        self.maxes: list[int] = []
        self.size = 0

    def change(self, value: int, sign: int) -> None:
        """Add one ``value`` (sign 1) or take one out (-1: it must be there)."""
        if sign > 0:
            self.add(value)
        else:
            self.remove(value)

    def add(self, value: int) -> None:
        """Add one ``value``."""
        chunks, maxes = self.chunks, self.maxes
        self.size += 1
        if not chunks:
            chunks.append([value])
            maxes.append(value)
            return
        index = bisect_left(maxes, value)
        if index == len(maxes):  # beyond every value: at the end of the last chunk
            index -= 1
            chunks[index].append(value)
            maxes[index] = value
        else:
            insort(chunks[index], value)
        chunk = chunks[index]
        if len(chunk) > 2 * _CHUNK:
            rest = chunk[_CHUNK:]
            del chunk[_CHUNK:]
            chunks.insert(index + 1, rest)
            maxes[index] = chunk[-1]
            maxes.insert(index + 1, rest[-1])

    def remove(self, value: int) -> None:
        """Take one ``value`` out (it must be there)."""
        # the first chunk whose last is at least the value holds it
        index = bisect_left(self.maxes, value)
        chunk = self.chunks[index]
        del chunk[bisect_left(chunk, value)]
        self.size -= 1
        if chunk:
            self.maxes[index] = chunk[-1]
        else:
            del self.chunks[index]
            del self.maxes[index]

    def last(self) -> int:
        """The largest value (not empty)."""
        return self.maxes[-1]

    def kth(self, k: int) -> int:
        """The value at index ``k`` (0-based) of the ascending order."""
        for chunk in self.chunks:
            if k < len(chunk):
                return chunk[k]
            k -= len(chunk)
        raise IndexError(k)

    def count_at_most(self, bound: int) -> int:
        """How many values are ``<= bound``."""
        index = bisect_right(self.maxes, bound)
        count = sum(len(chunk) for chunk in self.chunks[:index])
        if index < len(self.chunks):
            count += bisect_right(self.chunks[index], bound)
        return count

    def values(self) -> list[int]:
        """Every value, ascending."""
        return [value for chunk in self.chunks for value in chunk]


def new_totals() -> dict[str, Any]:
    """Empty cumulative totals of one line (TOPICS.md ``totals``)."""
    return {
        "offered": 0,
        "answered": 0,
        "abandoned": 0,
        "callbacks_requested": 0,
        "answer_wait_buckets": dict.fromkeys(_BUCKET_KEYS, 0),
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
