"""Monthly reports: one room's month, every room side by side, and the page comparing them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, status
from fastapi.responses import HTMLResponse, Response

from api.deps import AUTH_RESPONSES, ReadModelDep, SettingsDep, StoreDep, Viewer
from api.readmodel import ReadModel, merge_by_key
from api.routes.forecasts import no_store
from services.contract.events import format_time
from services.contract.settings import Settings
from services.figures.monthly import (
    DEFINITIONS_VERSION,
    MonthError,
    comparison_row,
    month_bounds,
    monthly_report,
    report_csv,
)

router = APIRouter(prefix="/api/v1", tags=["reports"], dependencies=[Viewer],
                   responses=AUTH_RESPONSES)

MonthQuery = Annotated[str, Query(
    pattern=r"^\d{4}-\d{2}$", examples=["2026-11"],
    description="a calendar month (Europe/London), YYYY-MM")]
FormatQuery = Annotated[Literal["json", "csv", "html"] | None, Query(
    alias="format", description="csv or html instead of JSON (or send Accept: text/csv)")]


def _bounds(month: str) -> Any:
    try:
        return month_bounds(month)
    except MonthError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


def _report(room: str, month: str, settings: Settings, store: Any,
            model: ReadModel) -> dict[str, Any]:
    """The month from the store, with the read model's newer records over the stored ones."""
    start, end = _bounds(month)
    intervals = merge_by_key(store.intervals(room, start=start, end=end),
                             model.intervals(room, None, start, end),
                             ("room", "line", "interval_start"))
    attendance = merge_by_key(store.attendance(room, start, end),
                              model.attendance(room, None, start, end),
                              ("room", "grade", "interval_start"))
    return monthly_report(room, month, intervals, attendance, settings)


def _rooms(store: Any, model: ReadModel) -> list[str]:
    found = {room for room, _line in store.rooms_lines()}
    found.update(entry["room"] for entry in model.rooms())
    return sorted(found)


@router.get(
    "/rooms/{room}/reports/monthly",
    summary="A room's month: answer bands, abandonment, attendance, failure demand",
    responses={200: {"content": {"text/csv": {}, "text/html": {}}},
               404: {"description": "no records of this room in the month"},
               422: {"description": "not a month like 2026-11"},
               503: {"description": "no history store"}},
)
def room_month(
    room: Annotated[str, Path(max_length=64, examples=["north"])],
    month: MonthQuery, settings: SettingsDep, store: StoreDep, model: ReadModelDep,
    output: FormatQuery = None, accept: Annotated[str | None, Header()] = None,
) -> Any:
    """JSON by default; CSV (section, subject, measure, value) with ``Accept: text/csv``."""
    if store is None:
        raise no_store()
    report = _report(room, month, settings, store, model)
    if not report["lines"] and not report["grades"] and not model.has_room(room):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no records of room {room!r} in {month}")
    if output == "html":
        from services.figures.monthly_page import render

        return HTMLResponse(render(report))
    if output == "csv" or (output is None and "text/csv" in (accept or "")):
        return Response(report_csv(report), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="monthly-{room}-{month}.csv"'})
    return report


@router.get(
    "/reports/monthly",
    summary="Every room's month side by side: 999 under 10 s, 101 abandonment, attendance",
    responses={422: {"description": "not a month like 2026-11"},
               503: {"description": "no history store"}},
)
def all_rooms_month(month: MonthQuery, settings: SettingsDep, store: StoreDep,
                    model: ReadModelDep) -> dict[str, Any]:
    """One row per room with records in the month."""
    if store is None:
        raise no_store()
    start, end = _bounds(month)
    rows = []
    for room in _rooms(store, model):
        report = _report(room, month, settings, store, model)
        if report["lines"] or report["grades"]:
            rows.append(comparison_row(report))
    return {"month": month, "start": format_time(start), "end": format_time(end),
            "definitions_version": DEFINITIONS_VERSION, "rooms": rows}
