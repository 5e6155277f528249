"""Rooms and their live state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.deps import AUTH_RESPONSES, ReadModelDep, RoomDep, Viewer

router = APIRouter(prefix="/api/v1", tags=["rooms"], dependencies=[Viewer],
                   responses=AUTH_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown room"}}


@router.get("/rooms", summary="Known rooms and their lines")
def list_rooms(model: ReadModelDep) -> list[dict[str, Any]]:
    """Every room seen in the published records or live state, with its lines."""
    return model.rooms()


@router.get("/rooms/{room}/live", summary="Live state of one room (METRICS.md, Live state)",
            responses=NOT_FOUND)
def room_live(room: RoomDep, model: ReadModelDep) -> dict[str, Any]:
    """The latest live state the worker published for the room."""
    state = model.live(room)
    if state is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no live state for room {room!r} yet: is a worker running?")
    return state
