"""Staffing plans (JSON or CSV) and the what-if calculator for schedulers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.deps import AUTH_RESPONSES, RoomDep, Scheduler, StoreDep
from api.routes.forecasts import LineRequired, domain_error, no_store
from services.contract.errors import PacesetterError

LONDON = ZoneInfo("Europe/London")
router = APIRouter(prefix="/api/v1", tags=["staffing"], dependencies=[Scheduler],
                   responses=AUTH_RESPONSES)


@router.get(
    "/rooms/{room}/staffing",
    summary="Staffing plan per interval for a local date (JSON, or CSV)",
    responses={200: {"content": {"text/csv": {}}},
               404: {"description": "unknown room"},
               409: {"description": "no saved plan for that date yet: the planner makes them"},
               503: {"description": "no history store"}},
)
def staffing(
    room: RoomDep, store: StoreDep, line: LineRequired,
    day: Annotated[date | None, Query(alias="date", description="local date (Europe/London); "
                                      "default today")] = None,
    output: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """The saved plan per interval; CSV with ``Accept: text/csv`` or ``?format=csv``.

    Plans are made by the planner, never in a request: browsing must not change the plan the
    worker's alerts compare against.
    """
    from forecasting.stored import stored_plan

    if store is None:
        raise no_store()
    local_day = day if day is not None else datetime.now(LONDON).date()
    try:
        rows = stored_plan(store, room, line, local_day)
    except PacesetterError as exc:
        raise domain_error(exc) from None
    wants_csv = output == "csv" or (output is None and "text/csv" in (accept or ""))
    if wants_csv:
        filename = f"staffing-{room}-{line}-{local_day.isoformat()}.csv"
        from forecasting.service import staffing_csv

        return Response(staffing_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return rows


def _whole(value: Any) -> Any:
    """A count: an integer, or a float without a fraction (JSON's 3.0); never true or "3"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


class WhatIf(BaseModel):
    """A supervisor's question: what if this many calls met this many handlers?"""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "calls": 100, "interval_seconds": 1800, "aht_seconds": 180, "handlers": 14,
        "threshold_seconds": 20, "patience_seconds": 300}]})

    calls: float = Field(strict=True, ge=0, le=100_000, description="calls offered in the interval")
    interval_seconds: float = Field(strict=True, ge=60, le=86_400, description="interval length")
    aht_seconds: float = Field(strict=True, ge=1, le=86_400, description="average handling time")
    handlers: Annotated[int, BeforeValidator(_whole)] = Field(ge=1, le=10_000)
    threshold_seconds: float = Field(strict=True, ge=0, le=86_400,
                                     description="service-level threshold")
    patience_seconds: float | None = Field(None, strict=True, ge=1, le=86_400,
                                           description="mean caller patience: Erlang A")


@router.post(
    "/staffing/what-if",
    summary="Service level, ASA, abandonment and occupancy for a volume, AHT and handlers",
    responses={400: {"description": "the body is not JSON"},
               422: {"description": "invalid or impossible inputs"}},
)
def what_if(question: WhatIf) -> dict[str, Any]:
    """Erlang C without ``patience_seconds``, Erlang A with it."""
    from forecasting import service

    try:
        return service.what_if(question.calls, question.interval_seconds, question.aht_seconds,
                               question.handlers, question.threshold_seconds,
                               question.patience_seconds)
    except PacesetterError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except (OverflowError, ZeroDivisionError, FloatingPointError, ValueError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"these inputs are beyond what the model can compute ({exc})") from None
