"""Dashboard sign-in: a token exchanged for a signed session cookie, and sign-out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SettingsDep, authenticate, bearer, find_token, session_caller
from api.session import COOKIE, SessionSigner, same_origin

router = APIRouter(prefix="/api/v1", tags=["session"])


class SignIn(BaseModel):
    """A token from ``PACESETTER_API_TOKENS``, typed into the dashboard's sign-in form."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=512)


def _expires(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.post("/session", summary="Sign in: exchange a token for a session cookie",
             responses={401: {"description": "unknown or revoked token"},
                        403: {"description": "sent from another site"}})
def sign_in(body: SignIn, request: Request, response: Response,
            settings: SettingsDep) -> dict[str, Any]:
    """Set an HttpOnly, SameSite=Strict cookie (Secure over TLS) that expires with the session.

    The answer's ``csrf`` value must be sent as ``X-CSRF-Token`` with every state-changing
    request that relies on the cookie. API clients keep using ``Authorization: Bearer``.
    """
    if not same_origin(request.headers.get("origin"), request.headers.get("host")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "sign in from this server's own page")
    if not settings.tokens():
        return {"signed_in": False, "tokens_required": False, "role": "admin", "name": None,
                "expires_at": None, "csrf": None}
    known = find_token(settings, body.token)
    if known is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked token")
    signer: SessionSigner = request.app.state.sessions
    value, session = signer.issue(known)
    response.set_cookie(COOKIE, value, max_age=int(signer.seconds), path="/", httponly=True,
                        secure=request.url.scheme == "https", samesite="strict")
    response.headers["Cache-Control"] = "no-store"
    return {"signed_in": True, "tokens_required": True, "role": session.role,
            "name": session.name, "expires_at": _expires(session.expires_at),
            "csrf": session.csrf}


@router.get("/session", summary="Who this browser is signed in as (never 401)")
def who(request: Request, response: Response, settings: SettingsDep) -> dict[str, Any]:
    """``signed_in``, ``tokens_required``, ``role``, ``name``, ``expires_at`` and ``csrf``."""
    response.headers["Cache-Control"] = "no-store"
    if not settings.tokens():
        return {"signed_in": False, "tokens_required": False, "role": "admin", "name": None,
                "expires_at": None, "csrf": None}
    caller = session_caller(request, settings)
    if caller is None or caller.session is None:
        return {"signed_in": False, "tokens_required": True, "role": None, "name": None,
                "expires_at": None, "csrf": None}
    return {"signed_in": True, "tokens_required": True, "role": caller.role,
            "name": caller.name, "expires_at": _expires(caller.session.expires_at),
            "csrf": caller.session.csrf}


@router.delete("/session", summary="Sign out: forget the session cookie", status_code=204,
               responses={403: {"description": "sent from another site, or without the "
                                               "X-CSRF-Token of the session"}})
def sign_out(request: Request, settings: SettingsDep,
             credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
             ) -> Response:
    """Clear the cookie (a valid session must send its ``X-CSRF-Token``)."""
    if session_caller(request, settings) is not None:
        authenticate(request, settings, credentials)  # same-origin and CSRF checks
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.delete_cookie(COOKIE, path="/", httponly=True,
                           secure=request.url.scheme == "https", samesite="strict")
    return response
