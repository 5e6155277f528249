"""Dashboard sessions: a signed cookie a browser gets for a token, so no token travels in a link.

The cookie holds the role, the holder's name, an expiry, a CSRF secret and a fingerprint of the
token it was issued for, signed with HMAC-SHA256 (``PACESETTER_SESSION_KEY``, else a random key
per process). Every request re-checks the fingerprint against the configured tokens, so removing
a token ends its sessions too. State-changing requests that rely on the cookie must echo the
CSRF secret in ``X-CSRF-Token`` and come from this origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from services.contract.settings import ApiToken, Settings

COOKIE = "pacesetter_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LINK_TOKEN_NAMES = frozenset({"token", "access_token"})
LINK_TOKEN_REFUSED = (
    "a token in the address is refused: addresses stay in browser history, on screens and in "
    "proxy logs. Browsers: open / and sign in with the token (POST /api/v1/session sets a "
    "session cookie). API clients: send 'Authorization: Bearer <token>'."
)


def fingerprint(token: str) -> str:
    """A short, one-way name of a token: safe to keep in a cookie or an audit trail."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Session:
    """What a valid session cookie says."""

    role: str
    name: str | None
    expires_at: int  # epoch seconds
    csrf: str
    token_fingerprint: str


class SessionSigner:
    """Issues and checks signed session cookies."""

    def __init__(self, settings: Settings) -> None:
        key = settings.session_key
        self.ephemeral = key is None
        self._key = secrets.token_bytes(32) if key is None else key.get_secret_value().encode()
        self.seconds = settings.session_seconds

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, token: ApiToken, now: float | None = None) -> tuple[str, Session]:
        """A cookie value for a configured token, and the session it stands for."""
        secret = token.token.get_secret_value()
        session = Session(token.role, token.name,
                          int((now if now is not None else time.time()) + self.seconds),
                          secrets.token_urlsafe(24), fingerprint(secret))
        payload = json.dumps({"r": session.role, "n": session.name, "e": session.expires_at,
                              "c": session.csrf, "f": session.token_fingerprint},
                             separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._mac(payload)}", session

    def read(self, value: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None if it is forged, malformed or expired."""
        if not value or "." not in value or len(value) > 2048:
            return None
        body, _, mac = value.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(payload)
            session = Session(str(data["r"]), data["n"], int(data["e"]), str(data["c"]),
                              str(data["f"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= (now if now is not None else time.time()):
            return None
        return session


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a request's ``Origin`` (when a browser sent one) is this server."""
    if origin is None:
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == (host or "").lower()


class RefuseTokensInLinks:
    """Answers 400, saying how to sign in, to any request with a token in its query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on unless its query carries ``token`` or ``access_token``."""
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if query and b"token" in query and any(
                name in LINK_TOKEN_NAMES for name, _ in parse_qsl(query.decode("latin-1"))):
            html = not str(scope.get("path", "")).startswith("/api/")  # a page: say it in HTML
            body = (f"<!doctype html><html lang=en><title>Pacesetter: sign in</title>"
                    f"<p>{LINK_TOKEN_REFUSED}</p><p><a href=\"/\">Open the dashboard</a></p>"
                    ).encode() if html else json.dumps({"detail": LINK_TOKEN_REFUSED}).encode()
            await send({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"text/html; charset=utf-8" if html else b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
