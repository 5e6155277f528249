"""Typed dependencies of the routes: settings, read model, store, access control, query values."""

from __future__ import annotations

import contextlib
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
from api.session import (
    COOKIE,
    CSRF_HEADER,
    SAFE_METHODS,
    Session,
    SessionSigner,
    fingerprint,
    same_origin,
)
from services.contract.events import InvalidEvent, parse_time
from services.contract.settings import LINE_PATTERN, ApiToken, Settings
from services.history.store import LazyStore, StoreError

ROLE_RANK = {"viewer": 0, "supervisor": 1, "scheduler": 2, "admin": 3}
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
    """The history store of ``PACESETTER_STORE_URL``, opened when first needed."""
    store = LazyStore(settings.store_url)
    with contextlib.suppress(StoreError):  # logged now, at start-up; the routes answer 503
        store.get()
    return store


def history_unavailable(exc: StoreError) -> HTTPException:
    """503 naming the history store and why it cannot answer (unreachable, schema behind)."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc),
                         headers={"Retry-After": "5"})


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
    name: str | None = None
    token_fingerprint: str | None = None
    session: Session | None = None  # set when the caller came with a session cookie

    @property
    def who(self) -> str:
        """How an audit trail names the caller: the token holder's name, else role and token."""
        if self.name:
            return self.name
        if self.token_fingerprint:
            return f"{self.role} (token {self.token_fingerprint[:6]})"
        return "local user (no tokens configured)"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def find_token(settings: Settings, token: str) -> ApiToken | None:
    """The configured token equal to ``token`` (compared in constant time), or None."""
    given = token.encode()
    found = None
    for known in settings.tokens():  # compare against every token: no early exit on a match
        if hmac.compare_digest(given, known.token.get_secret_value().encode()):
            found = found or known
    return found


def identify(settings: Settings, token: str | None) -> Caller:
    """The caller a bearer token identifies.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` for a missing or unknown token.
    """
    if not settings.tokens():
        return Caller("admin", authenticated=False)
    known = find_token(settings, token) if token else None
    if known is not None:
        return Caller(known.role, True, known.name,
                      fingerprint(known.token.get_secret_value()))
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "sign in (open / in a browser) or send 'Authorization: Bearer <token>'"
        if not token else "unknown or revoked token",
        headers={"WWW-Authenticate": "Bearer"},
    )


def session_caller(request: Request, settings: Settings) -> Caller | None:
    """The caller a valid session cookie names, if its token is still configured."""
    signer: SessionSigner = request.app.state.sessions
    session = signer.read(request.cookies.get(COOKIE))
    if session is None:
        return None
    for known in settings.tokens():
        if (known.role == session.role
                and fingerprint(known.token.get_secret_value()) == session.token_fingerprint):
            return Caller(session.role, True, session.name, session.token_fingerprint, session)
    return None  # the token was revoked: so is every session made from it


def authenticate(request: Request, settings: Settings,
                 credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """The caller, by bearer token or else by session cookie; cross-site writes refused.

    Raises:
        HTTPException: 401 without a valid token or session; 403 for a state-changing request
            from another origin, or one on a session cookie without its CSRF token.
    """
    unsafe = request.method not in SAFE_METHODS
    if unsafe and not same_origin(request.headers.get("origin"), request.headers.get("host")):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "cross-site request refused: send it from this server's pages")
    if credentials is not None or not settings.tokens():
        return identify(settings, credentials.credentials if credentials else None)
    caller = session_caller(request, settings)
    if caller is None:
        return identify(settings, None)
    if unsafe and caller.session is not None and not hmac.compare_digest(
            request.headers.get(CSRF_HEADER, "").encode(), caller.session.csrf.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"missing or wrong {CSRF_HEADER} header: reload the dashboard")
    return caller


def require(role: str) -> Any:
    """A dependency admitting callers whose role ranks at least ``role``."""

    def check(
        request: Request,
        settings: SettingsDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        caller = authenticate(request, settings, credentials)
        if ROLE_RANK[caller.role] < ROLE_RANK[role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"the {caller.role} role cannot do this: it needs {role}")
        return caller

    return check


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid bearer token or session (`WWW-Authenticate: Bearer`)"},
    403: {"description": "the role may not do this, or a cross-site or CSRF-less write"},
}
Viewer = Depends(require("viewer"))
Supervisor = Depends(require("supervisor"))
Scheduler = Depends(require("scheduler"))
SupervisorDep = Annotated[Caller, Depends(require("supervisor"))]


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
