"""Demand forecasts per interval (``forecasting.service``, imported on first use)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import AUTH_RESPONSES, LINE_PATTERN, AwareTime, RoomDep, SettingsDep, StoreDep, Viewer
from services.errors import PacesetterError

router = APIRouter(prefix="/api/v1/rooms/{room}", tags=["forecasts"], dependencies=[Viewer],
                   responses=AUTH_RESPONSES)

LineRequired = Annotated[str, Query(pattern=LINE_PATTERN, description="a line, e.g. 999")]
Days = Annotated[int, Query(ge=1, le=28, description="days to forecast")]


def no_store() -> HTTPException:
    """503: forecasts and plans need the history store."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                         "no history store is available to this API (PACESETTER_STORE_URL)")


def domain_error(exc: PacesetterError) -> HTTPException:
    """404 when the subject has no history at all, else 409 (not enough history yet)."""
    text = str(exc)
    missing = "no history" in text.lower() or "unknown" in text.lower()
    return HTTPException(status.HTTP_404_NOT_FOUND if missing else status.HTTP_409_CONFLICT,
                         text)


@router.get(
    "/forecast",
    summary="Forecast per interval: calls (with a prediction interval) and AHT",
    responses={404: {"description": "unknown room or no history"},
               409: {"description": "not enough history to forecast yet"},
               503: {"description": "no history store"}},
)
def forecast(room: RoomDep, settings: SettingsDep, store: StoreDep, line: LineRequired,
             start: Annotated[AwareTime | None, Query(description="first interval; default "
                                                      "now")] = None,
             days: Days = 1) -> list[dict[str, Any]]:
    """Forecast of ``days`` days of 15-minute intervals from ``start``."""
    from forecasting import service

    if store is None:
        raise no_store()
    begin = start if start is not None else datetime.now(UTC)
    try:
        return service.forecast(store, settings, room, line, begin, days)
    except PacesetterError as exc:
        raise domain_error(exc) from None
