"""Liveness and readiness probes for orchestrators (open, no token)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ReadModelDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="200 while the process lives")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="200 once the read model has caught up with the topics, else 503 with the reason",
    responses={503: {"description": "not caught up yet, or Kafka unreachable"}},
)
def readyz(model: ReadModelDep) -> JSONResponse:
    """Ready when the read model has read every partition to its end."""
    readiness = model.readiness()
    body = {"ready": readiness.ready, "reason": readiness.reason,
            "messages": model.messages_applied}
    return JSONResponse(body, status_code=200 if readiness.ready else 503)
