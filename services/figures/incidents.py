"""Incidents of one room: creation, first dispatch and arrival, attendance per grade.

The attendance clock starts at the linked call when it is known (METRICS.md), so an incident
is re-derived when its call arrives. Incidents stay open for the attendance horizon, far longer
than calls, because resources arrive hours later.
"""

from __future__ import annotations

import heapq
from typing import Any

from services.contract.events import Event
from services.figures import kpis
from services.figures.calls import Call, Child, Record
from services.figures.kpis import INTERVAL_US, interval_start, iso


class Incident:
    """One incident: creation, first dispatch and arrival, closure."""

    __slots__ = ("id", "grade", "area", "created_us", "start", "call_id", "seq",
                 "dispatches", "arrivals", "closures", "final", "clock_start_us",
                 "dispatched_us", "arrived_us", "closed_us")  # fmt: skip

    def __init__(self, event: Event, seq: int):
        self.id: str = event.incident or ""
        self.grade: str = event.grade or "resolution"
        self.area = event.area
        at_us = event.at_us
        self.created_us = at_us
        self.start = interval_start(at_us)
        self.call_id = event.call
        self.seq = seq
        self.dispatches: list[tuple[int, int]] = []
        self.arrivals: list[tuple[int, int]] = []
        self.closures: list[tuple[int, int]] = []
        self.final = False
        self.clock_start_us = at_us
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


class IncidentBook:
    """The incidents of one room, bucketed by grade and interval of creation."""

    def __init__(self, room: str):
        self.room = room
        self.incidents: dict[str, Incident] = {}
        self.buckets: dict[tuple[str, int], list[Incident]] = {}
        self.open_starts: list[int] = []
        self.open_set: set[int] = set()
        self.awaiting: dict[str, Incident] = {}  # created, not dispatched, not closed
        self.call_incidents: dict[str, list[Incident]] = {}  # waiting for their call
        self.dirty: set[Incident] = set()
        self.dirty_buckets: set[tuple[str, int]] = set()

    def get(self, incident_id: str) -> Incident | None:
        """The incident with this id, while it is remembered."""
        return self.incidents.get(incident_id)

    def create(self, event: Event, seq: int, call_known: bool) -> Incident:
        """Take an ``incident.created`` of an open interval whose id is new."""
        incident = Incident(event, seq)
        self.incidents[incident.id] = incident
        start = incident.start
        key = (incident.grade, start)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = []
            if start not in self.open_set:
                self.open_set.add(start)
                heapq.heappush(self.open_starts, start)
        bucket.append(incident)
        if incident.call_id and not call_known:
            self.call_incidents.setdefault(incident.call_id, []).append(incident)
        self.awaiting[incident.id] = incident
        self.dirty.add(incident)
        return incident

    def call_arrived(self, call_id: str) -> None:
        """A call came: the incidents created for it restart their clocks at its offer."""
        for incident in self.call_incidents.pop(call_id, ()):
            self.dirty.add(incident)

    def attach(self, incident: Incident, child: Child) -> None:
        """Add a dispatch, arrival or closure to its incident."""
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
        self.dirty.add(incident)

    def derive(self, calls: dict[str, Call]) -> None:
        """Re-derive changed incidents."""
        for incident in self.dirty:
            incident.derive(calls)
            self.dirty_buckets.add((incident.grade, incident.start))
        self.dirty = set()

    def _key(self, key: tuple[str, int]) -> str:
        return f"{self.room}|grade:{key[0]}|{iso(key[1])}"

    def _record(self, key: tuple[str, int], final: bool) -> dict[str, Any]:
        grade, start = key
        return kpis.attendance_record(self.room, grade, start, self.buckets[key], final)

    def flush(self, records: list[Record]) -> None:
        """The attendance records of buckets that changed (derive first)."""
        for key in self.dirty_buckets:
            if key in self.buckets:
                records.append(("attendance", self._key(key), self._record(key, False)))
        self.dirty_buckets = set()

    def finalizable(self, closed_us: int) -> bool:
        """Whether an open interval ends at or before ``closed_us``."""
        heap = self.open_starts
        return bool(heap) and heap[0] + INTERVAL_US <= closed_us

    def finalize(self, closed_us: int, records: list[Record]) -> None:
        """Final attendance records of intervals ending by ``closed_us`` (derive first)."""
        heap = self.open_starts
        while heap and heap[0] + INTERVAL_US <= closed_us:
            start = heapq.heappop(heap)
            self.open_set.discard(start)
            for grade in kpis.GRADES:
                key = (grade, start)
                incidents = self.buckets.get(key)
                if incidents is None:
                    continue
                records.append(("attendance", self._key(key), self._record(key, True)))
                del self.buckets[key]
                self.dirty_buckets.discard(key)
                for incident in incidents:
                    incident.final = True
                    self.awaiting.pop(incident.id, None)

    def prune(self, oldest: int) -> None:
        """Forget final incidents created before ``oldest``."""
        for incident_id in [i for i, inc in self.incidents.items()
                            if inc.final and inc.created_us < oldest]:
            del self.incidents[incident_id]

    def waiting_for_dispatch(self) -> list[Incident]:
        """Incidents created and neither dispatched nor closed, for the live view."""
        return list(self.awaiting.values())
