"""Interval records: calls per line, attendance per grade, handler states."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
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
from api.readmodel import ReadModel
from services.contract.events import format_time
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


class StoredCache:
    """Recent answers of the history store, kept ``ttl`` seconds, at most ``max_bytes`` in all.

    Records older than the read model's horizon are final: they change only when a late
    correction arrives, so a report or dashboard asking for the same month again and again
    is answered without the database for a while.
    """

    def __init__(self, ttl: float = 30.0, max_bytes: int = 128 << 20) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.entries: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], list[str]]) -> bytes:
        """The records of ``key`` as comma-separated JSON texts, loaded when missing or old."""
        now = time.monotonic()
        with self.lock:
            found = self.entries.get(key)
            if found is not None and found[0] > now:
                self.entries.move_to_end(key)
                return found[1]
        body = ",".join(load()).encode()
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.size -= len(old[1])
            if len(body) <= self.max_bytes // 4:
                self.entries[key] = (now + self.ttl, body)
                self.size += len(body)
                while self.size > self.max_bytes:
                    _key, (_expires, dropped) = self.entries.popitem(last=False)
                    self.size -= len(dropped)
        return body


STORED = StoredCache()


def _with_history(room: str, model: ReadModel, store: Any | None, span: TimeRange,
                  recent: Callable[[], Records], kind: str, sub: str | None) -> Response:
    """Recent records from memory, older ones from the history store, oldest first.

    The store answers ``[start, horizon)`` and memory ``[horizon, end)``: records before the
    read model's horizon are final, and the store has them. The store's JSON texts are sent as
    stored, without decoding (a month is thousands of records).

    Raises:
        HTTPException: 503 naming the store when the range needs it and it cannot answer.
    """
    horizon = model.oldest_interval(room)
    if store is None or horizon is None or (span.start is not None and span.start >= horizon):
        return json_records(recent())
    end = horizon if span.end is None else min(span.end, horizon)
    try:
        stored = STORED.get(
            (id(store), kind, room, sub, span.start, end),
            lambda: store.record_texts(kind, room, span.start, end, sub=sub))
    except StoreError as exc:
        raise history_unavailable(exc) from None
    cut = format_time(horizon)
    memory = orjson.dumps([r for r in recent() if r["interval_start"] >= cut])[1:-1]
    return Response(b"[" + stored + (b"," if stored and memory else b"") + memory + b"]",
                    media_type="application/json")


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
    return _with_history(room, model, store, span,
                         lambda: model.intervals(room, line, span.start, span.end),
                         "interval", line)


@router.get("/attendance", summary="Incident and attendance records per interval and grade",
            responses=HISTORY, response_model=Records)
def attendance(room: RoomDep, model: ReadModelDep, store: StoreDep, span: TimeRangeDep,
               grade: Annotated[Grade | None, Query()] = None) -> Response:
    """Records by interval of incident creation, oldest first, then by grade.

    Recent records come from memory; older ones from the history store.
    """
    return _with_history(room, model, store, span,
                         lambda: model.attendance(room, grade, span.start, span.end),
                         "attendance", grade)


@router.get("/handlers", summary="Handler-state seconds and occupancy per interval",
            responses=HISTORY, response_model=Records)
def handlers(room: RoomDep, model: ReadModelDep, store: StoreDep, span: TimeRangeDep) -> Response:
    """Handler records, oldest first: recent ones from memory, older ones from the store."""
    return _with_history(room, model, store, span,
                         lambda: model.handlers(room, span.start, span.end), "handlers", None)
