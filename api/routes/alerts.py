"""Alerts, newest first; acknowledging an episode; the episodes' history (an audit trail)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import (
    AUTH_RESPONSES,
    AwareTime,
    ReadModelDep,
    RoomDep,
    RoomFilter,
    StoreDep,
    SupervisorDep,
    TimeRangeDep,
    Viewer,
)
from api.readmodel import episode_of

router = APIRouter(prefix="/api/v1", tags=["alerts"], responses=AUTH_RESPONSES)
NO_STORE = "the history store is not available: see the API's log (PACESETTER_STORE_URL)"
HISTORY_DEFAULT = timedelta(hours=24)


@router.get("/alerts", summary="Alerts, newest first", dependencies=[Viewer],
            responses={404: {"description": "unknown room"}})
def alerts(model: ReadModelDep, room: RoomFilter = None,
           state: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
           ) -> list[dict[str, Any]]:
    """Alerts (latest transition of each), optionally of one room and in one state.

    Each carries ``acknowledged_by``, ``acknowledged_at`` and ``note`` (null until a supervisor
    acknowledges that episode).
    """
    if room is not None and not model.has_room(room):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown room {room!r}")
    return model.alerts(room, state)


class Acknowledgement(BaseModel):
    """What a supervisor says when acknowledging an alert."""

    model_config = ConfigDict(extra="forbid")

    started_at: AwareTime | None = Field(
        default=None, description="the episode's start (as shown with the alert); without it, "
                                  "the alert's current episode")
    note: str | None = Field(default=None, max_length=500,
                             examples=["seen, calling in two more handlers"])


@router.post(
    "/rooms/{room}/alerts/{alert_id}/acknowledge",
    summary="Acknowledge a firing alert (supervisor)",
    responses={404: {"description": "unknown room or alert"},
               409: {"description": "the episode is over, or was already acknowledged"},
               503: {"description": "no history store"}},
)
def acknowledge(room: RoomDep, alert_id: str, body: Acknowledgement, caller: SupervisorDep,
                model: ReadModelDep, store: StoreDep) -> dict[str, Any]:
    """Record who acknowledged the episode, when and why; the first acknowledgement stands.

    The acknowledgement is kept in the history store, so every API replica shows it and it
    survives restarts. An alert that resolves and fires again is a new episode.
    """
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_STORE)
    alert = model.current_alert(alert_id)
    if alert is None or alert.get("room") != room:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no alert {alert_id!r} in room {room!r}")
    started = datetime.fromisoformat(str(alert["started_at"]).replace("Z", "+00:00"))
    if body.started_at is not None and body.started_at != started:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"that episode is over: the alert's current episode started at "
                            f"{alert['started_at']}")
    if alert.get("state") != "firing":
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"the alert resolved at {alert.get('resolved_at')}: "
                            "nothing to acknowledge")
    if alert.get("acknowledged_at"):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"already acknowledged by {alert['acknowledged_by']} at "
                            f"{alert['acknowledged_at']}")
    at = datetime.now(UTC).replace(microsecond=0)
    store.save_alert_episodes([episode_of(alert)])
    row = store.acknowledge_alert(room, alert_id, started, caller.who, body.note, at)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id!r} in room {room!r}")
    model.acknowledge([row])
    acked = model.current_alert(alert_id) or alert
    if acked.get("acknowledged_by") != caller.who or acked.get("note") != body.note:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"already acknowledged by {acked['acknowledged_by']} at "
                            f"{acked['acknowledged_at']}")
    return acked


@router.get(
    "/rooms/{room}/alerts/history",
    summary="Alert episodes and their acknowledgements (an audit trail), oldest first",
    dependencies=[Viewer],
    responses={404: {"description": "unknown room"}, 503: {"description": "no history store"}},
)
def alert_history(room: RoomDep, window: TimeRangeDep, store: StoreDep) -> list[dict[str, Any]]:
    """Episodes overlapping ``[start, end)`` (default: the last 24 hours), oldest first.

    Each episode: ``id``, ``rule``, ``subject``, ``severity``, ``started_at``, ``resolved_at``
    (null while firing), ``message``, ``figures`` and ``acknowledged_by``,
    ``acknowledged_at``, ``note`` (null if nobody acknowledged it).
    """
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_STORE)
    end = window.end or datetime.now(UTC)
    start = window.start or end - HISTORY_DEFAULT
    if end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "end must be after start")
    return [_json(row) for row in store.alert_history(room, start, end)]


def _json(row: dict[str, Any]) -> dict[str, Any]:
    """A store row with instants as RFC 3339 text (whatever the store returns them as)."""
    from services.contract.events import format_time

    return {k: format_time(v) if isinstance(v, datetime) else v for k, v in row.items()}
