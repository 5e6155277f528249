"""Demand forecasts per interval (``forecasting.service``, imported on first use)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import AUTH_RESPONSES, LINE_PATTERN, AwareTime, RoomDep, SettingsDep, StoreDep, Viewer
from services.contract.errors import PacesetterError

router = APIRouter(prefix="/api/v1/rooms/{room}", tags=["forecasts"], dependencies=[Viewer],
                   responses=AUTH_RESPONSES)

LineRequired = Annotated[str, Query(pattern=LINE_PATTERN, description="a line, e.g. 999")]
Days = Annotated[int, Query(ge=1, le=62, description="local days to forecast")]


def no_store() -> HTTPException:
    """503: forecasts and plans need the history store."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                         "no history store is available to this API (PACESETTER_STORE_URL)")


def domain_error(exc: PacesetterError) -> HTTPException:
    """422 for a bad request value (``ForecastInputError``), else 409: not enough history yet."""
    from forecasting.service import ForecastInputError

    if isinstance(exc, ForecastInputError):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


@router.get(
    "/forecast",
    summary="Forecast per interval: calls (with a prediction interval) and AHT",
    responses={404: {"description": "unknown room"},
               409: {"description": "not enough history to forecast yet"},
               503: {"description": "no history store"}},
)
def forecast(room: RoomDep, settings: SettingsDep, store: StoreDep, line: LineRequired,
             start: Annotated[AwareTime | None, Query(
                 description="first interval, on a quarter hour; default local midnight today",
             )] = None,
             days: Days = 1) -> list[dict[str, Any]]:
    """Forecast of ``days`` days of 15-minute intervals from ``start``."""
    from forecasting import service

    if store is None:
        raise no_store()
    try:
        return service.forecast(store, settings, room, line, start, days)
    except PacesetterError as exc:
        raise domain_error(exc) from None
