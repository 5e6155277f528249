"""Prometheus text exposition at ``/metrics`` (open for scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus text exposition", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    """Every metric of API.md, read from the read model at scrape time."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
