"""The FastAPI application: routes, read model, metrics and the dashboard, wired together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from api.acknowledgements import AcknowledgementPoller
from api.metrics import build_registry
from api.planning import Planner, plan_with_store
from api.readmodel import ReadModel
from api.routes import (
    alerts,
    dashboard,
    forecasts,
    health,
    intervals,
    metrics,
    overview,
    plans,
    reports,
    reports_page,
    rooms,
    session,
    staffing,
    stream,
)
from api.session import RefuseTokensInLinks, SessionSigner
from services.contract.privacy import install_log_redaction
from services.contract.settings import Settings
from services.history.store import StoreError

log = logging.getLogger(__name__)

DESCRIPTION = """\
Live figures, intervals, alerts, forecasts and staffing of police control rooms.

Every `/api/v1` route takes `Authorization: Bearer <token>` when tokens are configured
(`PACESETTER_API_TOKENS`, `role:token` or `name=role:token` pairs): `viewer` reads,
`supervisor` also acknowledges alerts, `scheduler` also plans staffing, `admin` does
everything. Browsers sign in instead (`POST /api/v1/session`): a signed, HttpOnly,
SameSite=Strict cookie, with the session's `X-CSRF-Token` on every state-changing request.
A token in a query string is refused. `/healthz`, `/readyz` and `/metrics` stay open. Times are
RFC 3339 with a zone; interval records are half-open, `start ≤ interval_start < end`.
"""


def create_app(settings: Settings, read_model: ReadModel | None = None,
               store: Any | None = None) -> FastAPI:
    """Build the API.

    Args:
        settings: the deployment's settings (topics, tokens, bootstrap servers).
        read_model: a read model to serve; by default one is created, started with the app
            and stopped with it. One that is passed in but not running is started too.
        store: the history store (``services.history.store.HistoryStore``) for forecasts, staffing
            plans and intervals older than the read model holds; None for none.
    """
    install_log_redaction()  # an API served without the CLI (uvicorn api.app:…) too
    model = read_model if read_model is not None else ReadModel(settings)
    owned = read_model is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served: ReadModel = app.state.read_model
        started_here = not served.running
        poller = None
        if app.state.store is not None:
            served.episode_sink = app.state.store.save_alert_episodes
            poller = AcknowledgementPoller(served, app.state.store).start()
        if started_here:
            served.start()
        try:
            yield
        finally:
            if poller is not None:
                poller.stop()
            if started_here and (owned or served is not model):
                served.stop()

    app = FastAPI(
        title="Pacesetter",
        version="1",
        summary="Streaming demand monitor for police control rooms",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.read_model = model
    app.state.store = store
    app.state.planner = Planner(plan_with_store(store, settings))
    app.state.registry = build_registry(model)
    app.state.sessions = SessionSigner(settings)
    if app.state.sessions.ephemeral and settings.tokens():
        log.info("no PACESETTER_SESSION_KEY: sessions are signed with a key of this process "
                 "(signed out on restart; set the key for several replicas)")

    @app.exception_handler(StoreError)
    async def store_unavailable(_: Request, exc: StoreError) -> JSONResponse:
        # Any route that needs the history store while it cannot answer (down, schema behind):
        # 503 naming the store and the fix, never a 500.
        return JSONResponse({"detail": str(exc)}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's shape, plus one sentence naming each parameter, for people and curl.
        errors = [_plain(err) for err in exc.errors()]
        names = ", ".join(f"{' '.join(str(p) for p in e['loc'][-1:])}: {e['msg']}"
                          for e in errors)
        return JSONResponse({"detail": errors, "message": f"invalid request: {names}"},
                            status_code=422)

    for module in (health, metrics, rooms, overview, intervals, alerts, forecasts, staffing,
                   plans, stream, session, dashboard, reports, reports_page):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
    app.add_middleware(RefuseTokensInLinks)
    return app


def _plain(error: Any) -> dict[str, Any]:
    """A validation error with only JSON-safe values (pydantic may attach exceptions)."""
    out: dict[str, Any] = {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")),
                           "type": str(error.get("type", ""))}
    if "input" in error:
        value = error["input"]
        out["input"] = value if isinstance(value, str | int | float | bool | None) else str(value)
    return out
