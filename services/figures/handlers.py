"""Call handlers of one room: state timelines and the handler records per interval.

A handler's state lasts until their next state, so the latest states change the current
interval with the clock alone; a timeline is cut back to the last state before the open
intervals once those before are final.
"""

from __future__ import annotations

from bisect import insort

from services.contract.events import Event
from services.figures import kpis
from services.figures.calls import Record
from services.figures.kpis import INTERVAL_US, interval_start, iso


class HandlerBook:
    """The handler timelines of one room and which of their intervals are final."""

    def __init__(self, room: str):
        self.room = room
        self.timelines: dict[str, list[tuple[int, int, str]]] = {}
        self.first_start: int | None = None
        self.final_upto: int | None = None  # next handler interval start not yet final
        self.dirty_from: int | None = None
        self.emitted_upto: int | None = None
        self.emitted_now: int | None = None

    def state(self, event: Event, seq: int, at_us: int, start: int) -> None:
        """Take a ``handler.state`` of an open interval (its time and interval's start given).

        The room has read the time and found the interval: an event's fields are attributes
        of a Python object, each read costing a look-up, so each is read once.
        """
        handler, state = event.handler, event.state
        assert handler is not None and state is not None
        timeline = self.timelines.get(handler)
        mark = (at_us, seq, state)
        if timeline is None:
            self.timelines[handler] = [mark]
        elif timeline[-1][0] < at_us:  # the usual case: in time order
            timeline.append(mark)
        else:
            insort(timeline, mark)
        if self.first_start is None or start < self.first_start:
            self.first_start = start
            if self.final_upto is None or start < self.final_upto:
                self.final_upto = start
        if self.dirty_from is None or start < self.dirty_from:
            self.dirty_from = start

    def _record(self, start: int, now: int, final: bool) -> Record:
        record = kpis.handler_record(self.room, start, self.timelines.values(), now, final)
        return ("handlers", f"{self.room}|handlers|{iso(start)}", record)

    def flush(self, now: int, records: list[Record]) -> None:
        """Handler records of open intervals that changed, up to the one holding now."""
        if self.final_upto is None:
            return
        last = interval_start(now)
        start = self.dirty_from
        if self.emitted_now != now:
            # the latest states last "until now": the interval holding now, and any interval
            # now has moved into, change with the clock alone
            emitted = self.emitted_upto
            moved = last if emitted is None else min(emitted, last)
            start = moved if start is None else min(start, moved)
        if start is None:
            return
        start = max(start, self.final_upto)
        while start <= last:
            records.append(self._record(start, now, False))
            start += INTERVAL_US
        self.emitted_upto = last
        self.emitted_now = now
        self.dirty_from = None

    def refresh_current(self, now: int) -> None:
        """Mark the interval holding now: it changes with the clock alone."""
        if self.timelines:
            current = interval_start(now)
            if self.dirty_from is None or current < self.dirty_from:
                self.dirty_from = current

    def finalize(self, closed_us: int, records: list[Record]) -> None:
        """Final handler records of the intervals ending by ``closed_us``."""
        if self.final_upto is None:
            return
        start = self.final_upto
        if start + INTERVAL_US > closed_us:
            return
        while start + INTERVAL_US <= closed_us:
            records.append(self._record(start, start + INTERVAL_US, True))
            start += INTERVAL_US
        self.final_upto = start
        # Keep, per handler, only the last state before the open intervals: it carries forward.
        for handler, timeline in self.timelines.items():
            cut = kpis.first_from(timeline, start)
            if cut > 1:
                self.timelines[handler] = timeline[cut - 1:]

    def counts_at(self, now: int) -> dict[str, int]:
        """How many handlers are in each state at ``now`` (METRICS.md, "Live state")."""
        counts = dict.fromkeys(kpis.HANDLER_STATES, 0)
        for timeline in self.timelines.values():
            state = None
            for at_us, _seq, value in reversed(timeline):
                if at_us <= now:
                    state = value
                    break
            if state is not None:
                counts[state] += 1
        return counts
