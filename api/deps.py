"""Typed dependencies of the routes: settings, read model, store, access control, query values."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator, WithJsonSchema

from api.readmodel import ReadModel
from services.contract.events import InvalidEvent, parse_time
from services.contract.settings import LINE_PATTERN, Settings
from services.history.store import HistoryStore

ROLE_RANK = {"viewer": 0, "scheduler": 1, "admin": 2}
TIME_EXAMPLE = "2026-11-21T22:15:00Z"
END_EXAMPLE = "2026-11-21T23:15:00Z"


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_read_model(request: Request) -> ReadModel:
    """The app's read model."""
    model: ReadModel = request.app.state.read_model
    return model


def get_store(request: Request) -> Any | None:
    """The history store the app was given (``services.history.store.HistoryStore``), or None."""
    return request.app.state.store


def open_store(settings: Settings) -> Any | None:
    """Open the history store; None (logged) when it cannot be opened."""
    import logging

    try:
        return HistoryStore.open(settings.store_url)
    except Exception as exc:  # noqa: BLE001 - no store: the routes that need it say so
        logging.getLogger(__name__).warning("history store %s unavailable: %s",
                                            settings.store_url, exc)
        return None


SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadModelDep = Annotated[ReadModel, Depends(get_read_model)]
StoreDep = Annotated[Any | None, Depends(get_store)]


# -- access ------------------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="A token from PACESETTER_API_TOKENS")


@dataclass(frozen=True)
class Caller:
    """Who is asking: the role their token grants (``admin`` when no tokens are configured)."""

    role: str
    authenticated: bool


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def identify(settings: Settings, token: str | None) -> Caller:
    """The caller a bearer token identifies.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` for a missing or unknown token.
    """
    tokens = settings.tokens()
    if not tokens:
        return Caller("admin", authenticated=False)
    if token:
        given = token.encode()
        role = None
        for known in tokens:  # compare against every token: no early exit on a match
            if hmac.compare_digest(given, known.token.get_secret_value().encode()):
                role = role or known.role
        if role is not None:
            return Caller(role, authenticated=True)
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "a valid bearer token is required: send 'Authorization: Bearer <token>'"
        if not token else "unknown or revoked token",
        headers={"WWW-Authenticate": "Bearer"},
    )


def require(role: str) -> Any:
    """A dependency admitting callers whose role ranks at least ``role``."""

    def check(
        settings: SettingsDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        caller = identify(settings, credentials.credentials if credentials else None)
        if ROLE_RANK[caller.role] < ROLE_RANK[role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"the {caller.role} role cannot do this: it needs {role}")
        return caller

    return check


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or unknown bearer token (`WWW-Authenticate: Bearer`)"},
    403: {"description": "the token's role may not do this"},
}
Viewer = Depends(require("viewer"))
Scheduler = Depends(require("scheduler"))


# -- query values ------------------------------------------------------------------------


def _aware_time(value: Any) -> Any:
    """Parse an RFC 3339 text with a zone; naive times are refused with the fix."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"has no time zone: add 'Z' for UTC, e.g. {TIME_EXAMPLE}")
        return value
    try:
        return parse_time(value, "time")
    except InvalidEvent as exc:
        raise ValueError(str(exc).removeprefix("time: ")) from None


#: An RFC 3339 time with a zone (``Z`` or ``±hh:mm``); naive times are refused with the fix.
AwareTime = Annotated[
    datetime,
    BeforeValidator(_aware_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
StartQuery = Annotated[AwareTime | None, Query(
    description=f"from this time (inclusive), RFC 3339 with a zone, e.g. {TIME_EXAMPLE}",
    examples=[TIME_EXAMPLE])]
EndQuery = Annotated[AwareTime | None, Query(
    description="until this time (exclusive), RFC 3339 with a zone; after start",
    examples=[END_EXAMPLE])]
LineQuery = Annotated[str | None, Query(pattern=LINE_PATTERN, description="a line, e.g. 999")]
RoomFilter = Annotated[str | None, Query(max_length=64, description="only this room")]


@dataclass(frozen=True)
class TimeRange:
    """A validated ``[start, end)`` filter; either bound may be open."""

    start: datetime | None
    end: datetime | None


def time_range(start: StartQuery = None, end: EndQuery = None) -> TimeRange:
    """``start`` and ``end`` query values, with ``end`` after ``start``."""
    if start is not None and end is not None and end <= start:
        raise RequestValidationError([{
            "type": "value_error", "loc": ("query", "end"),
            "msg": "end must be after start", "input": end.isoformat(),
        }])
    return TimeRange(start, end)


TimeRangeDep = Annotated[TimeRange, Depends(time_range)]


def known_room(
    room: Annotated[str, Path(description="a control room id", examples=["north"])],
    model: ReadModelDep,
) -> str:
    """The ``room`` path value, if the read model knows it.

    Raises:
        HTTPException: 404 naming the room.
    """
    if not model.has_room(room):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown room {room!r}")
    return room


RoomDep = Annotated[str, Depends(known_room)]
