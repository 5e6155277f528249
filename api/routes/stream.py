"""Server-sent events: live state, interval and alert changes as they happen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from api.deps import AUTH_RESPONSES, ReadModelDep, RoomFilter, SettingsDep, authenticate, bearer
from api.readmodel import ReadModel

KEEPALIVE_SECONDS = 15
router = APIRouter(prefix="/api/v1", tags=["stream"], responses=AUTH_RESPONSES)


def stream_caller(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Viewers (and above) only: by bearer token, or by session cookie (EventSource sends it)."""
    authenticate(request, settings, credentials)


def _event(name: str, data: Any) -> ServerSentEvent:
    # orjson: a room's live state in 5 µs instead of the standard library's 70 µs, for each
    # client and each live message (every 100 ms per room)
    return ServerSentEvent(data=orjson.dumps(data).decode(), event=name)


async def _events(request: Request, model: ReadModel, room: str | None,
                  ) -> AsyncIterator[ServerSentEvent]:
    sub = model.subscribe(room)
    try:
        # The current state first, so that a (re)connecting client is never stale.
        for state in model.live_states():
            if room is None or state.get("room") == room:
                yield _event("live", state)
        while not sub.overflowed:
            try:
                name, data, received_us = await asyncio.wait_for(sub.queue.get(), 1.0)
            except TimeoutError:
                if await request.is_disconnected():
                    break
                continue
            yield _event(name, data)
            # resumed once the event was handed to the connection: the "sse" stage
            if received_us:
                model.freshness.observe("sse", (time.time_ns() // 1000 - received_us) / 1e6)
    finally:
        model.unsubscribe(sub)


@router.get(
    "/stream",
    summary="Server-sent events: live, interval and alert messages as they happen",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "events `live` (a room's live state), `interval` "
                                    "(`{kind, record}`) and `alert`; a comment every 15 s"}},
    dependencies=[Depends(stream_caller)],
)
def stream(request: Request, model: ReadModelDep, room: RoomFilter = None) -> EventSourceResponse:
    """Stream changes (optionally of one room) until the client goes away."""
    return EventSourceResponse(_events(request, model, room), ping=KEEPALIVE_SECONDS,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
