"""Alerts, newest first."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import AUTH_RESPONSES, ReadModelDep, RoomFilter, Viewer

router = APIRouter(prefix="/api/v1", tags=["alerts"], dependencies=[Viewer],
                   responses=AUTH_RESPONSES)


@router.get("/alerts", summary="Alerts, newest first",
            responses={404: {"description": "unknown room"}})
def alerts(model: ReadModelDep, room: RoomFilter = None,
           state: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
           ) -> list[dict[str, Any]]:
    """Alerts (latest transition of each), optionally of one room and in one state."""
    if room is not None and not model.has_room(room):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown room {room!r}")
    return model.alerts(room, state)
