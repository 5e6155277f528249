"""Demand forecasts per interval, as the planner saved them (never fitted in a request)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import (
    AUTH_RESPONSES,
    LINE_PATTERN,
    AwareTime,
    RoomDep,
    StoreDep,
    Viewer,
    history_unavailable,
)
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
    """422 for a bad request value, 503 when the store cannot answer, else 409: no plan yet."""
    from forecasting.stored import StoredInputError
    from services.history.store import StoreError

    if isinstance(exc, StoredInputError):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))
    if isinstance(exc, StoreError):
        return history_unavailable(exc)
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


@router.get(
    "/forecast",
    summary="Forecast per interval: calls (with a prediction interval) and AHT",
    responses={404: {"description": "unknown room"},
               409: {"description": "no saved forecast yet: the planner makes them"},
               503: {"description": "no history store"}},
)
def forecast(room: RoomDep, store: StoreDep, line: LineRequired, response: Response,
             start: Annotated[AwareTime | None, Query(
                 description="first interval, on a quarter hour; default local midnight today",
             )] = None,
             days: Days = 1) -> list[dict[str, Any]]:
    """The saved forecast of ``days`` local days of 15-minute intervals from ``start``.

    Plans (with their forecasts) are made by the planner, never in a request. Each row names
    its method (``X-Forecast-Method`` too); the ``Link`` header points at the backtest that
    chose it.
    """
    from forecasting.stored import stored_forecast

    if store is None:
        raise no_store()
    try:
        rows = stored_forecast(store, room, line, start, days, datetime.now(UTC))
    except PacesetterError as exc:
        raise domain_error(exc) from None
    response.headers["X-Forecast-Method"] = str(rows[-1].get("method") or "").split("+")[0]
    response.headers["Link"] = (f"</api/v1/rooms/{room}/forecast/accuracy?line={line}>; "
                                'rel="describedby"')
    return rows


@router.get(
    "/forecast/accuracy",
    summary="Forecast accuracy: the chosen method's backtest against the simple methods",
    responses={404: {"description": "unknown room"},
               409: {"description": "no backtest yet"},
               503: {"description": "no history store"}},
)
def forecast_accuracy(room: RoomDep, store: StoreDep, line: LineRequired) -> dict[str, Any]:
    """The line's latest rolling-origin backtest: WAPE, MASE and coverage of every method."""
    from forecasting.stored import stored_accuracy

    if store is None:
        raise no_store()
    try:
        return stored_accuracy(store, room, line)
    except PacesetterError as exc:
        raise domain_error(exc) from None
