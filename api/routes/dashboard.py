"""The supervisor dashboard page and its assets (served locally: no CDN, works offline)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.deps import ReadModelDep, SettingsDep
from services.contract.settings import DEFAULT_LINE_PROFILES, DEFAULT_PROFILE

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _page() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
def dashboard(settings: SettingsDep, model: ReadModelDep) -> HTMLResponse:
    """The dashboard's HTML, with the line profiles it judges figures against.

    Its script and styles are under ``/static``; it reads everything else from the API.
    """
    lines = set(DEFAULT_LINE_PROFILES) | set(settings.line_profiles)
    for room in model.rooms():
        lines.update(room["lines"])
    profiles = {
        "lines": {line: settings.profile(line).model_dump() for line in sorted(lines)},
        "default": DEFAULT_PROFILE.model_dump(),
    }
    # "<" escaped so that no value can close the script element.
    text = json.dumps(profiles).replace("<", "\\u003c")
    return HTMLResponse(_page().replace("__PROFILES__", text),
                        headers={"Cache-Control": "no-cache"})


@lru_cache(maxsize=1)
def _rooms_page() -> str:
    return (STATIC / "rooms.html").read_text(encoding="utf-8")


@router.get("/rooms", response_class=HTMLResponse)
def rooms_page() -> HTMLResponse:
    """Every room at a glance, worst first, for a force's or a region's wall screen."""
    return HTMLResponse(_rooms_page(), headers={"Cache-Control": "no-cache"})
