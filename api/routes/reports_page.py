"""The page comparing every room's month side by side (it reads ``/api/v1/reports/monthly``)."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.routes.dashboard import STATIC

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _page() -> str:
    return (STATIC / "monthly.html").read_text(encoding="utf-8")


@router.get("/reports/monthly", response_class=HTMLResponse)
def monthly_page() -> HTMLResponse:
    """The page; everything it shows comes from the API, on the dashboard's session cookie."""
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})
