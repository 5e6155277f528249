"""Interval records: calls per line, attendance per grade, handler states."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Response

from api.deps import (
    AUTH_RESPONSES,
    LineQuery,
    ReadModelDep,
    RoomDep,
    StoreDep,
    TimeRange,
    TimeRangeDep,
    Viewer,
    history_unavailable,
)
from api.readmodel import ReadModel, merge_by_key
from services.history.store import StoreError

router = APIRouter(prefix="/api/v1/rooms/{room}", tags=["intervals"], dependencies=[Viewer],
                   responses=AUTH_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown room"}}
HISTORY: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND, 503: {"description": "the range reaches back to the history store, and the "
                                      "store cannot answer now (the message names it)"}}
Grade = Literal["immediate", "priority", "scheduled", "resolution"]


Records = list[dict[str, Any]]


def json_records(records: Records) -> Response:
    """Records as JSON bytes, straight from orjson.

    A day of a room's intervals is a few hundred nested records: FastAPI's generic encoder
    took tens of milliseconds per response (API p99 goal: 50 ms at 500 requests/s).
    """
    return Response(orjson.dumps(records), media_type="application/json")


class ResponseCache:
    """The bytes of recent answers, valid while the read model's version of them holds.

    Dashboards ask for the same day of intervals again and again; the records change only
    when the worker publishes, so most requests are served without touching a record.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, version: Hashable) -> Response | None:
        """The cached answer of ``key`` if it is of ``version``."""
        with self.lock:
            found = self.entries.get(key)
            if found is None or found[0] != version:
                return None
            self.entries.move_to_end(key)
        return Response(found[1], media_type="application/json")

    def put(self, key: Hashable, version: Hashable, response: Response) -> Response:
        """Remember an answer."""
        with self.lock:
            self.entries[key] = (version, bytes(response.body))
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return response


CACHE = ResponseCache()


def _with_history(room: str, model: ReadModel, store: Any | None, span: TimeRange,
                  recent: Callable[[], Records], older: Callable[[Any, datetime], Records],
                  key: tuple[str, ...], then: str) -> Response:
    """Recent records from memory, older ones from the history store, merged oldest first.

    Raises:
        HTTPException: 503 naming the store when the range needs it and it cannot answer.
    """
    horizon = model.oldest_interval(room)
    if store is None or horizon is None or (span.start is not None and span.start >= horizon):
        return json_records(recent())
    end = horizon if span.end is None else min(span.end, horizon)
    try:
        stored = older(store, end)
    except StoreError as exc:
        raise history_unavailable(exc) from None
    return json_records(merge_by_key(stored, recent(), key, then))


@router.get("/intervals", summary="Call interval records, oldest first", responses=HISTORY,
            response_model=Records)
def intervals(room: RoomDep, model: ReadModelDep, store: StoreDep, span: TimeRangeDep,
              line: LineQuery = None) -> Response:
    """Records with ``start ≤ interval_start < end``, oldest first, then by line.

    Recent intervals come from memory; older ones from the history store, when there is one.
    """
    horizon = model.oldest_interval(room)
    if store is None or horizon is None or (span.start is not None and span.start >= horizon):
        key = ("intervals", id(model), room, line, span.start, span.end)
        version = model.version(room, "interval")
        cached = CACHE.get(key, version)
        if cached is not None:
            return cached
        return CACHE.put(key, version, json_records(
            model.intervals(room, line, span.start, span.end)))
    return _with_history(
        room, model, store, span, lambda: model.intervals(room, line, span.start, span.end),
        lambda history, end: history.intervals(room, line=line, start=span.start, end=end),
        ("room", "line", "interval_start"), "line")


@router.get("/attendance", summary="Incident and attendance records per interval and grade",
            responses=HISTORY, response_model=Records)
def attendance(room: RoomDep, model: ReadModelDep, store: StoreDep, span: TimeRangeDep,
               grade: Annotated[Grade | None, Query()] = None) -> Response:
    """Records by interval of incident creation, oldest first, then by grade.

    Recent records come from memory; older ones from the history store.
    """
    return _with_history(
        room, model, store, span, lambda: model.attendance(room, grade, span.start, span.end),
        lambda history, end: history.attendance(room, span.start, end, grade=grade),
        ("room", "grade", "interval_start"), "grade")


@router.get("/handlers", summary="Handler-state seconds and occupancy per interval",
            responses=HISTORY, response_model=Records)
def handlers(room: RoomDep, model: ReadModelDep, store: StoreDep, span: TimeRangeDep) -> Response:
    """Handler records, oldest first: recent ones from memory, older ones from the store."""
    return _with_history(
        room, model, store, span, lambda: model.handlers(room, span.start, span.end),
        lambda history, end: history.handlers(room, span.start, end),
        ("room", "interval_start"), "")
